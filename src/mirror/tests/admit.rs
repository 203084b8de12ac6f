//! Step 2 and the routes answered at once: the realm, the whitelist, `ALLOW_NETWORKS`, the client's address, bad input.

use super::*;

#[test]
fn ping_is_answered_locally_with_the_mirrors_challenge() {
    let m = mirror(&[]);
    let (response, _) = expect_answer(start(&m, &request(Method::GET, "/v2/", &[]), 1));
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="http://mirror.test/token",service="mirror.test""#
    );
    assert_eq!(
        response.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(error_code(&response), "UNAUTHORIZED");
    let (ok, _) = expect_answer(start(
        &m,
        &request(Method::GET, "/v2/", &[("authorization", "Bearer x")]),
        1,
    ));
    assert_eq!(ok.status(), 200);
}

#[test]
fn head_answers_keep_their_length_without_a_body() {
    let m = mirror(&[]);
    let (response, _) = expect_answer(start(&m, &request(Method::HEAD, "/v2/", &[]), 1));
    assert!(response.body().is_empty());
    let length: usize = response.headers()[header::CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(length > 0);
}

#[test]
fn public_url_and_forwarded_headers_set_the_realm() {
    let m = mirror(&[("PUBLIC_URL", "https://hub.example.com")]);
    let (r, _) = expect_answer(start(&m, &request(Method::GET, "/v2/", &[]), 1));
    assert_eq!(
        r.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="https://hub.example.com/token",service="hub.example.com""#
    );
    let forwarded = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "edge.example"),
    ];
    let untrusted = mirror(&[]);
    let (r, _) = expect_answer(start(
        &untrusted,
        &request(Method::GET, "/v2/", &forwarded),
        1,
    ));
    assert!(r.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("http://mirror.test/token"));
    let trusted = mirror(&[("TRUST_FORWARDED_HEADERS", "true")]);
    let (r, _) = expect_answer(start(
        &trusted,
        &request(Method::GET, "/v2/", &forwarded),
        1,
    ));
    assert!(r.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("https://edge.example/token"));
    let (r, _) = expect_answer(start(&m, &request(Method::GET, "/v2/", &[]), 1));
    assert_eq!(r.status(), 401);
    let bad_host = request(Method::GET, "/v2/", &[]);
    let mut bad_host = bad_host;
    bad_host
        .headers
        .insert("host", HeaderValue::from_static("evil/x?y"));
    let (r, _) = expect_answer(start(&mirror(&[]), &bad_host, 1));
    assert_eq!(r.status(), 400);
}

#[test]
fn push_and_bad_names_are_refused_without_an_upstream_call() {
    let m = mirror(&[]);
    for (method, path, code, status) in [
        (
            Method::PUT,
            "/v2/alpine/manifests/latest",
            "UNSUPPORTED",
            405,
        ),
        (
            Method::POST,
            "/v2/alpine/blobs/uploads/",
            "UNSUPPORTED",
            405,
        ),
        (
            Method::GET,
            "/v2/Alpine/manifests/latest",
            "NAME_INVALID",
            400,
        ),
        (
            Method::GET,
            "/v2/alpine/manifests/:bad",
            "DIGEST_INVALID",
            400,
        ),
        (
            Method::GET,
            "/v2/alpine/manifests/.bad",
            "MANIFEST_UNKNOWN",
            404,
        ),
        (Method::GET, "/nope", "UNSUPPORTED", 404),
    ] {
        let (r, _) = expect_answer(start(&m, &request(method, path, &[]), 1));
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(error_code(&r), code, "{path}");
    }
    let long = format!("/v2/a/tags/list?x={}", "a".repeat(MAX_URL_LEN));
    let (r, _) = expect_answer(start(&m, &request(Method::GET, &long, &[]), 1));
    assert_eq!(r.status(), 414);
    let big = "a".repeat(MAX_HEADER_BYTES);
    let (r, _) = expect_answer(start(
        &m,
        &request(Method::GET, "/v2/", &[("x-big", &big)]),
        1,
    ));
    assert_eq!(r.status(), 431);
}

#[test]
fn whitelist_refuses_anonymous_unlisted_and_foreign_tokens() {
    let m = whitelisted();
    // Anonymous and unlisted users get no token, and the upstream is never asked.
    let (r, _) = expect_answer(start(
        &m,
        &request(Method::GET, "/token?scope=repository:alpine:pull", &[]),
        1,
    ));
    assert_eq!(r.status(), 401);
    let carol = basic("carol", "pw");
    let (r, _) = expect_answer(start(
        &m,
        &request(Method::GET, "/token", &[("authorization", &carol)]),
        1,
    ));
    assert_eq!(r.status(), 401);
    // Without a mirror token, /v2/ and every resource answer the challenge without an upstream call.
    for path in ["/v2/", "/v2/alpine/manifests/latest"] {
        for auth in [
            None,
            Some("Bearer upstream.jwt.token"),
            Some("Bearer rm1.e30.AAAA"),
            Some("Basic YWxpY2U6cHc="),
        ] {
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
            let (r, _) = expect_answer(start(&m, &request(Method::GET, path, &headers), 1));
            assert_eq!(r.status(), 401, "{path} {auth:?}");
            assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        }
    }
}

#[test]
fn no_step_holds_a_secret_in_debug_output() {
    let m = whitelisted();
    let auth = basic("alice", "hunter2-password");
    let fetch = expect_fetch(start(
        &m,
        &request(
            Method::GET,
            "/token?scope=repository:alpine:pull",
            &[("authorization", &auth)],
        ),
        1,
    ));
    let token_fetch = expect_fetch(m.resume(
        fetch.pending,
        upstream_head(401, &[("www-authenticate", HUB_CHALLENGE)]),
        Some(vec![]),
        at(1),
    ));
    let shown = format!("{token_fetch:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains(&auth[6..]), "{shown}");
}

/// With `WHITE_LIST`, search is for holders of a mirror token too.
#[test]
fn whitelist_guards_search() {
    let m = whitelisted();
    let (r, _) = expect_answer(start(
        &m,
        &request(Method::GET, "/v1/search?q=alpine", &[]),
        1000,
    ));
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    let auth = basic("alice", "pw");
    let token = token_dance(
        &m,
        "/token?scope=repository:alpine:pull",
        &[("authorization", &auth)],
        "hub-jwt",
    );
    let bearer = format!("Bearer {token}");
    let fetch = expect_fetch(start(
        &m,
        &request(
            Method::GET,
            "/v1/search?q=alpine",
            &[("authorization", &bearer)],
        ),
        1001,
    ));
    assert!(fetch.request.uri().path().ends_with("/v1/search"));
    // Without a whitelist, search stays open.
    expect_fetch(start(
        &mirror(&[]),
        &request(Method::GET, "/v1/search?q=alpine", &[]),
        1,
    ));
}

/// A user taken off `WHITE_LIST` loses the tokens they hold at once, not when they expire.
#[test]
fn removing_a_user_from_the_whitelist_revokes_their_tokens() {
    let auth = basic("bob", "pw");
    let token = token_dance(
        &whitelisted(),
        "/token?scope=repository:alpine:pull",
        &[("authorization", &auth)],
        "hub-jwt",
    );
    let bearer = format!("Bearer {token}");
    let after = mirror(&[("WHITE_LIST", "alice"), ("TOKEN_SECRET", SECRET)]);
    for path in ["/v2/", "/v2/alpine/manifests/1", "/v1/search?q=a"] {
        let (r, _) = expect_answer(start(
            &after,
            &request(Method::GET, path, &[("authorization", &bearer)]),
            1001,
        ));
        assert_eq!(r.status(), 401, "{path}");
    }
    // The same token still opens a mirror that lists bob.
    expect_fetch(start(
        &whitelisted(),
        &request(
            Method::GET,
            "/v2/alpine/manifests/1",
            &[("authorization", &bearer)],
        ),
        1001,
    ));
}

/// Load balancers check health with HTTP/1.0 and no Host.
#[test]
fn health_needs_no_host() {
    let head = Request::builder()
        .method(Method::GET)
        .uri("/healthz")
        .version(http::Version::HTTP_10)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let (r, _) = expect_answer(start(&mirror(&[]), &head, 1));
    assert_eq!(r.status(), 200);
    assert_eq!(r.body(), br#"{"status":"ok"}"#);
}

/// A digest of an algorithm no registry verifies is the client's mistake: 400 DIGEST_INVALID,
/// with nothing asked upstream.
#[test]
fn unsupported_digest_algorithms_are_refused_locally() {
    let m = mirror(&[]);
    let md5 = format!("md5:{}", "a".repeat(32));
    for path in [
        format!("/v2/alpine/blobs/{md5}"),
        format!("/v2/alpine/manifests/{md5}"),
    ] {
        let (r, _) = expect_answer(start(&m, &request(Method::GET, &path, &[]), 1));
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(error_code(&r), "DIGEST_INVALID", "{path}");
    }
}

/// With WHITE_LIST and ALLOW_NETWORKS, a client on a listed network gets a token without
/// credentials and pulls with it; one outside still needs docker login; behind a trusted proxy,
/// the address is the last of X-Forwarded-For.
#[test]
fn allowed_networks_pull_without_credentials() {
    let m = mirror(&[
        ("WHITE_LIST", "alice"),
        ("TOKEN_SECRET", SECRET),
        ("ALLOW_NETWORKS", "10.1.0.0/16, 192.0.2.7"),
    ]);
    let token_request = request(Method::GET, "/token?scope=repository:alpine:pull", &[]);
    let (r, _) = expect_answer(start_from(&m, &token_request, "10.2.0.1"));
    assert_eq!(r.status(), 401, "outside the networks");
    let fetch = expect_fetch(start_from(&m, &token_request, "10.1.2.3"));
    assert!(fetch.request.headers().get(header::AUTHORIZATION).is_none());
    let fetch = past_challenge(&m, fetch);
    let (r, _) = expect_answer(m.resume(
        fetch.pending,
        upstream_head(200, &[]),
        Some(br#"{"token":"hub-jwt","expires_in":300}"#.to_vec()),
        at(1000),
    ));
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    let auth = format!("Bearer {token}");
    let manifest = request(
        Method::GET,
        "/v2/alpine/manifests/3.19",
        &[("authorization", &auth)],
    );
    let fetch = expect_fetch(start_from(&m, &manifest, "192.0.2.7"));
    assert_eq!(
        fetch.request.headers()[header::AUTHORIZATION],
        "Bearer hub-jwt"
    );
    let (r, _) = expect_answer(start_from(&m, &manifest, "192.0.2.8"));
    assert_eq!(r.status(), 401, "the same token from outside the networks");

    // Behind a trusted proxy: the address it added, not one the client wrote before it.
    let m = mirror(&[
        ("WHITE_LIST", "alice"),
        ("TOKEN_SECRET", SECRET),
        ("ALLOW_NETWORKS", "10.1.0.0/16"),
        ("TRUST_FORWARDED_HEADERS", "true"),
    ]);
    let forged = request(
        Method::GET,
        "/token?scope=repository:alpine:pull",
        &[("x-forwarded-for", "10.1.0.5, 203.0.113.9")],
    );
    let (r, _) = expect_answer(start_from(&m, &forged, "127.0.0.1"));
    assert_eq!(r.status(), 401);
    let proxied = request(
        Method::GET,
        "/token?scope=repository:alpine:pull",
        &[("x-forwarded-for", "203.0.113.9, 10.1.0.5")],
    );
    expect_fetch(start_from(&m, &proxied, "127.0.0.1"));
    let bad = Config::from_lookup(|k| match k {
        "ALLOW_NETWORKS" => Some("10.0.0.0/33".to_string()),
        "WHITE_LIST" => Some("alice".to_string()),
        "TOKEN_SECRET" => Some(SECRET.to_string()),
        _ => None,
    });
    assert!(bad.unwrap_err().contains("is not a network"));
}

/// On an open mirror ALLOW_NETWORKS would do nothing (everyone may pull), while reading as if
/// only those networks were let in: the mirror refuses to start and says why.
#[test]
fn allow_networks_without_a_whitelist_is_refused() {
    let open = Config::from_lookup(|k| (k == "ALLOW_NETWORKS").then(|| "10.0.0.0/8".to_string()));
    let why = open.unwrap_err();
    assert!(why.contains("WHITE_LIST is not"), "{why}");
    let empty = Config::from_lookup(|k| (k == "ALLOW_NETWORKS").then(String::new));
    assert!(empty.is_ok());
}

/// Behind a trusted proxy whose own address is on a listed network, a forwarded entry that does
/// not parse is no way in: the client is unknown, not the proxy.
#[test]
fn unparsable_forwarded_addresses_fail_closed() {
    let m = mirror(&[
        ("WHITE_LIST", "alice"),
        ("TOKEN_SECRET", SECRET),
        (
            "ALLOW_NETWORKS",
            "127.0.0.0/8, 10.1.0.0/16, 2001:db8:1::/48",
        ),
        ("TRUST_FORWARDED_HEADERS", "true"),
    ]);
    let token = |forwarded: &str| {
        request(
            Method::GET,
            "/token?scope=repository:alpine:pull",
            &[("x-forwarded-for", forwarded)],
        )
    };
    for outside in ["203.0.113.9:4711", "unknown", "[2001:db8::1]", "10.1.0.5, "] {
        let (r, _) = expect_answer(start_from(&m, &token(outside), "127.0.0.1"));
        assert_eq!(r.status(), 401, "{outside}");
    }
    for inside in ["10.1.0.5:4711", "[2001:db8:1::7]:80", "[2001:db8:1::7]"] {
        expect_fetch(start_from(&m, &token(inside), "127.0.0.1"));
    }
}

/// `LISTEN=[::]:5000` sees IPv4 clients as `::ffff:a.b.c.d`; they are on their IPv4 networks.
#[test]
fn ipv4_clients_of_a_dual_stack_listener_match_their_networks() {
    let m = mirror(&[
        ("WHITE_LIST", "alice"),
        ("TOKEN_SECRET", SECRET),
        ("ALLOW_NETWORKS", "127.0.0.0/8"),
    ]);
    let token = request(Method::GET, "/token?scope=repository:alpine:pull", &[]);
    expect_fetch(start_from(&m, &token, "::ffff:127.0.0.1"));
    let (r, _) = expect_answer(start_from(&m, &token, "::ffff:10.0.0.1"));
    assert_eq!(r.status(), 401);
}

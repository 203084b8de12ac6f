//! `WHITE_LIST` logins: the mirror's tokens, the identity Docker Hub checks, the login throttle.

use super::*;

#[test]
fn whitelist_issues_mirror_tokens_that_wrap_the_upstream_token() {
    let m = whitelisted();
    let auth = basic("Alice", "pw");
    let token = token_dance(
        &m,
        "/token?scope=repository:alpine:pull",
        &[("authorization", &auth)],
        "hub-jwt",
    );
    assert!(token.starts_with("rm1."));
    let claims =
        MirrorToken::verify(&token, m.config.token_secret.as_ref().unwrap(), 1000).unwrap();
    assert_eq!(claims.user, "alice");
    assert_eq!(claims.expires_at, 1300);
    assert_eq!(claims.upstream.as_deref(), Some("hub-jwt"));

    // The mirror token opens /v2/ and resources, and the upstream sees its own token.
    let bearer = format!("Bearer {token}");
    let (r, summary) = expect_answer(start(
        &m,
        &request(Method::GET, "/v2/", &[("authorization", &bearer)]),
        1001,
    ));
    assert_eq!(r.status(), 200);
    assert_eq!(summary.user.as_deref(), Some("alice"));
    let fetch = expect_fetch(start(
        &m,
        &request(
            Method::GET,
            "/v2/alpine/manifests/latest",
            &[("authorization", &bearer)],
        ),
        1001,
    ));
    assert_eq!(
        fetch.request.headers()[header::AUTHORIZATION],
        "Bearer hub-jwt"
    );
    // ... until it expires.
    let (r, _) = expect_answer(start(
        &m,
        &request(
            Method::GET,
            "/v2/alpine/manifests/latest",
            &[("authorization", &bearer)],
        ),
        1300,
    ));
    assert_eq!(r.status(), 401);
    // A token signed under another secret is refused.
    let other = mirror(&[
        ("WHITE_LIST", "alice"),
        ("TOKEN_SECRET", "another-secret-0123456789"),
    ]);
    let (r, _) = expect_answer(start(
        &other,
        &request(Method::GET, "/v2/", &[("authorization", &bearer)]),
        1001,
    ));
    assert_eq!(r.status(), 401);
}

#[test]
fn whitelist_login_needs_the_upstream_to_accept_the_password() {
    let m = whitelisted();
    let auth = basic("bob", "wrong");
    let fetch = expect_fetch(start(
        &m,
        &request(
            Method::GET,
            "/token?account=bob&client_id=docker&offline_token=true&service=mirror.test",
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
    assert!(!token_fetch
        .request
        .uri()
        .query()
        .unwrap()
        .contains("scope="));
    let (r, _) = expect_answer(m.resume(
        token_fetch.pending,
        upstream_head(401, &[]),
        Some(b"{}".to_vec()),
        at(1),
    ));
    assert_eq!(r.status(), 401);
}

#[test]
fn a_token_for_one_registry_opens_no_other() {
    let m = mirror(&[
        ("WHITE_LIST", "alice"),
        ("TOKEN_SECRET", SECRET),
        ("UPSTREAM_GHCR_IO", "http://127.0.0.1:5001"),
    ]);
    let auth = basic("alice", "pw");
    let token = token_dance(
        &m,
        "/token?scope=repository:alpine:pull",
        &[("authorization", &auth)],
        "hub-jwt",
    );
    let bearer = format!("Bearer {token}");
    expect_fetch(start(
        &m,
        &request(
            Method::GET,
            "/v2/alpine/manifests/1",
            &[("authorization", &bearer)],
        ),
        1001,
    ));
    let (r, _) = expect_answer(start(
        &m,
        &request(
            Method::GET,
            "/v2/ghcr.io/owner/app/manifests/1",
            &[("authorization", &bearer)],
        ),
        1001,
    ));
    assert_eq!(r.status(), 401);
}

/// With `WHITE_LIST`, a token for another registry first checks the user's password with Docker
/// Hub; the other registry's token service then gets no credentials at all.
#[test]
fn whitelist_identity_is_checked_with_docker_hub_for_every_registry() {
    let m = mirror(&[
        ("WHITE_LIST", "alice"),
        ("TOKEN_SECRET", SECRET),
        ("UPSTREAM_GHCR_IO", "http://127.0.0.1:5001"),
    ]);
    let auth = basic("alice", "pw");
    let ask = || {
        let path = "/token?scope=repository:ghcr.io/owner/app:pull&service=mirror.test";
        let fetch = expect_fetch(start(
            &m,
            &request(Method::GET, path, &[("authorization", &auth)]),
            1,
        ));
        // Docker Hub's challenge first (or its cached realm), then Docker Hub's token service.
        let hub_token = match fetch.request.uri().path() {
            "/v2/" => {
                assert_eq!(fetch.request.uri().host(), Some("registry-1.docker.io"));
                expect_fetch(m.resume(
                    fetch.pending,
                    upstream_head(401, &[("www-authenticate", HUB_CHALLENGE)]),
                    Some(vec![]),
                    at(1),
                ))
            }
            _ => fetch,
        };
        assert_eq!(hub_token.request.uri().host(), Some("auth.docker.io"));
        assert_eq!(hub_token.request.headers()[header::AUTHORIZATION], auth);
        assert!(!hub_token.request.uri().query().unwrap().contains("scope="));
        hub_token
    };

    // A wrong password: Docker Hub refuses, and ghcr.io is never asked.
    let (refused, _) = expect_answer(m.resume(
        ask().pending,
        upstream_head(401, &[]),
        Some(b"{}".to_vec()),
        at(1),
    ));
    assert_eq!(refused.status(), 401);

    // The right one: ghcr.io's challenge and token, without the user's credentials.
    let ghcr = expect_fetch(m.resume(
        ask().pending,
        upstream_head(200, &[]),
        Some(br#"{"token":"hub-jwt"}"#.to_vec()),
        at(1),
    ));
    assert_eq!(ghcr.request.uri().to_string(), "http://127.0.0.1:5001/v2/");
    let ghcr_token = expect_fetch(m.resume(
        ghcr.pending,
        upstream_head(
            401,
            &[(
                "www-authenticate",
                r#"Bearer realm="http://127.0.0.1:5002/token",service="ghcr""#,
            )],
        ),
        Some(vec![]),
        at(1),
    ));
    assert!(ghcr_token
        .request
        .headers()
        .get(header::AUTHORIZATION)
        .is_none());
    let query = ghcr_token.request.uri().query().unwrap().to_string();
    assert!(
        query.contains("scope=repository%3Aowner%2Fapp%3Apull"),
        "{query}"
    );
    assert!(!query.contains("alice"), "{query}");
    let (answer, _) = expect_answer(m.resume(
        ghcr_token.pending,
        upstream_head(200, &[]),
        Some(br#"{"token":"ghcr-jwt","expires_in":300}"#.to_vec()),
        at(1),
    ));
    assert_eq!(answer.status(), 200);
    let value: serde_json::Value = serde_json::from_slice(answer.body()).unwrap();
    let bearer = format!("Bearer {}", value["token"].as_str().unwrap());
    // The mirror's token names alice and opens ghcr.io with ghcr.io's anonymous token.
    let manifest = expect_fetch(start(
        &m,
        &request(
            Method::GET,
            "/v2/ghcr.io/owner/app/manifests/1",
            &[("authorization", &bearer)],
        ),
        2,
    ));
    assert_eq!(
        manifest.request.headers()[header::AUTHORIZATION],
        "Bearer ghcr-jwt"
    );
}

/// Wrong passwords are counted per address and user: the sixth try within a minute is a 429 with
/// `Retry-After`, answered without asking the upstream; another address still logs in.
#[test]
fn failed_logins_are_throttled_per_address_and_user() {
    let m = whitelisted();
    let login = |last: u8, password: &str, now: u64| {
        let auth = basic("bob", password);
        let head = request(
            Method::GET,
            "/token?scope=repository:alpine:pull",
            &[("authorization", &auth)],
        );
        m.start(
            &Incoming {
                head: &head,
                scheme: "http",
                body: b"",
                client: Some(std::net::IpAddr::from([127, 0, 0, last])),
            },
            at(now),
        )
    };
    let refused = |step: Step| {
        let fetch = expect_fetch(step);
        let fetch = past_challenge(&m, fetch);
        let (r, _) = expect_answer(m.resume(
            fetch.pending,
            upstream_head(401, &[]),
            Some(b"{}".to_vec()),
            at(1000),
        ));
        assert_eq!(r.status(), 401);
    };
    for i in 0..crate::auth::throttle::MAX_FAILURES as u64 {
        refused(login(1, "wrong", 1000 + i));
    }
    let (r, _) = expect_answer(login(1, "right", 1010));
    assert_eq!(r.status(), 429);
    assert_eq!(error_code(&r), "TOOMANYREQUESTS");
    assert_eq!(r.headers()[header::RETRY_AFTER], "50");
    // From another address the upstream is asked, and a right password gets a token.
    let fetch = expect_fetch(login(2, "right", 1010));
    let (r, _) = expect_answer(m.resume(
        fetch.pending,
        upstream_head(200, &[]),
        Some(br#"{"token":"hub-jwt"}"#.to_vec()),
        at(1010),
    ));
    assert_eq!(r.status(), 200);
    // A minute after the first failure, the first address may try again.
    expect_fetch(login(1, "right", 1060));
}

/// Behind a trusted proxy the throttle counts and checks failures under one address, the
/// forwarded one: a guesser behind the proxy is stopped, another client of the proxy is not.
#[test]
fn failed_logins_behind_a_trusted_proxy_are_throttled_by_the_forwarded_address() {
    let m = mirror(&[
        ("WHITE_LIST", "bob"),
        ("TOKEN_SECRET", SECRET),
        ("TRUST_FORWARDED_HEADERS", "true"),
    ]);
    let auth = basic("bob", "wrong");
    let login = |forwarded: &str| {
        let head = request(
            Method::GET,
            "/token?scope=repository:alpine:pull",
            &[("authorization", &auth), ("x-forwarded-for", forwarded)],
        );
        start_from(&m, &head, "127.0.0.1")
    };
    for _ in 0..crate::auth::throttle::MAX_FAILURES {
        let mut fetch = expect_fetch(login("203.0.113.9"));
        if fetch.request.uri().path() == "/v2/" {
            fetch = expect_fetch(m.resume(
                fetch.pending,
                upstream_head(401, &[("www-authenticate", HUB_CHALLENGE)]),
                Some(vec![]),
                at(1000),
            ));
        }
        let (r, _) = expect_answer(m.resume(
            fetch.pending,
            upstream_head(401, &[]),
            Some(b"{}".to_vec()),
            at(1000),
        ));
        assert_eq!(r.status(), 401);
    }
    let (r, _) = expect_answer(login("203.0.113.9"));
    assert_eq!(r.status(), 429, "the guesser is held back");
    expect_fetch(login("198.51.100.4"));
}

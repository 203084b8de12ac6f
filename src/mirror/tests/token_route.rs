//! The `/token` dance: the realm learnt, the upstream token with the client's credentials, the mirror's tokens, the login throttle, the mirror's own accounts.

use super::*;

#[test]
fn token_dance_learns_the_realm_and_rewrites_scopes() {
    let m = mirror(&[]);
    let head = request(
        Method::GET,
        "/token?service=mirror.test&scope=repository:alpine:pull",
        &[],
    );
    let fetch = expect_fetch(start(&m, &head, 1000));
    assert_eq!(
        fetch.request.uri().to_string(),
        "https://registry-1.docker.io/v2/"
    );
    assert!(fetch.read_body.is_some());
    let token_fetch = expect_fetch(m.resume(
        fetch.pending,
        upstream_head(401, &[("www-authenticate", HUB_CHALLENGE)]),
        Some(Vec::new()),
        at(1000),
    ));
    let uri = token_fetch.request.uri().to_string();
    assert!(uri.starts_with("https://auth.docker.io/token?service=registry.docker.io&scope=repository%3Alibrary%2Falpine%3Apull"), "{uri}");
    assert!(token_fetch
        .request
        .headers()
        .get(header::AUTHORIZATION)
        .is_none());
    let (response, summary) = expect_answer(m.resume(
        token_fetch.pending,
        upstream_head(200, &[]),
        Some(br#"{"token":"hub-token","access_token":"hub-token","expires_in":300,"refresh_token":"r"}"#.to_vec()),
        at(1000),
    ));
    assert_eq!(response.status(), 200);
    let value: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(value["token"], "hub-token");
    assert_eq!(value["expires_in"], 300);
    assert!(value.get("refresh_token").is_none());
    assert_eq!(summary.upstream.as_deref(), Some("docker.io"));

    // The realm is cached: the next token request goes straight to it.
    let again = expect_fetch(start(
        &m,
        &request(
            Method::GET,
            "/token?scope=repository:nginx:pull&scope=repository:bitnami/redis:pull,push",
            &[],
        ),
        1001,
    ));
    let uri = again.request.uri().to_string();
    assert!(uri.starts_with("https://auth.docker.io/token?"), "{uri}");
    assert!(
        uri.contains("scope=repository%3Alibrary%2Fnginx%3Apull"),
        "{uri}"
    );
    assert!(
        uri.contains("scope=repository%3Abitnami%2Fredis%3Apull&"),
        "{uri}"
    );
}

#[test]
fn token_forwards_credentials_and_maps_refusal_to_401() {
    let m = mirror(&[]);
    let auth = basic("alice", "secret");
    let fetch = expect_fetch(start(
        &m,
        &request(
            Method::GET,
            "/token?account=alice",
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
    assert_eq!(
        token_fetch.request.headers()[header::AUTHORIZATION],
        auth.as_str()
    );
    assert!(token_fetch
        .request
        .uri()
        .query()
        .unwrap()
        .contains("account=alice"));
    let (response, summary) = expect_answer(m.resume(
        token_fetch.pending,
        upstream_head(401, &[]),
        Some(vec![]),
        at(1),
    ));
    assert_eq!(response.status(), 401);
    assert_eq!(summary.user.as_deref(), Some("alice"));
    // The upstream's realm never reaches the client.
    assert!(!format!("{:?}", response.headers()).contains("auth.docker.io"));
}

#[test]
fn oauth_post_takes_the_password_grant() {
    let m = mirror(&[]);
    let head = request(
        Method::POST,
        "/token",
        &[("content-type", "application/x-www-form-urlencoded")],
    );
    let body = b"grant_type=password&username=alice&password=pw&client_id=containerd-client&service=mirror.test&scope=repository%3Aalpine%3Apull";
    let fetch = expect_fetch(m.start(
        &Incoming {
            head: &head,
            scheme: "http",
            body,
            client: None,
        },
        at(1),
    ));
    let token_fetch = expect_fetch(m.resume(
        fetch.pending,
        upstream_head(401, &[("www-authenticate", HUB_CHALLENGE)]),
        Some(vec![]),
        at(1),
    ));
    assert_eq!(
        token_fetch.request.headers()[header::AUTHORIZATION],
        basic("alice", "pw").as_str()
    );
    let refresh = b"grant_type=refresh_token&refresh_token=x";
    let (r, _) = expect_answer(m.start(
        &Incoming {
            head: &head,
            scheme: "http",
            body: refresh,
            client: None,
        },
        at(1),
    ));
    assert_eq!(r.status(), 400);
    let big = vec![b'a'; MAX_REQUEST_BODY + 1];
    let (r, _) = expect_answer(m.start(
        &Incoming {
            head: &head,
            scheme: "http",
            body: &big,
            client: None,
        },
        at(1),
    ));
    assert_eq!(r.status(), 413);
}

/// A client without credentials gets a token fetched with the mirror's own account; with two, the
/// one the registry last said had more pulls left goes first. A client's own credentials go as
/// they are.
#[test]
fn clients_without_credentials_pull_on_the_mirrors_accounts() {
    let m = mirror(&[(
        "UPSTREAM_AUTH_DOCKER_IO",
        "acct1:dckr_pat_one,acct2:dckr_pat_two",
    )]);
    let basic = |user: &str, password: &str| {
        BasicCredentials {
            user: user.into(),
            password: password.into(),
        }
        .header_value()
    };
    let token_fetch = |headers: &[(&str, &str)]| upstream_token_fetch(&m, headers);
    let first = token_fetch(&[]);
    assert_eq!(
        first.request.headers()[header::AUTHORIZATION],
        basic("acct1", "dckr_pat_one").as_str()
    );
    assert!(first
        .request
        .uri()
        .query()
        .unwrap()
        .contains("account=acct1"));
    // The token it gets is counted to acct1: a manifest answer says acct1 has 3 pulls left.
    let (r, _) = expect_answer(m.resume(
        first.pending,
        upstream_head(200, &[]),
        Some(br#"{"token":"acct1-jwt","expires_in":300}"#.to_vec()),
        at(1000),
    ));
    assert_eq!(r.status(), 200);
    let get = request(
        Method::GET,
        "/v2/alpine/manifests/3.19",
        &[("authorization", "Bearer acct1-jwt")],
    );
    let fetch = expect_fetch(start(&m, &get, 1001));
    let _ = m.resume(
        fetch.pending,
        upstream_head(200, &[("ratelimit-remaining", "3;w=21600")]),
        None,
        at(1001),
    );
    assert_eq!(
        token_fetch(&[]).request.headers()[header::AUTHORIZATION],
        basic("acct2", "dckr_pat_two").as_str()
    );
    // A client's own credentials are never replaced.
    let own = basic("alice", "pw");
    assert_eq!(
        token_fetch(&[("authorization", &own)]).request.headers()[header::AUTHORIZATION],
        own.as_str()
    );
}

/// An account the registry refuses is the mirror's fault, not the client's: 503, naming no
/// secret.
#[test]
fn a_refused_account_is_a_503() {
    let m = mirror(&[("UPSTREAM_AUTH_DOCKER_IO", "acct1:dckr_pat_one")]);
    let fetch = upstream_token_fetch(&m, &[]);
    let (r, _) = expect_answer(m.resume(
        fetch.pending,
        upstream_head(401, &[]),
        Some(Vec::new()),
        at(1000),
    ));
    assert_eq!(r.status(), 503);
    let body = String::from_utf8_lossy(r.body()).to_string();
    assert!(
        body.contains("UPSTREAM_AUTH") && !body.contains("dckr_pat"),
        "{body}"
    );
}

/// With TOKEN_SECRET, an open mirror hands anonymous clients a signed token naming nobody, so
/// that another instance (or the same after a restart) knows them for anonymous: it sends the
/// upstream token inside on, and keeps the records stale answers need. A user's token is passed
/// as it is.
#[test]
fn signed_anonymous_tokens_are_known_on_every_instance() {
    let settings = [("CACHE", "file:///c"), ("TOKEN_SECRET", SECRET)];
    let first = mirror(&settings);
    let token = token_dance(
        &first,
        "/token?scope=repository:alpine:pull",
        &[],
        "hub-jwt",
    );
    assert!(token.starts_with("rm1."), "{token}");
    let other = mirror(&settings);
    let digest = format!("sha256:{}", "e".repeat(64));
    let auth = format!("Bearer {token}");
    let get_tag = request(
        Method::GET,
        "/v2/alpine/manifests/3.19",
        &[("authorization", &auth)],
    );
    let ask = expect_fetch(start(&other, &get_tag, 1000));
    assert_eq!(
        ask.request.headers()[header::AUTHORIZATION],
        "Bearer hub-jwt"
    );
    let answer = upstream_head(200, &[("docker-content-digest", &digest)]);
    let lookup = expect_lookup(other.resume(ask.pending, answer, None, at(1000)));
    match other.resume_lookup(lookup.pending, Some(stored_index())) {
        Step::Serve(_, _, summary) => assert_eq!(summary.remember.len(), 1),
        other => panic!("expected the stored manifest, got {other:?}"),
    }
    // A token the client logged in for is the upstream's own, and not anonymous.
    let users = token_dance(
        &first,
        "/token?scope=repository:alpine:pull",
        &[("authorization", "Basic YWxpY2U6cHc=")],
        "alice-jwt",
    );
    assert_eq!(users, "alice-jwt");
}

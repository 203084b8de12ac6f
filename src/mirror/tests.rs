//! The core's steps, driven with recorded upstream heads: Docker Hub's challenge, its token answer,
//! a 307 to its CDN. No network.

use super::*;
use std::collections::HashMap;
use std::time::Duration;

const HUB_CHALLENGE: &str =
    r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#;
const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn mirror(pairs: &[(&str, &str)]) -> Mirror {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Mirror::new(Config::from_lookup(|k| map.get(k).cloned()).unwrap())
}

fn whitelisted() -> Mirror {
    mirror(&[("WHITE_LIST", "alice,bob"), ("TOKEN_SECRET", SECRET)])
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> request::Parts {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "mirror.test");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(()).unwrap().into_parts().0
}

fn start(m: &Mirror, head: &request::Parts, now: u64) -> Step {
    m.start(
        &Incoming {
            head,
            scheme: "http",
            body: b"",
            client: None,
        },
        at(now),
    )
}

fn upstream_head(status: u16, headers: &[(&str, &str)]) -> response::Parts {
    let mut builder = Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(()).unwrap().into_parts().0
}

fn basic(user: &str, password: &str) -> String {
    BasicCredentials {
        user: user.into(),
        password: password.into(),
    }
    .header_value()
}

fn expect_answer(step: Step) -> (Response<Vec<u8>>, Summary) {
    match step {
        Step::Answer(r, s) => (r, s),
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn expect_fetch(step: Step) -> Fetch {
    match step {
        Step::Fetch(f) => *f,
        other => panic!("expected a fetch, got {other:?}"),
    }
}

fn expect_relay(step: Step) -> response::Parts {
    match step {
        Step::Relay(p, _) => p,
        other => panic!("expected a relay, got {other:?}"),
    }
}

fn error_code(response: &Response<Vec<u8>>) -> String {
    let value: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    value["errors"][0]["code"].as_str().unwrap().to_string()
}

/// Runs the token dance against recorded Docker Hub answers; returns the token the mirror answers.
fn token_dance(m: &Mirror, path: &str, headers: &[(&str, &str)], upstream_token: &str) -> String {
    let fetch = expect_fetch(start(m, &request(Method::GET, path, headers), 1000));
    let token_fetch = match fetch.request.uri().path() {
        "/v2/" => expect_fetch(m.resume(
            fetch.pending,
            upstream_head(401, &[("www-authenticate", HUB_CHALLENGE)]),
            Some(Vec::new()),
            at(1000),
        )),
        _ => fetch,
    };
    let body = format!(r#"{{"token":"{upstream_token}","expires_in":300}}"#);
    let (response, _) = expect_answer(m.resume(
        token_fetch.pending,
        upstream_head(200, &[]),
        Some(body.into_bytes()),
        at(1000),
    ));
    assert_eq!(response.status(), 200);
    let value: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert!(value.get("refresh_token").is_none());
    value["token"].as_str().unwrap().to_string()
}

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

#[test]
fn manifests_go_upstream_with_library_and_every_accept() {
    let m = mirror(&[]);
    let head = request(
        Method::HEAD,
        "/v2/alpine/manifests/3.19",
        &[
            ("accept", "application/vnd.oci.image.manifest.v1+json"),
            (
                "accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            ),
            ("authorization", "Bearer hub-token"),
            ("cookie", "x"),
        ],
    );
    let fetch = expect_fetch(start(&m, &head, 1));
    assert_eq!(fetch.request.method(), Method::HEAD);
    assert_eq!(
        fetch.request.uri().to_string(),
        "https://registry-1.docker.io/v2/library/alpine/manifests/3.19"
    );
    assert_eq!(
        fetch
            .request
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .count(),
        2
    );
    assert_eq!(
        fetch.request.headers()[header::AUTHORIZATION],
        "Bearer hub-token"
    );
    assert!(fetch.request.headers().get(header::COOKIE).is_none());
    assert!(fetch.read_body.is_none());
    let relay = expect_relay(m.resume(
        fetch.pending,
        upstream_head(
            200,
            &[
                ("content-type", "application/vnd.oci.image.index.v1+json"),
                ("content-length", "1234"),
                ("docker-content-digest", "sha256:abc"),
                ("ratelimit-limit", "100;w=21600"),
                ("ratelimit-remaining", "99;w=21600"),
                ("set-cookie", "no"),
            ],
        ),
        None,
        at(1),
    ));
    assert_eq!(relay.status, 200);
    assert_eq!(relay.headers[header::CONTENT_LENGTH], "1234");
    assert_eq!(relay.headers["docker-content-digest"], "sha256:abc");
    assert_eq!(relay.headers["ratelimit-remaining"], "99;w=21600");
    assert!(relay.headers.get(header::SET_COOKIE).is_none());
}

#[test]
fn upstream_401_becomes_the_mirrors_challenge_with_scope() {
    let m = mirror(&[]);
    let fetch = expect_fetch(start(
        &m,
        &request(Method::GET, "/v2/alpine/manifests/latest", &[]),
        1,
    ));
    let challenge = format!("{HUB_CHALLENGE},scope=\"repository:library/alpine:pull\"");
    let (r, _) = expect_answer(m.resume(
        fetch.pending,
        upstream_head(401, &[("www-authenticate", &challenge)]),
        None,
        at(1),
    ));
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="http://mirror.test/token",service="mirror.test",scope="repository:alpine:pull""#
    );
    // ... and the realm it named is now known, so the next token request skips the ping.
    let next = expect_fetch(start(
        &m,
        &request(Method::GET, "/token?scope=repository:alpine:pull", &[]),
        2,
    ));
    assert!(next
        .request
        .uri()
        .to_string()
        .starts_with("https://auth.docker.io/token?"));
}

#[test]
fn blob_redirects_are_followed_without_credentials() {
    let m = mirror(&[]);
    let digest = format!("sha256:{}", "d".repeat(64));
    let head = request(
        Method::GET,
        &format!("/v2/library/alpine/blobs/{digest}"),
        &[
            ("authorization", "Bearer hub-token"),
            ("range", "bytes=0-99"),
            ("user-agent", "docker/20.10"),
            ("accept", "x"),
        ],
    );
    let fetch = expect_fetch(start(&m, &head, 1));
    let cdn = "https://production.cloudflare.docker.com/registry-v2/docker/registry/v2/blobs/sha256/dd/data?verify=1&sig=abc";
    let storage = expect_fetch(m.resume(
        fetch.pending,
        upstream_head(307, &[("location", cdn)]),
        None,
        at(1),
    ));
    assert_eq!(storage.request.uri().to_string(), cdn);
    let headers = storage.request.headers();
    assert!(headers.get(header::AUTHORIZATION).is_none());
    assert!(headers.get(header::ACCEPT).is_none());
    assert_eq!(headers[header::RANGE], "bytes=0-99");
    assert_eq!(headers[header::USER_AGENT], "docker/20.10");
    let relay = expect_relay(m.resume(
        storage.pending,
        upstream_head(
            206,
            &[
                ("content-length", "100"),
                ("content-range", "bytes 0-99/5000"),
                ("x-amz-request-id", "1"),
            ],
        ),
        None,
        at(1),
    ));
    assert_eq!(relay.status, 206);
    assert_eq!(relay.headers[header::CONTENT_RANGE], "bytes 0-99/5000");
    assert_eq!(relay.headers["docker-content-digest"], digest.as_str());
    assert!(relay.headers.get("x-amz-request-id").is_none());
}

#[test]
fn blob_redirects_can_be_passed_to_the_client() {
    let m = mirror(&[("BLOB_REDIRECTS", "pass")]);
    let digest = format!("sha256:{}", "d".repeat(64));
    let fetch = expect_fetch(start(
        &m,
        &request(Method::GET, &format!("/v2/alpine/blobs/{digest}"), &[]),
        1,
    ));
    let (r, _) = expect_answer(m.resume(
        fetch.pending,
        upstream_head(307, &[("location", "https://cdn.example/x?sig=1")]),
        None,
        at(1),
    ));
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()[header::LOCATION], "https://cdn.example/x?sig=1");
}

#[test]
fn bad_redirects_and_upstream_failures_are_unavailable() {
    let m = mirror(&[]);
    let digest = format!("sha256:{}", "d".repeat(64));
    let path = format!("/v2/alpine/blobs/{digest}");
    let fetch = expect_fetch(start(&m, &request(Method::GET, &path, &[]), 1));
    let (r, _) = expect_answer(m.resume(
        fetch.pending,
        upstream_head(307, &[("location", "file:///etc/passwd")]),
        None,
        at(1),
    ));
    assert_eq!(r.status(), 503);
    assert_eq!(error_code(&r), "UNAVAILABLE");
    let fetch = expect_fetch(start(&m, &request(Method::GET, &path, &[]), 1));
    let (r, _) = expect_answer(m.fail(fetch.pending, FetchError::Timeout, at(1000)));
    assert_eq!(r.status(), 503);
    let fetch = expect_fetch(start(&m, &request(Method::GET, &path, &[]), 1));
    let (r, _) = expect_answer(m.resume(fetch.pending, upstream_head(500, &[]), None, at(1)));
    assert_eq!(r.status(), 503);
    // Redirect loops end.
    let mut step = start(&m, &request(Method::GET, &path, &[]), 1);
    for _ in 0..10 {
        match step {
            Step::Fetch(f) => {
                step = m.resume(
                    f.pending,
                    upstream_head(302, &[("location", "http://127.0.0.1:1/loop")]),
                    None,
                    at(1),
                )
            }
            _ => break,
        }
    }
    let (r, _) = expect_answer(step);
    assert_eq!(r.status(), 503);
}

#[test]
fn upstream_429_passes_on_with_retry_after() {
    let m = mirror(&[]);
    let fetch = expect_fetch(start(
        &m,
        &request(Method::GET, "/v2/alpine/manifests/latest", &[]),
        1,
    ));
    let (r, _) = expect_answer(m.resume(
        fetch.pending,
        upstream_head(
            429,
            &[("retry-after", "120"), ("ratelimit-remaining", "0;w=21600")],
        ),
        None,
        at(1),
    ));
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()[header::RETRY_AFTER], "120");
    assert_eq!(r.headers()["ratelimit-remaining"], "0;w=21600");
    assert_eq!(error_code(&r), "TOOMANYREQUESTS");
    let fetch = expect_fetch(start(
        &m,
        &request(Method::GET, "/v2/alpine/manifests/latest", &[]),
        1,
    ));
    let (r, _) = expect_answer(m.resume(fetch.pending, upstream_head(429, &[]), None, at(1)));
    assert_eq!(r.headers()[header::RETRY_AFTER], DEFAULT_RETRY_AFTER);
}

#[test]
fn upstream_404_is_relayed() {
    let m = mirror(&[]);
    let fetch = expect_fetch(start(
        &m,
        &request(Method::GET, "/v2/nope/manifests/latest", &[]),
        1,
    ));
    let relay = expect_relay(m.resume(
        fetch.pending,
        upstream_head(
            404,
            &[
                ("content-type", "application/json"),
                ("content-length", "80"),
            ],
        ),
        None,
        at(1),
    ));
    assert_eq!(relay.status, 404);
    assert_eq!(relay.headers[header::CONTENT_LENGTH], "80");
}

#[test]
fn tags_list_passes_only_paging_and_rewrites_link() {
    let m = mirror(&[]);
    let fetch = expect_fetch(start(
        &m,
        &request(Method::GET, "/v2/alpine/tags/list?n=2&last=a&evil=1", &[]),
        1,
    ));
    assert_eq!(
        fetch.request.uri().to_string(),
        "https://registry-1.docker.io/v2/library/alpine/tags/list?n=2&last=a"
    );
    let relay = expect_relay(m.resume(
        fetch.pending,
        upstream_head(
            200,
            &[(
                "link",
                "</v2/library/alpine/tags/list?last=b&n=2>; rel=\"next\"",
            )],
        ),
        None,
        at(1),
    ));
    assert_eq!(
        relay.headers[header::LINK],
        "</v2/alpine/tags/list?last=b&n=2>; rel=\"next\""
    );
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
        (Method::GET, "/v2/alpine/manifests/.bad", "TAG_INVALID", 400),
        (Method::GET, "/nope", "NOT_FOUND", 404),
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

#[test]
fn large_blobs_are_redirected_small_ones_streamed() {
    let m = mirror(&[("BLOB_REDIRECTS", "large"), ("LARGE_BLOB_BYTES", "1000")]);
    let digest = format!("sha256:{}", "f".repeat(64));
    let path = format!("/v2/alpine/blobs/{digest}");
    let storage_url = "http://127.0.0.1:9/blob?X-Amz-Signature=1";
    for (length, redirected) in [("1000", false), ("1001", true)] {
        let fetch = expect_fetch(start(&m, &request(Method::GET, &path, &[]), 1));
        let storage = expect_fetch(m.resume(
            fetch.pending,
            upstream_head(307, &[("location", storage_url)]),
            None,
            at(1),
        ));
        let step = m.resume(
            storage.pending,
            upstream_head(200, &[("content-length", length)]),
            None,
            at(1),
        );
        match step {
            Step::Answer(r, _) if redirected => {
                assert_eq!(r.status(), 307);
                assert_eq!(r.headers()[header::LOCATION], storage_url);
            }
            Step::Relay(head, _) if !redirected => {
                assert_eq!(head.headers[header::CONTENT_LENGTH], length)
            }
            other => panic!("length {length}: {other:?}"),
        }
    }
    // HEAD answers carry no body: they are always answered by the mirror.
    let fetch = expect_fetch(start(&m, &request(Method::HEAD, &path, &[]), 1));
    let storage = expect_fetch(m.resume(
        fetch.pending,
        upstream_head(307, &[("location", storage_url)]),
        None,
        at(1),
    ));
    expect_relay(m.resume(
        storage.pending,
        upstream_head(200, &[("content-length", "5000")]),
        None,
        at(1),
    ));
}

#[test]
fn storage_redirects_go_through_a_configured_relay() {
    let m = mirror(&[
        ("BLOB_REDIRECTS", "pass"),
        (
            "STORAGE_RELAY",
            "production.cloudflare.docker.com=https://d1.cloudfront.net/_blobs/cf",
        ),
    ]);
    let digest = format!("sha256:{}", "f".repeat(64));
    let fetch = expect_fetch(start(
        &m,
        &request(Method::GET, &format!("/v2/alpine/blobs/{digest}"), &[]),
        1,
    ));
    let cdn = "https://production.cloudflare.docker.com/registry-v2/x/data?sig=1&e=2";
    let (r, _) = expect_answer(m.resume(
        fetch.pending,
        upstream_head(307, &[("location", cdn)]),
        None,
        at(1),
    ));
    assert_eq!(
        r.headers()[header::LOCATION],
        "https://d1.cloudfront.net/_blobs/cf/registry-v2/x/data?sig=1&e=2"
    );
    let fetch = expect_fetch(start(
        &m,
        &request(Method::GET, &format!("/v2/alpine/blobs/{digest}"), &[]),
        1,
    ));
    let other = "https://elsewhere.example/x";
    let (r, _) = expect_answer(m.resume(
        fetch.pending,
        upstream_head(307, &[("location", other)]),
        None,
        at(1),
    ));
    assert_eq!(r.headers()[header::LOCATION], other);
}

#[test]
fn a_relay_path_is_on_the_mirrors_own_address() {
    let m = mirror(&[
        ("BLOB_REDIRECTS", "pass"),
        ("TRUST_FORWARDED_HEADERS", "true"),
        (
            "STORAGE_RELAY",
            "production.cloudflare.docker.com=/_storage/cloudflare",
        ),
    ]);
    let digest = format!("sha256:{}", "f".repeat(64));
    let head = request(
        Method::GET,
        &format!("/v2/alpine/blobs/{digest}"),
        &[
            ("x-forwarded-host", "d1.cloudfront.net"),
            ("x-forwarded-proto", "https"),
        ],
    );
    let fetch = expect_fetch(start(&m, &head, 1));
    let cdn = "https://production.cloudflare.docker.com/registry-v2/x/data?sig=1";
    let (r, _) = expect_answer(m.resume(
        fetch.pending,
        upstream_head(307, &[("location", cdn)]),
        None,
        at(1),
    ));
    assert_eq!(
        r.headers()[header::LOCATION],
        "https://d1.cloudfront.net/_storage/cloudflare/registry-v2/x/data?sig=1"
    );
}

#[test]
fn registries_by_ns_prefix_and_host_reach_their_own_upstream() {
    let m = mirror(&[
        ("UPSTREAM_GHCR_IO", "http://127.0.0.1:5001"),
        ("REGISTRY_GHCR", "ghcr.mirror.test"),
    ]);
    let path_prefix = expect_fetch(start(
        &m,
        &request(Method::GET, "/v2/ghcr.io/owner/app/manifests/1", &[]),
        1,
    ));
    let ns = expect_fetch(start(
        &m,
        &request(Method::GET, "/v2/owner/app/manifests/1?ns=ghcr.io", &[]),
        1,
    ));
    let mut by_host = request(Method::GET, "/v2/owner/app/manifests/1", &[]);
    by_host
        .headers
        .insert("host", HeaderValue::from_static("ghcr.mirror.test"));
    let by_host = expect_fetch(start(&m, &by_host, 1));
    for fetch in [&path_prefix, &ns, &by_host] {
        assert_eq!(
            fetch.request.uri().to_string(),
            "http://127.0.0.1:5001/v2/owner/app/manifests/1"
        );
    }
    // The challenge's scope lets /token find the registry again: the ns request's scope names it.
    let (r, _) = expect_answer(m.resume(ns.pending, upstream_head(401, &[]), None, at(1)));
    assert!(r.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains(r#"scope="repository:ghcr.io/owner/app:pull""#));
    let token = expect_fetch(start(
        &m,
        &request(
            Method::GET,
            "/token?scope=repository:ghcr.io/owner/app:pull",
            &[],
        ),
        1,
    ));
    assert_eq!(token.request.uri().to_string(), "http://127.0.0.1:5001/v2/");
    let mut host_token = request(Method::GET, "/token?scope=repository:owner/app:pull", &[]);
    host_token
        .headers
        .insert("host", HeaderValue::from_static("ghcr.mirror.test"));
    let host_token = expect_fetch(start(&m, &host_token, 1));
    assert_eq!(
        host_token.request.uri().to_string(),
        "http://127.0.0.1:5001/v2/"
    );
    // ns=docker.io is Docker Hub.
    let hub = expect_fetch(start(
        &m,
        &request(Method::GET, "/v2/alpine/manifests/1?ns=docker.io", &[]),
        1,
    ));
    assert!(hub
        .request
        .uri()
        .to_string()
        .starts_with("https://registry-1.docker.io/v2/library/alpine/"));
}

#[test]
fn unknown_registries_get_name_unknown_without_an_upstream_call() {
    let m = mirror(&[("REGISTRIES", "docker.io,ghcr.io")]);
    for path in [
        "/v2/owner/app/manifests/1?ns=127.0.0.1:8080",
        "/v2/owner/app/manifests/1?ns=quay.io",
        "/v2/127.0.0.1/app/manifests/1",
        "/v2/quay.io/owner/app/manifests/1",
        "/v2/evil.example/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let (r, _) = expect_answer(start(&m, &request(Method::GET, path, &[]), 1));
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(error_code(&r), "NAME_UNKNOWN", "{path}");
        let body = String::from_utf8_lossy(r.body()).to_string();
        assert!(body.contains("docker.io, ghcr.io"), "{body}");
    }
    let (r, _) = expect_answer(start(
        &m,
        &request(Method::GET, "/token?scope=repository:quay.io/x:pull", &[]),
        1,
    ));
    assert_eq!(r.status(), 404);
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

#[test]
fn gateway_errors_and_broken_connections_are_retried_a_bounded_number_of_times() {
    let m = mirror(&[]);
    let fetch = expect_fetch(start(
        &m,
        &request(
            Method::GET,
            "/v2/alpine/manifests/latest",
            &[("accept", "x")],
        ),
        1,
    ));
    assert_eq!(fetch.delay, Duration::ZERO);
    let uri = fetch.request.uri().clone();
    let second = expect_fetch(m.resume(fetch.pending, upstream_head(503, &[]), None, at(1)));
    assert_eq!(
        (second.request.uri(), second.delay),
        (&uri, Duration::from_millis(100))
    );
    assert_eq!(second.request.headers()[header::ACCEPT], "x");
    let third = expect_fetch(m.fail(second.pending, FetchError::Connect, at(1000)));
    assert_eq!(third.delay, Duration::from_millis(400));
    let (r, _) = expect_answer(m.resume(third.pending, upstream_head(502, &[]), None, at(1)));
    assert_eq!(r.status(), 503);
    assert_eq!(error_code(&r), "UNAVAILABLE");
    // A timeout has spent its time: it is answered at once.
    let fetch = expect_fetch(start(
        &m,
        &request(Method::GET, "/v2/alpine/manifests/latest", &[]),
        1,
    ));
    assert!(matches!(
        m.fail(fetch.pending, FetchError::Timeout, at(1000)),
        Step::Answer(..)
    ));
    // The token dance retries too.
    let fetch = expect_fetch(start(
        &m,
        &request(Method::GET, "/token?scope=repository:alpine:pull", &[]),
        1,
    ));
    let again = expect_fetch(m.fail(fetch.pending, FetchError::Other, at(1000)));
    assert_eq!(
        again.request.uri().to_string(),
        "https://registry-1.docker.io/v2/"
    );
    assert!(again.read_body.is_some());
}

/// Behind a Lambda function URL, which may not keep a HEAD answer's length, a manifest HEAD carries
/// no digest (clients then GET it); a GET keeps its digest, and elsewhere HEAD keeps it too.
#[test]
fn manifest_head_has_no_digest_where_head_lengths_are_not_kept() {
    let lambda = Mirror::new(crate::platforms::lambda::config(|_| None).unwrap());
    let answer = |m: &Mirror, method: Method| {
        let head = request(method, "/v2/alpine/manifests/3.19", &[]);
        let fetch = expect_fetch(start(m, &head, 1));
        expect_relay(m.resume(
            fetch.pending,
            upstream_head(
                200,
                &[
                    ("content-type", "application/vnd.oci.image.index.v1+json"),
                    ("content-length", "1234"),
                    ("docker-content-digest", "sha256:abc"),
                ],
            ),
            None,
            at(1),
        ))
    };
    assert!(answer(&lambda, Method::HEAD)
        .headers
        .get("docker-content-digest")
        .is_none());
    assert_eq!(
        answer(&lambda, Method::GET).headers["docker-content-digest"],
        "sha256:abc"
    );
    assert_eq!(
        answer(&mirror(&[]), Method::HEAD).headers["docker-content-digest"],
        "sha256:abc"
    );
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

/// A tag list chosen with `ns` pages on in the same registry: the next page's link keeps the `ns`.
#[test]
fn tag_list_links_keep_the_registry_chosen_with_ns() {
    let m = mirror(&[("UPSTREAM_GHCR_IO", "http://127.0.0.1:5001")]);
    let fetch = expect_fetch(start(
        &m,
        &request(Method::GET, "/v2/owner/app/tags/list?ns=ghcr.io&n=1", &[]),
        1,
    ));
    assert_eq!(
        fetch.request.uri().to_string(),
        "http://127.0.0.1:5001/v2/owner/app/tags/list?n=1"
    );
    let relay = expect_relay(m.resume(
        fetch.pending,
        upstream_head(
            200,
            &[(
                "link",
                "</v2/owner/app/tags/list?last=1.0&n=1>; rel=\"next\"",
            )],
        ),
        None,
        at(1),
    ));
    assert_eq!(
        relay.headers[header::LINK],
        "</v2/owner/app/tags/list?ns=ghcr.io&last=1.0&n=1>; rel=\"next\""
    );
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

/// Storage's 416 for a `Range` past the end is the client's mistake and stays a 416 with its
/// `Content-Range`; storage's other refusals are the upstream's failure (503). A search the index
/// refuses is passed on too.
#[test]
fn client_mistakes_that_upstreams_report_stay_4xx() {
    let m = mirror(&[]);
    let digest = format!("sha256:{}", "b".repeat(64));
    let storage = |status: u16, headers: &[(&str, &str)]| {
        let head = request(
            Method::GET,
            &format!("/v2/alpine/blobs/{digest}"),
            &[("range", "bytes=999-")],
        );
        let fetch = expect_fetch(start(&m, &head, 1));
        let cdn = "https://production.cloudflare.docker.com/x?sig=1";
        let storage = expect_fetch(m.resume(
            fetch.pending,
            upstream_head(307, &[("location", cdn)]),
            None,
            at(1),
        ));
        expect_answer(m.resume(storage.pending, upstream_head(status, headers), None, at(1))).0
    };
    let r = storage(416, &[("content-range", "bytes */10")]);
    assert_eq!(r.status(), 416);
    assert_eq!(error_code(&r), "RANGE_INVALID");
    assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */10");
    assert_eq!(storage(403, &[]).status(), 503);

    let fetch = expect_fetch(start(&m, &request(Method::GET, "/v1/search?q=a", &[]), 1));
    let relay = expect_relay(m.resume(fetch.pending, upstream_head(400, &[]), None, at(1)));
    assert_eq!(relay.status, 400);
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
        let fetch = match fetch.request.uri().path() {
            "/v2/" => expect_fetch(m.resume(
                fetch.pending,
                upstream_head(401, &[("www-authenticate", HUB_CHALLENGE)]),
                Some(vec![]),
                at(1000),
            )),
            _ => fetch,
        };
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

// ---- The content store ----

fn with_store() -> Mirror {
    mirror(&[("CACHE", "file:///var/cache/mirror")])
}

fn expect_lookup(step: Step) -> Lookup {
    match step {
        Step::Lookup(lookup) => *lookup,
        other => panic!("expected a lookup, got {other:?}"),
    }
}

/// A blob missing from the store is fetched as usual, and relayed with a verifier to store it.
#[test]
fn a_missing_blob_is_fetched_and_stored_as_it_is_relayed() {
    let m = with_store();
    let digest = format!("sha256:{}", "c".repeat(64));
    let head = request(Method::GET, &format!("/v2/alpine/blobs/{digest}"), &[]);
    let lookup = expect_lookup(start(&m, &head, 1));
    assert_eq!(
        lookup.key,
        format!("v1/docker.io/blobs/sha256/{}", "c".repeat(64))
    );
    let fetch = expect_fetch(m.resume_lookup(lookup.pending, None));
    assert_eq!(fetch.request.method(), Method::GET);
    let cdn = "https://production.cloudflare.docker.com/x?sig=1";
    let storage = expect_fetch(m.resume(
        fetch.pending,
        upstream_head(307, &[("location", cdn)]),
        None,
        at(1),
    ));
    match m.resume(
        storage.pending,
        upstream_head(200, &[("content-length", "5")]),
        None,
        at(1),
    ) {
        Step::RelayAndStore(parts, summary, write) => {
            assert_eq!(parts.status, 200);
            assert_eq!(write.key, lookup.key);
            assert_eq!(summary.store, Some("miss"));
        }
        other => panic!("expected a relay into the store, got {other:?}"),
    }
    // A Range, a HEAD, or no store at all: no lookup.
    for (m, head) in [
        (
            &m,
            request(
                Method::GET,
                &format!("/v2/alpine/blobs/{digest}"),
                &[("range", "bytes=0-1")],
            ),
        ),
        (
            &m,
            request(Method::HEAD, &format!("/v2/alpine/blobs/{digest}"), &[]),
        ),
        (
            &mirror(&[]),
            request(Method::GET, &format!("/v2/alpine/blobs/{digest}"), &[]),
        ),
    ] {
        expect_fetch(start(m, &head, 1));
    }
}

/// A stored blob is served only after the registry lets this client read it under this
/// repository (a HEAD with the client's token); a refusal gets the upstream's own answer, and an
/// unavailable upstream a 503, never the stored bytes.
#[test]
fn a_stored_blob_is_served_only_with_the_upstreams_word() {
    let m = with_store();
    let digest = format!("sha256:{}", "d".repeat(64));
    let ask = || {
        let head = request(
            Method::GET,
            &format!("/v2/private/app/blobs/{digest}"),
            &[("authorization", "Bearer user-token")],
        );
        let lookup = expect_lookup(start(&m, &head, 1));
        let stored = crate::store::Stored {
            length: 5,
            media_type: None,
        };
        let authorize = expect_fetch(m.resume_lookup(lookup.pending, Some(stored)));
        assert_eq!(authorize.request.method(), Method::HEAD);
        assert_eq!(
            authorize.request.uri().path(),
            format!("/v2/private/app/blobs/{digest}")
        );
        assert_eq!(
            authorize.request.headers()[header::AUTHORIZATION],
            "Bearer user-token"
        );
        authorize
    };
    match m.resume(ask().pending, upstream_head(307, &[]), None, at(1)) {
        Step::Serve(parts, key, summary) => {
            assert_eq!(parts.headers[header::CONTENT_LENGTH], "5");
            assert_eq!(parts.headers["docker-content-digest"], digest.as_str());
            assert!(key.ends_with(&"d".repeat(64)));
            assert_eq!(summary.store, Some("hit"));
        }
        other => panic!("expected the stored blob, got {other:?}"),
    }
    // Refused: the GET goes upstream, and its answer (here the challenge) is the client's.
    let get = expect_fetch(m.resume(ask().pending, upstream_head(401, &[]), None, at(1)));
    assert_eq!(get.request.method(), Method::GET);
    let (r, _) = expect_answer(m.resume(
        get.pending,
        upstream_head(401, &[("www-authenticate", HUB_CHALLENGE)]),
        None,
        at(1),
    ));
    assert_eq!(r.status(), 401);
    // Unavailable: retried, then 503.
    let mut step = m.resume(ask().pending, upstream_head(503, &[]), None, at(1));
    while let Step::Fetch(retry) = step {
        step = m.resume(retry.pending, upstream_head(503, &[]), None, at(1));
    }
    let (r, _) = expect_answer(step);
    assert_eq!(r.status(), 503);
}

/// With a store, a manifest GET by tag asks the tag's digest with HEAD (not a counted pull); a
/// stored manifest is then served at once (the HEAD was the upstream's word), a missing one is
/// fetched by digest and stored with its media type.
#[test]
fn tags_are_resolved_with_head_and_served_from_the_store() {
    let m = with_store();
    let digest = format!("sha256:{}", "e".repeat(64));
    let tag_head = || {
        let head = request(
            Method::GET,
            "/v2/alpine/manifests/3.19",
            &[("accept", "application/vnd.oci.image.index.v1+json")],
        );
        let ask = expect_fetch(start(&m, &head, 1));
        assert_eq!(ask.request.method(), Method::HEAD);
        assert!(ask.request.uri().path().ends_with("/manifests/3.19"));
        assert_eq!(
            ask.request.headers()[header::ACCEPT],
            "application/vnd.oci.image.index.v1+json"
        );
        let answer = upstream_head(
            200,
            &[
                ("docker-content-digest", &digest),
                ("content-type", "application/vnd.oci.image.index.v1+json"),
            ],
        );
        expect_lookup(m.resume(ask.pending, answer, None, at(1)))
    };
    let stored = crate::store::Stored {
        length: 7,
        media_type: Some("application/vnd.oci.image.index.v1+json".into()),
    };
    match m.resume_lookup(tag_head().pending, Some(stored)) {
        Step::Serve(parts, key, _) => {
            assert_eq!(
                parts.headers[header::CONTENT_TYPE],
                "application/vnd.oci.image.index.v1+json"
            );
            assert_eq!(parts.headers["docker-content-digest"], digest.as_str());
            assert!(key.contains("/manifests/sha256/"));
        }
        other => panic!("expected the stored manifest, got {other:?}"),
    }
    let get = expect_fetch(m.resume_lookup(tag_head().pending, None));
    assert_eq!(get.request.method(), Method::GET);
    assert_eq!(
        get.request.uri().path(),
        format!("/v2/library/alpine/manifests/{digest}")
    );
    match m.resume(
        get.pending,
        upstream_head(
            200,
            &[
                ("content-length", "7"),
                ("content-type", "application/vnd.oci.image.index.v1+json"),
            ],
        ),
        None,
        at(1),
    ) {
        Step::RelayAndStore(_, _, write) => assert_eq!(
            write.media_type.as_deref(),
            Some("application/vnd.oci.image.index.v1+json")
        ),
        other => panic!("expected a relay into the store, got {other:?}"),
    }
}

/// The log says when a manifest GET reached the registry (a pull in Docker Hub's accounting), and
/// the pulls left that it announced.
#[test]
fn the_log_counts_docker_hubs_pulls() {
    let m = mirror(&[]);
    let answer = |method: Method| {
        let head = request(method, "/v2/alpine/manifests/3.19", &[]);
        let fetch = expect_fetch(start(&m, &head, 1));
        match m.resume(
            fetch.pending,
            upstream_head(200, &[("ratelimit-remaining", "99;w=21600")]),
            None,
            at(1),
        ) {
            Step::Relay(_, summary) => summary,
            other => panic!("expected a relay, got {other:?}"),
        }
    };
    let get = answer(Method::GET);
    assert!(get.counted_get);
    assert_eq!(get.ratelimit_remaining.as_deref(), Some("99;w=21600"));
    assert!(!answer(Method::HEAD).counted_get);
}

// ---- Stale answers ----

/// Fails the fetch (and its retries) with no connection; the step that follows.
fn upstream_down(m: &Mirror, step: Step) -> Step {
    let mut step = step;
    loop {
        step = match step {
            Step::Fetch(fetch) => m.fail(fetch.pending, FetchError::Connect, at(10)),
            other => return other,
        }
    }
}

fn expect_recall(step: Step) -> Lookup {
    match step {
        Step::Recall(recall) => *recall,
        other => panic!("expected a recall, got {other:?}"),
    }
}

fn stored_index() -> crate::store::Stored {
    crate::store::Stored {
        length: 7,
        media_type: Some("application/vnd.oci.image.index.v1+json".into()),
    }
}

/// An anonymous client's tag is recorded when the upstream names its digest; when the upstream
/// is down, the recorded digest's stored manifest is served as stale, for up to
/// TAG_STALE_MAX_SECS.
#[test]
fn tags_seen_by_anonymous_clients_are_served_stale_when_the_upstream_is_down() {
    let m = mirror(&[("CACHE", "file:///c"), ("TAG_STALE_MAX_SECS", "100")]);
    let digest = format!("sha256:{}", "e".repeat(64));
    let get_tag = request(Method::GET, "/v2/alpine/manifests/3.19", &[]);
    let ask = expect_fetch(start(&m, &get_tag, 1));
    let answer = upstream_head(200, &[("docker-content-digest", &digest)]);
    let lookup = expect_lookup(m.resume(ask.pending, answer, None, at(1)));
    let summary = match m.resume_lookup(lookup.pending, Some(stored_index())) {
        Step::Serve(_, _, summary) => summary,
        other => panic!("expected the stored manifest, got {other:?}"),
    };
    let record = &summary.remember[0];
    assert_eq!(record.key, "v1/docker.io/tags/library/alpine/_tag/3.19");
    assert_eq!(record.value, format!("{digest} 1").into_bytes());

    // The upstream is down: the record, then the stored manifest it names, served stale.
    let down = |now: u64, record: Option<Vec<u8>>| {
        let recall = expect_recall(upstream_down(&m, start(&m, &get_tag, now)));
        assert_eq!(recall.key, "v1/docker.io/tags/library/alpine/_tag/3.19");
        m.resume_recall(recall.pending, record)
    };
    let lookup = expect_lookup(down(50, Some(record.value.clone())));
    assert!(lookup.key.ends_with(&"e".repeat(64)));
    match m.resume_lookup(lookup.pending, Some(stored_index())) {
        Step::Serve(parts, _, summary) => {
            assert_eq!(parts.headers["docker-content-digest"], digest.as_str());
            assert_eq!(summary.store, Some("stale"));
        }
        other => panic!("expected a stale manifest, got {other:?}"),
    }
    // The manifest no longer stored, no record, or a record past the bound: the failure.
    let lookup = expect_lookup(down(50, Some(record.value.clone())));
    let (r, _) = expect_answer(m.resume_lookup(lookup.pending, None));
    assert_eq!(r.status(), 503);
    let (r, _) = expect_answer(down(50, None));
    assert_eq!(r.status(), 503);
    let (r, _) = expect_answer(down(102, Some(record.value.clone())));
    assert_eq!(r.status(), 503);
}

/// A client with a token of its own (its credentials stood behind it, as far as the mirror
/// knows) is never served stale, and its tags are not recorded: they may be private.
#[test]
fn clients_with_their_own_tokens_get_nothing_stale() {
    let m = with_store();
    let digest = format!("sha256:{}", "e".repeat(64));
    let get_tag = request(
        Method::GET,
        "/v2/alpine/manifests/3.19",
        &[("authorization", "Bearer users-own-token")],
    );
    let ask = expect_fetch(start(&m, &get_tag, 1));
    let answer = upstream_head(200, &[("docker-content-digest", &digest)]);
    let lookup = expect_lookup(m.resume(ask.pending, answer, None, at(1)));
    match m.resume_lookup(lookup.pending, Some(stored_index())) {
        Step::Serve(_, _, summary) => assert!(summary.remember.is_empty()),
        other => panic!("expected the stored manifest, got {other:?}"),
    }
    let (r, _) = expect_answer(upstream_down(&m, start(&m, &get_tag, 2)));
    assert_eq!(r.status(), 503);
    // A 429 on the tag's HEAD is passed on as such.
    let ask = expect_fetch(start(&m, &get_tag, 3));
    let (r, _) = expect_answer(m.resume(
        ask.pending,
        upstream_head(429, &[("retry-after", "9")]),
        None,
        at(3),
    ));
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()[header::RETRY_AFTER], "9");
}

/// Stored content whose authorising HEAD fails is served stale only when the upstream showed it
/// to an anonymous client under that repository.
#[test]
fn stored_content_is_served_stale_only_where_it_was_public() {
    let m = with_store();
    let digest = format!("sha256:{}", "c".repeat(64));
    let get = request(Method::GET, &format!("/v2/alpine/blobs/{digest}"), &[]);
    let blob = crate::store::Stored {
        length: 5,
        media_type: None,
    };
    // Authorised once: the public record is kept.
    let lookup = expect_lookup(start(&m, &get, 1));
    let authorize = expect_fetch(m.resume_lookup(lookup.pending, Some(blob.clone())));
    let summary = match m.resume(authorize.pending, upstream_head(200, &[]), None, at(1)) {
        Step::Serve(_, _, summary) => summary,
        other => panic!("expected the stored blob, got {other:?}"),
    };
    let public = format!(
        "v1/docker.io/public/library/alpine/_digest/sha256/{}",
        "c".repeat(64)
    );
    assert_eq!(summary.remember[0].key, public);
    // The upstream answers 503 (each retry too): the public record opens the store.
    let served = |record: Option<Vec<u8>>| {
        let lookup = expect_lookup(start(&m, &get, 5));
        let mut step = m.resume_lookup(lookup.pending, Some(blob.clone()));
        while let Step::Fetch(fetch) = step {
            step = m.resume(fetch.pending, upstream_head(503, &[]), None, at(5));
        }
        let recall = expect_recall(step);
        assert_eq!(recall.key, public);
        m.resume_recall(recall.pending, record)
    };
    match served(Some(b"1".to_vec())) {
        Step::Serve(_, _, summary) => assert_eq!(summary.store, Some("stale")),
        other => panic!("expected a stale blob, got {other:?}"),
    }
    let (r, _) = expect_answer(served(None));
    assert_eq!(r.status(), 503);
}

/// When the token service is down, a client without credentials still gets a token (an
/// anonymous one), so that its pull reaches what the store may serve; a login does not.
#[test]
fn a_token_service_down_leaves_anonymous_clients_a_way_to_the_store() {
    let m = with_store();
    let token = |headers: &[(&str, &str)]| {
        let head = request(Method::GET, "/token?scope=repository:alpine:pull", headers);
        upstream_down(&m, start(&m, &head, 1))
    };
    let (r, summary) = expect_answer(token(&[]));
    assert_eq!(r.status(), 200);
    assert!(String::from_utf8_lossy(r.body()).contains(r#""token":"anonymous""#));
    assert_eq!(summary.store, Some("stale"));
    let (r, _) = expect_answer(token(&[("authorization", "Basic YWxpY2U6cHc=")]));
    assert_eq!(r.status(), 503);
    // Without a store there is nothing to reach.
    let m = mirror(&[]);
    let head = request(Method::GET, "/token?scope=repository:alpine:pull", &[]);
    let (r, _) = expect_answer(upstream_down(&m, start(&m, &head, 1)));
    assert_eq!(r.status(), 503);
}

/// With TAG_TTL_SECS, an anonymous client's tag is taken from its record while the record is
/// younger than that, without asking the upstream; an older one is asked with HEAD.
#[test]
fn tag_ttl_skips_the_head_while_the_record_is_fresh() {
    let m = mirror(&[("CACHE", "file:///c"), ("TAG_TTL_SECS", "60")]);
    let digest = format!("sha256:{}", "e".repeat(64));
    let record = format!("{digest} 100").into_bytes();
    let get_tag = request(Method::GET, "/v2/alpine/manifests/3.19", &[]);
    let recall = expect_recall(start(&m, &get_tag, 150));
    let lookup = expect_lookup(m.resume_recall(recall.pending, Some(record.clone())));
    match m.resume_lookup(lookup.pending, Some(stored_index())) {
        Step::Serve(_, _, summary) => assert_eq!(summary.store, Some("hit")),
        other => panic!("expected the stored manifest, got {other:?}"),
    }
    let recall = expect_recall(start(&m, &get_tag, 160));
    let ask = expect_fetch(m.resume_recall(recall.pending, Some(record)));
    assert_eq!(ask.request.method(), Method::HEAD);
}

/// A client's HEAD by tag is answered from the upstream's HEAD, and from the store (head only)
/// when the upstream is down.
#[test]
fn a_head_by_tag_is_served_stale_too() {
    let m = with_store();
    let digest = format!("sha256:{}", "e".repeat(64));
    let head_tag = request(Method::HEAD, "/v2/alpine/manifests/3.19", &[]);
    let ask = expect_fetch(start(&m, &head_tag, 1));
    let answer = upstream_head(
        200,
        &[("docker-content-digest", &digest), ("content-length", "7")],
    );
    match m.resume(ask.pending, answer, None, at(1)) {
        Step::Relay(parts, summary) => {
            assert_eq!(parts.headers["docker-content-digest"], digest.as_str());
            assert_eq!(summary.remember.len(), 1);
        }
        other => panic!("expected the upstream's head, got {other:?}"),
    }
    let recall = expect_recall(upstream_down(&m, start(&m, &head_tag, 2)));
    let lookup =
        expect_lookup(m.resume_recall(recall.pending, Some(format!("{digest} 1").into_bytes())));
    match m.resume_lookup(lookup.pending, Some(stored_index())) {
        Step::Answer(r, summary) => {
            assert_eq!(r.headers()[header::CONTENT_LENGTH], "7");
            assert!(r.body().is_empty());
            assert_eq!(summary.store, Some("stale"));
        }
        other => panic!("expected a head of the stored manifest, got {other:?}"),
    }
}

// ---- The mirror's own upstream accounts ----

/// The mirror's request for an upstream token (after learning the challenge, the first time).
fn upstream_token_fetch(m: &Mirror, headers: &[(&str, &str)]) -> Fetch {
    let path = "/token?scope=repository:alpine:pull";
    let fetch = expect_fetch(start(m, &request(Method::GET, path, headers), 1000));
    match fetch.request.uri().path() {
        "/v2/" => expect_fetch(m.resume(
            fetch.pending,
            upstream_head(401, &[("www-authenticate", HUB_CHALLENGE)]),
            Some(Vec::new()),
            at(1000),
        )),
        _ => fetch,
    }
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

// ---- Lambda with a bucket: blobs through signed URLs ----

fn lambda_with_bucket() -> Mirror {
    let pairs = [("CACHE", "s3://mirror-store/fn")];
    let config = crate::platforms::lambda::config(|k| {
        pairs
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    assert!(config.store_redirects);
    Mirror::new(config)
}

/// A stored blob is a redirect to the store at once (after the upstream's word); a blob too
/// large to answer is copied into the store, then redirected to; when the copy fails, the client
/// goes to storage as without a store.
#[test]
fn on_lambda_with_a_bucket_blobs_go_through_signed_urls() {
    let m = lambda_with_bucket();
    let digest = format!("sha256:{}", "c".repeat(64));
    let get = request(Method::GET, &format!("/v2/alpine/blobs/{digest}"), &[]);
    let blob = crate::store::Stored {
        length: 5,
        media_type: None,
    };
    let lookup = expect_lookup(start(&m, &get, 1));
    let authorize = expect_fetch(m.resume_lookup(lookup.pending, Some(blob)));
    match m.resume(authorize.pending, upstream_head(200, &[]), None, at(1)) {
        Step::ServeSigned(head, signed, _) => {
            assert_eq!(head.status, 307);
            assert_eq!(signed.key, lookup.key);
        }
        other => panic!("expected a redirect to the store, got {other:?}"),
    }

    let cdn = "https://production.cloudflare.docker.com/x?sig=1";
    let fill = |stored: bool| {
        let lookup = expect_lookup(start(&m, &get, 2));
        let fetch = expect_fetch(m.resume_lookup(lookup.pending, None));
        let storage = expect_fetch(m.resume(
            fetch.pending,
            upstream_head(307, &[("location", cdn)]),
            None,
            at(2),
        ));
        let large = (64 * 1024 * 1024).to_string();
        let fill = match m.resume(
            storage.pending,
            upstream_head(200, &[("content-length", &large)]),
            None,
            at(2),
        ) {
            Step::Fill(fill) => *fill,
            other => panic!("expected a fill, got {other:?}"),
        };
        assert_eq!(fill.write.key, lookup.key);
        m.resume_filled(fill.pending, stored)
    };
    assert!(matches!(fill(true), Step::ServeSigned(..)));
    let (r, _) = expect_answer(fill(false));
    assert_eq!(r.status(), 307);
    assert_eq!(r.headers()[header::LOCATION], cdn);
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

// ---- ALLOW_NETWORKS ----

fn start_from(m: &Mirror, head: &request::Parts, client: &str) -> Step {
    m.start(
        &Incoming {
            head,
            scheme: "http",
            body: b"",
            client: Some(client.parse().unwrap()),
        },
        at(1000),
    )
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
    let fetch = match fetch.request.uri().path() {
        "/v2/" => expect_fetch(m.resume(
            fetch.pending,
            upstream_head(401, &[("www-authenticate", HUB_CHALLENGE)]),
            Some(Vec::new()),
            at(1000),
        )),
        _ => fetch,
    };
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
    let bad = Config::from_lookup(|k| (k == "ALLOW_NETWORKS").then(|| "10.0.0.0/33".to_string()));
    assert!(bad.unwrap_err().contains("ALLOW_NETWORKS"));
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

/// Manifests and blobs are asked for as they are (a compressed answer would not hash to its
/// digest), and an answer that comes compressed all the same is relayed, not stored.
#[test]
fn verified_content_is_asked_for_uncompressed_and_never_stored_compressed() {
    let m = with_store();
    let digest = format!("sha256:{}", "e".repeat(64));
    let head = request(
        Method::GET,
        &format!("/v2/alpine/blobs/{digest}"),
        &[("accept-encoding", "gzip, br")],
    );
    let lookup = expect_lookup(start(&m, &head, 1));
    let fetch = expect_fetch(m.resume_lookup(lookup.pending, None));
    assert_eq!(fetch.request.headers()[header::ACCEPT_ENCODING], "identity");
    let cdn = "https://production.cloudflare.docker.com/x?sig=1";
    let storage = expect_fetch(m.resume(
        fetch.pending,
        upstream_head(307, &[("location", cdn)]),
        None,
        at(1),
    ));
    assert_eq!(
        storage.request.headers()[header::ACCEPT_ENCODING],
        "identity"
    );
    let answered = m.resume(
        storage.pending,
        upstream_head(
            200,
            &[("content-length", "5"), ("content-encoding", "gzip")],
        ),
        None,
        at(1),
    );
    let parts = expect_relay(answered);
    assert_eq!(parts.headers[header::CONTENT_ENCODING], "gzip");
}

/// A registry that serves its blobs itself (no redirect to storage), behind a function URL: a
/// blob larger than an answer holds is copied into the bucket and redirected to; without a
/// bucket it is refused before its body is read, naming the setting that fixes it. Smaller ones
/// are relayed.
#[test]
fn on_lambda_blobs_a_registry_serves_itself_go_through_the_bucket() {
    let digest = format!("sha256:{}", "f".repeat(64));
    let get = request(Method::GET, &format!("/v2/alpine/blobs/{digest}"), &[]);
    let large = (64 * 1024 * 1024).to_string();
    let m = lambda_with_bucket();
    let lookup = expect_lookup(start(&m, &get, 1));
    let fetch = expect_fetch(m.resume_lookup(lookup.pending, None));
    let fill = match m.resume(
        fetch.pending,
        upstream_head(200, &[("content-length", &large)]),
        None,
        at(1),
    ) {
        Step::Fill(fill) => *fill,
        other => panic!("expected a fill, got {other:?}"),
    };
    assert_eq!(fill.write.key, lookup.key);
    assert!(matches!(
        m.resume_filled(fill.pending, true),
        Step::ServeSigned(..)
    ));
    let lookup = expect_lookup(start(&m, &get, 2));
    let fetch = expect_fetch(m.resume_lookup(lookup.pending, None));
    let Step::Fill(fill) = m.resume(
        fetch.pending,
        upstream_head(200, &[("content-length", &large)]),
        None,
        at(2),
    ) else {
        panic!("expected a fill");
    };
    let (r, _) = expect_answer(m.resume_filled(fill.pending, false));
    assert_eq!(r.status(), 503);

    let no_bucket = Mirror::new(crate::platforms::lambda::config(|_| None).unwrap());
    let fetch = expect_fetch(start(&no_bucket, &get, 3));
    let (r, _) = expect_answer(no_bucket.resume(
        fetch.pending,
        upstream_head(200, &[("content-length", &large)]),
        None,
        at(3),
    ));
    assert_eq!(r.status(), 503);
    assert!(String::from_utf8_lossy(r.body()).contains("CACHE=s3://"));
    let fetch = expect_fetch(start(&no_bucket, &get, 4));
    let small = expect_relay(no_bucket.resume(
        fetch.pending,
        upstream_head(200, &[("content-length", "1024")]),
        None,
        at(4),
    ));
    assert_eq!(small.status, 200);
}

/// Behind the CloudFront relay, a stored blob's signed URL goes through the relay's path for
/// the bucket's host, on the host the client reached (`STORAGE_RELAY`).
#[test]
fn signed_urls_of_the_store_go_through_a_relay_that_serves_its_host() {
    let config = crate::platforms::lambda::config(|k| match k {
        "CACHE" => Some("s3://mirror-store/fn".into()),
        "TRUST_FORWARDED_HEADERS" => Some("true".into()),
        "STORAGE_RELAY" => Some("mirror-store.s3.eu-west-1.amazonaws.com=/_storage/bucket".into()),
        _ => None,
    })
    .unwrap();
    let m = Mirror::new(config);
    let digest = format!("sha256:{}", "a".repeat(64));
    let get = request(
        Method::GET,
        &format!("/v2/alpine/blobs/{digest}"),
        &[
            ("x-forwarded-host", "d1.cloudfront.net"),
            ("x-forwarded-proto", "https"),
        ],
    );
    let blob = crate::store::Stored {
        length: 5,
        media_type: None,
    };
    let lookup = expect_lookup(start(&m, &get, 1));
    let authorize = expect_fetch(m.resume_lookup(lookup.pending, Some(blob)));
    let Step::ServeSigned(_, signed, _) =
        m.resume(authorize.pending, upstream_head(200, &[]), None, at(1))
    else {
        panic!("expected a redirect to the store");
    };
    let url = "https://mirror-store.s3.eu-west-1.amazonaws.com/fn/v1/x?X-Amz-Signature=s";
    assert_eq!(
        signed.location(&m, url),
        "https://d1.cloudfront.net/_storage/bucket/fn/v1/x?X-Amz-Signature=s"
    );
    let elsewhere = "https://other.s3.eu-west-1.amazonaws.com/k?X-Amz-Signature=s";
    assert_eq!(signed.location(&m, elsewhere), elsewhere);
}

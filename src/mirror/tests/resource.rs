//! Manifests, blobs and tags: the upstream request, its answer, redirects to storage, retries.

use super::*;

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
    // Every type the client accepts, on one line (a proxy on the way may keep one line a name).
    assert_eq!(
        fetch.request.headers()[header::ACCEPT],
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
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
    let third = expect_fetch(m.fail(
        second.pending,
        FetchError::Connect(Unreachable::Refused),
        at(1000),
    ));
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
    assert_eq!(error_code(&r), "SIZE_INVALID");
    assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */10");
    assert_eq!(storage(403, &[]).status(), 503);

    let fetch = expect_fetch(start(&m, &request(Method::GET, "/v1/search?q=a", &[]), 1));
    let relay = expect_relay(m.resume(fetch.pending, upstream_head(400, &[]), None, at(1)));
    assert_eq!(relay.status, 400);
}

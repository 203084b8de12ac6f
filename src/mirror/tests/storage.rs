//! Blobs the registry redirects to storage: followed, passed on, relayed, or redirected when large.

use super::*;

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

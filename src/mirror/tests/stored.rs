//! The content store's steps: lookups, hits the upstream authorises, misses relayed and stored, Lambda's bucket.

use super::*;

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
    // Served from the store if found: its read may begin with the lookup.
    assert!(lookup.opens_body);
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
    // A Range, or no store at all: no lookup (a HEAD looks: `a_head_by_digest_*` in stale.rs).
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
    // Answered by a redirect to the bucket: no body is read.
    assert!(!lookup.opens_body);
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

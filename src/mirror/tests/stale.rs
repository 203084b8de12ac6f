//! Stale answers from the store when the upstream fails.

use super::*;

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

/// A record the mirror's own account wrote (a server's `UPSTREAM_AUTH_<NAME>`, `warm --user`)
/// names that account, and never answers a client pulling without it: not from a fresh record
/// (`TAG_TTL_SECS`), not stale. A record naming no account (anyone's) still does.
#[test]
fn an_accounts_records_answer_no_client_without_that_account() {
    let m = mirror(&[
        ("CACHE", "file:///c"),
        ("TAG_TTL_SECS", "100"),
        ("TAG_STALE_MAX_SECS", "100"),
    ]);
    let digest = format!("sha256:{}", "e".repeat(64));
    let get_tag = request(Method::GET, "/v2/private/app/manifests/1", &[]);
    let alices = format!("{digest} 1 account=alice").into_bytes();
    let anyones = format!("{digest} 1").into_bytes();
    // Fresh, with TAG_TTL_SECS: alice's record is not used, the upstream is asked.
    for (record, from_record) in [(&alices, false), (&anyones, true)] {
        let recall = expect_recall(start(&m, &get_tag, 2));
        match m.resume_recall(recall.pending, Some(record.clone())) {
            Step::Lookup(_) => assert!(from_record, "alice's record answered an anonymous client"),
            Step::Fetch(_) => assert!(!from_record, "anyone's fresh record was not used"),
            other => panic!("unexpected {other:?}"),
        }
    }
    // Stale, with the upstream down: alice's record gives the failure.
    let after_ttl = 150;
    let recall = expect_recall(start(&m, &get_tag, after_ttl));
    let fetch = expect_fetch(m.resume_recall(recall.pending, None));
    let recall = expect_recall(upstream_down(&m, Step::Fetch(Box::new(fetch))));
    let (r, _) = expect_answer(m.resume_recall(recall.pending, Some(alices.clone())));
    assert_eq!(r.status(), 503);
    // Content alice was shown, with the upstream down: not served either.
    let blob = format!("/v2/private/app/blobs/{digest}");
    let lookup = expect_lookup(start(&m, &request(Method::GET, &blob, &[]), 2));
    let stored = crate::store::Stored {
        length: 5,
        media_type: None,
    };
    let authorize = m.resume_lookup(lookup.pending, Some(stored));
    let recall = expect_recall(upstream_down(&m, authorize));
    let shown = b"1 account=alice".to_vec();
    let (r, _) = expect_answer(m.resume_recall(recall.pending, Some(shown)));
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

/// A HEAD by digest of stored content answers as the GET does: looked up without waiting or
/// claiming (a peek), authorised by the upstream's HEAD, and from the store (head only) when the
/// upstream is down and the content was public; a HEAD that misses is the upstream's, with
/// nothing to store. (Before, a HEAD never looked: 503 with the upstream down while the GET of
/// the same digest was 200; the spec's "checking if content exists" asks 200.)
#[test]
fn a_head_by_digest_answers_as_the_get_does() {
    let m = with_store();
    let digest = format!("sha256:{}", "c".repeat(64));
    let path = format!("/v2/alpine/blobs/{digest}");
    let blob = crate::store::Stored {
        length: 5,
        media_type: None,
    };
    // Made public by a GET the upstream authorised.
    let get = request(Method::GET, &path, &[]);
    let lookup = expect_lookup(start(&m, &get, 1));
    let authorize = expect_fetch(m.resume_lookup(lookup.pending, Some(blob.clone())));
    let public = match m.resume(authorize.pending, upstream_head(200, &[]), None, at(1)) {
        Step::Serve(_, _, summary) => summary.remember[0].key.clone(),
        other => panic!("expected the stored blob, got {other:?}"),
    };
    let head = request(Method::HEAD, &path, &[]);
    let lookup = expect_lookup(start(&m, &head, 5));
    assert!(lookup.peek && !lookup.opens_body);
    let mut step = m.resume_lookup(lookup.pending, Some(blob.clone()));
    while let Step::Fetch(fetch) = step {
        assert_eq!(fetch.request.method(), Method::HEAD);
        step = m.resume(fetch.pending, upstream_head(503, &[]), None, at(5));
    }
    let recall = expect_recall(step);
    assert_eq!(recall.key, public);
    let (r, summary) = expect_answer(m.resume_recall(recall.pending, Some(b"1".to_vec())));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_LENGTH], "5");
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert!(r.body().is_empty());
    assert_eq!(summary.store, Some("stale"));
    // A miss: the upstream's HEAD, relayed, nothing stored.
    let lookup = expect_lookup(start(&m, &head, 6));
    let fetch = expect_fetch(m.resume_lookup(lookup.pending, None));
    assert_eq!(fetch.request.method(), Method::HEAD);
    let answer = upstream_head(200, &[("content-length", "5")]);
    assert!(matches!(
        m.resume(fetch.pending, answer, None, at(6)),
        Step::Relay(..)
    ));
}

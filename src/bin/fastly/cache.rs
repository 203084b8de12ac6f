//! Fastly's core cache as the content store: the core decides keys, what is stored and when it
//! is served (after the upstream's word, as everywhere); this module reads and writes.
//!
//! A lookup is a `Transaction`, so concurrent misses at a POP collapse into one upstream fetch.
//! An object is written through the core's verifier in the guest, and the insert finished only
//! when every byte matched; the client's stream is aborted otherwise. Hashing costs guest CPU
//! (Fastly allows 50 ms a request), so the core stores nothing larger than
//! `edge::MAX_VERIFIED_OBJECT`; larger blobs stream host-side, unstored.

use crate::compute::{content_length, send};
use fastly::cache::core::{CacheKey, Found, Transaction};
use fastly::{Body, Response};
use registry_mirror::mirror::StoreWrite;
use registry_mirror::platforms::edge;
use registry_mirror::store::{Record, Stored};
use std::io::{Read, Write};

/// What a lookup found: the object and what the core needs of it; or, on a miss that this
/// request must fill, the transaction to fill it with.
pub fn look_up(key: &str) -> (Option<(Found, Stored)>, Option<Transaction>) {
    let Ok(tx) = Transaction::lookup(CacheKey::from(key.to_string())).execute() else {
        return (None, None);
    };
    if let Some(found) = tx.found() {
        let stored = edge::cached_headers(&found.user_metadata()).and_then(|h| stored(&h));
        if let Some(stored) = stored {
            return (Some((found, stored)), None);
        }
    }
    match tx.must_insert_or_update() {
        true => (None, Some(tx)),
        false => (None, None),
    }
}

fn stored(headers: &[(String, String)]) -> Option<Stored> {
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    Some(Stored {
        length: header("content-length")?.parse().ok()?,
        media_type: header("content-type").cloned(),
    })
}

/// Relays `body` under `response`'s head, and stores it under the transaction when every byte
/// matches; on a mismatch the insert is dropped unfinished and the client's stream aborted.
pub fn relay_and_store(tx: Transaction, mut response: Response, body: Body, write: StoreWrite) {
    let StoreWrite {
        mut verifier,
        media_type,
        ..
    } = write;
    let length = verifier.length();
    let metadata = edge::cache_metadata(|name| match name {
        "content-length" => Some(length.to_string()),
        "content-type" => media_type.clone(),
        _ => None,
    });
    let insert = tx
        .insert(edge::CACHE_MAX_AGE)
        .known_length(length)
        .user_metadata(metadata.into())
        .execute();
    let Ok(mut stored) = insert else {
        response.set_body(body);
        return send(response);
    };
    if content_length(&response).is_some() {
        response.set_framing_headers_mode(fastly::http::FramingHeadersMode::ManuallyFromHeaders);
    }
    // A client that goes away loses its stream; the object is still read to its end and stored.
    let mut client = Some(response.stream_to_client());
    let mut body = body;
    let mut chunk = vec![0; 64 * 1024];
    let mut held: Vec<u8> = Vec::new();
    loop {
        let n = match body.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            // The upstream broke off: nothing stored, the client's stream aborted (dropped).
            Err(_) => return,
        };
        verifier.update(&chunk[..n]);
        if stored.write_all(&chunk[..n]).is_err() {
            return;
        }
        if client.as_mut().is_some_and(|c| c.write_all(&held).is_err()) {
            client = None;
        }
        held.clear();
        held.extend_from_slice(&chunk[..n]);
    }
    if verifier.finish().is_err() {
        println!(r#"{{"msg":"an upstream blob was not what its digest says"}}"#);
        return;
    }
    if let Err(e) = stored.finish() {
        println!(
            "{}",
            serde_json::json!({"msg": "the cache did not keep an object", "error": e.to_string()})
        );
    }
    if let Some(mut client) = client {
        if client.write_all(&held).is_ok() {
            let _ = client.finish();
        }
    }
}

/// The body of a found object.
pub fn found_body(found: &Found) -> Body {
    found.to_stream().unwrap_or_else(|_| Body::new())
}

/// The small record at `key`.
pub fn read_record(key: &str) -> Option<Vec<u8>> {
    let found = fastly::cache::core::lookup(CacheKey::from(key.to_string()))
        .execute()
        .ok()??;
    let mut bytes = Vec::new();
    found
        .to_stream()
        .ok()?
        .take(registry_mirror::store::MAX_RECORD as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// Keeps the records the core asked for.
pub fn keep(records: &[Record]) {
    for record in records {
        let key = CacheKey::from(record.key.clone());
        let insert = fastly::cache::core::insert(key, edge::CACHE_MAX_AGE)
            .known_length(record.value.len() as u64)
            .execute();
        if let Ok(mut body) = insert {
            if body.write_all(&record.value).is_ok() {
                let _ = body.finish();
            }
        }
    }
}

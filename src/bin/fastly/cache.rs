//! Fastly's cache for immutable content (blobs, manifests by digest), keyed as the core says and
//! kept as the core's `edge` module says: a hit is served from the POP, a miss is stored while the
//! client reads it back.

use crate::compute::{content_length, send};
use fastly::cache::core::Transaction;
use fastly::{Body, Response};
use http::Method;
use registry_mirror::edge;

/// A cached object as a response: the stored head, and the body unless the client asked HEAD.
pub fn cached_response(found: &fastly::cache::core::Found, method: &Method) -> Option<Response> {
    let headers = edge::cached_headers(&found.user_metadata())?;
    let mut response = Response::from_status(200);
    for (name, value) in headers {
        response.append_header(name, value);
    }
    response.set_header("docker-distribution-api-version", "registry/2.0");
    if *method != Method::HEAD {
        response.set_body(found.to_stream().ok()?);
    }
    Some(response)
}

/// Stores the upstream body in the cache while the client reads it back from there.
pub fn serve_and_store(tx: Transaction, mut response: Response) {
    let length = content_length(&response).unwrap_or(0);
    let metadata = edge::cache_metadata(|name| response.get_header_str(name).map(String::from));
    let body = response.take_body();
    match tx
        .insert(edge::CACHE_MAX_AGE)
        .known_length(length)
        .user_metadata(metadata.into())
        .execute_and_stream_back()
    {
        Ok((mut writer, found)) => {
            writer.append(body);
            let _ = writer.finish();
            match found.to_stream() {
                Ok(stream) => response.set_body(stream),
                Err(_) => response.set_body(Body::new()),
            }
            send(response);
        }
        Err(_) => {
            response.set_body(body);
            send(response);
        }
    }
}

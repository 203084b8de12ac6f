//! The steps around the content store (see `store`): a lookup before a blob is fetched, the
//! upstream's word that this client may read a stored blob under this repository, and the choice
//! to store a relayed blob.

use super::answers::*;
use super::*;
use crate::store::{keys, verify::Verifier, StoreSetting};

impl Mirror {
    /// The store key for this request's answer: a blob, asked for whole with `GET`, when the
    /// mirror has a store.
    pub(super) fn store_key(
        &self,
        registry: &str,
        route: &Route,
        head: &request::Parts,
    ) -> Option<String> {
        let Route::Blob { digest, .. } = route else {
            return None;
        };
        let wanted = matches!(self.config.store, StoreSetting::Directory(_))
            && head.method == Method::GET
            && !head.headers.contains_key(header::RANGE);
        wanted.then(|| keys::blob(registry, digest)).flatten()
    }

    /// After a lookup: a stored blob is served once the upstream lets this client read it under
    /// this repository; a missing one is fetched, and stored as it is relayed.
    pub fn resume_lookup(&self, pending: Pending, stored_length: Option<u64>) -> Step {
        let Pending {
            state, mut summary, ..
        } = pending;
        let State::Lookup {
            mut resource,
            get,
            key,
        } = state
        else {
            return answer_error(&Method::GET, unexpected("a lookup's answer"), summary);
        };
        let Some(length) = stored_length else {
            summary.store = Some("miss");
            resource.store_key = Some(key);
            return fetch_step(get, None, None, State::Resource(resource), summary);
        };
        let mut head = Request::new(Vec::new());
        *head.method_mut() = Method::HEAD;
        *head.uri_mut() = get.uri().clone();
        *head.headers_mut() = get.headers().clone();
        let state = State::Authorize {
            resource,
            get,
            key,
            length,
        };
        fetch_step(head, None, None, state, summary)
    }

    /// The registry's answer to the authorising `HEAD`.
    pub(super) fn authorized(
        &self,
        resource: ResourceRequest,
        get: Request<Vec<u8>>,
        key: String,
        length: u64,
        head: response::Parts,
        mut summary: Summary,
    ) -> Step {
        let status = head.status;
        if status.is_success() || status.is_redirection() {
            summary.store = Some("hit");
            let Route::Blob { digest, .. } = &resource.route else {
                return answer_error(&resource.method, unexpected("a stored non-blob"), summary);
            };
            return Step::Serve(stored_blob_head(digest, length), key, summary);
        }
        if status.is_server_error() {
            // Without the upstream's word, nothing stored is served.
            let e = RegistryError::new(
                ErrorCode::Unavailable,
                format!("the upstream registry answered {}", status.as_u16()),
            );
            return answer_error(&resource.method, e, summary);
        }
        // Refused, or unknown under this repository: the upstream's own answer to the GET, as a
        // mirror without a store would give it.
        fetch_step(get, None, None, State::Resource(resource), summary)
    }

    /// A whole blob on its way to the client: relayed, and stored on the way when the store
    /// wants it and its length is known.
    pub(super) fn relay_blob(
        &self,
        resource: &ResourceRequest,
        out: response::Parts,
        summary: Summary,
    ) -> Step {
        let verifier = match (&resource.store_key, &resource.route) {
            (Some(_), Route::Blob { digest, .. }) if out.status == StatusCode::OK => {
                header_str(&out.headers, "content-length")
                    .and_then(|v| v.parse().ok())
                    .and_then(|length| Verifier::new(digest, length))
            }
            _ => None,
        };
        match (verifier, &resource.store_key) {
            (Some(verifier), Some(key)) => Step::RelayAndStore(
                out,
                summary,
                Box::new(StoreWrite {
                    key: key.clone(),
                    verifier,
                }),
            ),
            _ => Step::Relay(out, summary),
        }
    }
}

/// The head of a stored blob.
fn stored_blob_head(digest: &str, length: u64) -> response::Parts {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(value) = HeaderValue::from_str(digest) {
        parts.headers.insert("docker-content-digest", value);
    }
    add_api_version(&mut parts.headers);
    parts
}

/// A step the core never asks for in this state: an adapter's mistake, answered, never a panic.
pub(super) fn unexpected(what: &str) -> RegistryError {
    RegistryError::new(
        ErrorCode::Unavailable,
        format!("the mirror did not expect {what}"),
    )
}

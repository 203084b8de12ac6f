//! The steps around the content store (see `store`): a lookup before content is fetched, the
//! upstream's word that this client may read stored content under this repository, a tag's
//! digest asked with `HEAD`, and the choice to store what is relayed.

use super::answers::*;
use super::*;
use crate::store::{keys, verify::Verifier, StoreSetting, Stored};

impl Mirror {
    pub(super) fn has_store(&self) -> bool {
        matches!(
            self.config.store,
            StoreSetting::Directory(_) | StoreSetting::Bucket { .. } | StoreSetting::Edge
        )
    }

    /// The store key for this request's answer: a blob or a manifest by digest, asked for whole
    /// with `GET`, when the mirror has a store.
    pub(super) fn store_key(
        &self,
        registry: &str,
        route: &Route,
        head: &request::Parts,
    ) -> Option<String> {
        // A HEAD too: stored content exists for it as for a GET, upstream down or not (the
        // spec's "checking if content exists": HEAD of existing content is 200).
        let whole = matches!(head.method, Method::GET | Method::HEAD)
            && !head.headers.contains_key(header::RANGE);
        if !self.has_store() || !whole {
            return None;
        }
        let digest = route.content_digest()?;
        match route {
            Route::Blob { .. } => keys::blob(registry, digest),
            _ => keys::manifest(registry, digest),
        }
    }

    /// Whether a manifest `GET` by tag asks the registry for the tag's digest with `HEAD` first
    /// (which Docker Hub does not count as a pull), so that a stored manifest is served without a
    /// counted `GET`.
    pub(super) fn resolves_tags_by_head(&self, route: &Route, head: &request::Parts) -> bool {
        let by_tag = matches!(
            route,
            Route::Manifest {
                reference: Reference::Tag(_),
                ..
            }
        );
        let asks = head.method == Method::GET || head.method == Method::HEAD;
        self.has_store() && by_tag && asks
    }

    /// `HEAD` the tag, with the client's `Accept` and credentials.
    pub(super) fn ask_tag(
        &self,
        resource: ResourceRequest,
        get: Request<Vec<u8>>,
        summary: Summary,
    ) -> Step {
        let head = same_request(Method::HEAD, &get);
        fetch_step(head, None, State::TagHead { resource, get }, summary)
    }

    /// The tag's digest: look it up in the store (the `HEAD` has just let this client read it
    /// under this repository), and keep it for when the upstream fails; when the answer names
    /// none, ask with the client's `GET`. A client's own `HEAD` gets the upstream's answer.
    pub(super) fn tag_answered(
        &self,
        resource: ResourceRequest,
        get: Request<Vec<u8>>,
        head: response::Parts,
        mut summary: Summary,
    ) -> Step {
        self.note_remaining(&mut summary, &resource, &head.headers);
        let digest = header_str(&head.headers, "docker-content-digest")
            .filter(|d| crate::registry::reference::is_valid_digest(d))
            .map(str::to_string);
        let status = head.status;
        if let Some(fallback) = upstream_failed(&resource.method, &head) {
            return self.stale_tag(resource, get, fallback, summary);
        }
        if let (true, Some(digest)) = (status.is_success(), &digest) {
            self.remember_tag(&resource, digest, &mut summary);
        }
        if resource.method == Method::HEAD {
            let now = resource.now;
            return self.registry_answered(resource, head, now, summary);
        }
        match digest {
            Some(digest) if status.is_success() => {
                self.lookup_by_digest(resource, get, digest, OnLookup::Serve, summary)
            }
            _ => fetch_step(get, None, State::Resource(resource), summary),
        }
    }

    /// A manifest asked for by tag, looked up by its digest: from here on, the manifest by digest
    /// is what is served, stored and fetched.
    pub(super) fn lookup_by_digest(
        &self,
        mut resource: ResourceRequest,
        mut get: Request<Vec<u8>>,
        digest: String,
        then: OnLookup,
        summary: Summary,
    ) -> Step {
        let registry = self.config.registries.get(resource.resolved.registry);
        let Some(key) = keys::manifest(&registry.name, &digest) else {
            return answer_error(&resource.method, unexpected("a bad digest"), summary);
        };
        let path = format!("/v2/{}/manifests/{digest}", resource.resolved.upstream_name);
        if let Ok(uri) = registry.upstream.url(&path).parse() {
            *get.uri_mut() = uri;
        }
        resource.route = match resource.route {
            Route::Manifest { name, .. } => Route::Manifest {
                name,
                reference: Reference::Digest(digest),
            },
            other => other,
        };
        self.lookup_step(key, then, resource, get, summary)
    }

    /// After a lookup: stored content is served once the upstream lets this client read it under
    /// this repository (or, stale, when the upstream failed); missing content is fetched, and
    /// stored as it is relayed.
    pub fn resume_lookup(&self, pending: Pending, stored: Option<Stored>) -> Step {
        let Pending {
            state, mut summary, ..
        } = pending;
        let State::Lookup {
            mut resource,
            get,
            key,
            then,
        } = state
        else {
            return answer_error(&Method::GET, unexpected("a lookup's answer"), summary);
        };
        let is_manifest = matches!(resource.route, Route::Manifest { .. });
        // A manifest must have kept its media type to be served.
        let stored = stored.filter(|s| !is_manifest || s.media_type.is_some());
        match (stored, then) {
            (Some(stored), OnLookup::Serve) => self.serve(&resource, key, stored, "hit", summary),
            (Some(stored), OnLookup::ServeStale(_)) => {
                self.serve(&resource, key, stored, "stale", summary)
            }
            (Some(stored), OnLookup::Authorize) => {
                let head = same_request(Method::HEAD, &get);
                let state = State::Authorize {
                    resource,
                    get,
                    key,
                    stored,
                };
                fetch_step(head, None, state, summary)
            }
            (None, OnLookup::ServeStale(fallback)) => Step::Answer(*fallback, summary),
            (None, _) => {
                summary.store = Some("miss");
                // A HEAD's answer has no bytes to keep: the upstream's, as it is.
                if resource.method == Method::GET {
                    resource.store_key = Some(key);
                }
                fetch_step(get, None, State::Resource(resource), summary)
            }
        }
    }

    /// The registry's answer to the authorising `HEAD`.
    pub(super) fn authorized(
        &self,
        resource: ResourceRequest,
        get: Request<Vec<u8>>,
        key: String,
        stored: Stored,
        head: response::Parts,
        mut summary: Summary,
    ) -> Step {
        let status = head.status;
        if status.is_success() || status.is_redirection() {
            self.remember_public(&resource, &mut summary);
            return self.serve(&resource, key, stored, "hit", summary);
        }
        // Without the upstream's word, only what anyone may pull is served (see `stale`).
        if let Some(fallback) = upstream_failed(&resource.method, &head) {
            return self.stale_content(resource, key, stored, fallback, summary);
        }
        // Refused, or unknown under this repository: the upstream's own answer to the GET, as a
        // mirror without a store would give it.
        fetch_step(get, None, State::Resource(resource), summary)
    }

    /// Stored content, as `label` (`hit` or `stale`) in the log. A `HEAD` gets the head alone.
    pub(super) fn serve(
        &self,
        resource: &ResourceRequest,
        key: String,
        stored: Stored,
        label: &'static str,
        mut summary: Summary,
    ) -> Step {
        let Some(digest) = resource.route.content_digest() else {
            return answer_error(&resource.method, unexpected("stored content"), summary);
        };
        summary.store = Some(label);
        let is_blob = matches!(resource.route, Route::Blob { .. });
        if is_blob && resource.method == Method::GET && self.config.store_redirects {
            let signed = SignedObject {
                key,
                origin: resource.origin.clone(),
            };
            return Step::ServeSigned(redirect_head(), signed, summary);
        }
        let mut head = stored_head(digest, &stored);
        if resource.method == Method::HEAD {
            self.hide_untrusted_head_digest(resource, &mut head.headers);
            return Step::Answer(Response::from_parts(head, Vec::new()), summary);
        }
        Step::Serve(head, key, summary)
    }

    /// Content on its way to the client: relayed, and stored on the way when the store wants it
    /// and its length is known.
    pub(super) fn relay_storable(
        &self,
        resource: &ResourceRequest,
        out: response::Parts,
        mut summary: Summary,
    ) -> Step {
        let digest = resource.route.content_digest();
        let fits = |length: &u64| {
            self.config
                .store_max_object
                .is_none_or(|max| *length <= max)
        };
        // Bytes in a content coding are not the bytes the digest names: relayed, never stored.
        let encoded = header_str(&out.headers, "content-encoding")
            .is_some_and(|coding| !coding.trim().eq_ignore_ascii_case("identity"));
        let verifier = match (&resource.store_key, digest) {
            (Some(_), Some(digest)) if out.status == StatusCode::OK && !encoded => {
                header_str(&out.headers, "content-length")
                    .and_then(|v| v.parse().ok())
                    .filter(fits)
                    .and_then(|length| Verifier::new(digest, length))
            }
            _ => None,
        };
        let media_type = match resource.route {
            Route::Manifest { .. } => header_str(&out.headers, "content-type").map(str::to_string),
            _ => None,
        };
        match (verifier, &resource.store_key) {
            (Some(verifier), Some(key)) => {
                self.remember_public(resource, &mut summary);
                Step::RelayAndStore(
                    out,
                    summary,
                    Box::new(StoreWrite {
                        key: key.clone(),
                        verifier,
                        media_type,
                    }),
                )
            }
            _ => Step::Relay(out, summary),
        }
    }
}

impl Mirror {
    /// A blob too large to stream, for a store clients fetch from by redirect: what to copy into
    /// the store (the blob's length must be known to check it).
    pub(super) fn fill_write(
        &self,
        resource: &ResourceRequest,
        length: Option<u64>,
    ) -> Option<StoreWrite> {
        let Route::Blob { digest, .. } = &resource.route else {
            return None;
        };
        if !self.config.store_redirects {
            return None;
        }
        Some(StoreWrite {
            key: resource.store_key.clone()?,
            verifier: Verifier::new(digest, length?)?,
            media_type: None,
        })
    }

    /// After a fill: the blob is stored, and the client is sent to it; else to the storage URL
    /// it came from, as without a store.
    pub fn resume_filled(&self, pending: Pending, stored: bool) -> Step {
        let Pending {
            state, mut summary, ..
        } = pending;
        let State::Filling { resource, key, url } = state else {
            return answer_error(&Method::GET, unexpected("a fill's end"), summary);
        };
        if !stored {
            return match url {
                Some(url) => self.redirect_client(&url, &resource.origin, summary),
                None => answer_error(
                    &Method::GET,
                    RegistryError::new(
                        ErrorCode::Unavailable,
                        "a blob too large for this runtime's answers could not be copied into the store",
                    ),
                    summary,
                ),
            };
        }
        self.remember_public(&resource, &mut summary);
        let signed = SignedObject {
            key,
            origin: resource.origin,
        };
        Step::ServeSigned(redirect_head(), signed, summary)
    }
}

/// The answer to an upstream failure that is not the client's (a 5xx after its retries, or a
/// 429), when `head` is one: what the client gets unless the store answers instead.
fn upstream_failed(method: &Method, head: &response::Parts) -> Option<Response<Vec<u8>>> {
    let status = head.status;
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Some(too_many(method, &head.headers));
    }
    status.is_server_error().then(|| {
        let e = RegistryError::new(
            ErrorCode::Unavailable,
            format!("the upstream registry answered {}", status.as_u16()),
        );
        for_method(method, e.into_response())
    })
}

/// `request` again with another method.
fn same_request(method: Method, request: &Request<Vec<u8>>) -> Request<Vec<u8>> {
    let mut again = Request::new(Vec::new());
    *again.method_mut() = method;
    *again.uri_mut() = request.uri().clone();
    *again.headers_mut() = request.headers().clone();
    again
}

/// The head of stored content.
fn stored_head(digest: &str, stored: &Stored) -> response::Parts {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(stored.length));
    let media_type = stored
        .media_type
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    parts.headers.insert(header::CONTENT_TYPE, media_type);
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

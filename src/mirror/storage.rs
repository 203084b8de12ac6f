//! Blobs the registry redirects to storage: the redirect followed (at most `MAX_REDIRECTS` hops),
//! passed to the client (`BLOB_REDIRECTS=pass`, through a `STORAGE_RELAY` that serves its host),
//! and storage's answer.

use super::answers::*;
use super::*;

impl Mirror {
    /// A 3xx from the registry or from storage: follow it, or pass it on (`BLOB_REDIRECTS=pass`).
    pub(super) fn redirected(
        &self,
        resource: ResourceRequest,
        base: &str,
        hops: u8,
        head: &response::Parts,
        summary: Summary,
    ) -> Step {
        let method = resource.method.clone();
        let location =
            header_str(&head.headers, "location").and_then(|l| upstream::resolve_location(base, l));
        let Some(location) = location else {
            return answer_error(
                &method,
                RegistryError::new(
                    ErrorCode::Unavailable,
                    "the upstream redirected to no usable location",
                ),
                summary,
            );
        };
        if hops >= MAX_REDIRECTS {
            return answer_error(
                &method,
                RegistryError::new(
                    ErrorCode::Unavailable,
                    "the upstream redirected too many times",
                ),
                summary,
            );
        }
        let is_blob = matches!(resource.route, Route::Blob { .. });
        if is_blob && self.config.blob_redirects == BlobRedirects::Pass {
            return self.redirect_client(&location, &resource.origin, summary);
        }
        let request = build_request(method, &location, resource.storage_headers.clone());
        fetch_step(
            request,
            None,
            State::Storage {
                resource,
                url: location,
                hops: hops + 1,
            },
            summary,
        )
    }

    /// A 307 that sends the client to storage, through a `STORAGE_RELAY` when one serves that host.
    pub(super) fn redirect_client(
        &self,
        location: &str,
        origin: &Origin,
        summary: Summary,
    ) -> Step {
        let location = self.relayed(location, origin);
        let mut head = redirect_head();
        if let Ok(value) = HeaderValue::from_str(&location) {
            head.headers.insert(header::LOCATION, value);
        }
        Step::Answer(Response::from_parts(head, Vec::new()), summary)
    }

    pub(super) fn relayed(&self, location: &str, origin: &Origin) -> String {
        let Ok(uri) = location.parse::<http::Uri>() else {
            return location.to_string();
        };
        let authority = uri.authority().map(|a| a.as_str().to_ascii_lowercase());
        let host = uri.host().map(str::to_ascii_lowercase);
        for relay in &self.config.storage_relays {
            if Some(&relay.host) == authority.as_ref() || Some(&relay.host) == host.as_ref() {
                let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                if relay.prefix.starts_with('/') {
                    return format!("{}://{}{}{path}", origin.scheme, origin.host, relay.prefix);
                }
                return format!("{}{path}", relay.prefix);
            }
        }
        location.to_string()
    }

    /// Step 4, for storage's answer.
    pub(super) fn storage_answered(
        &self,
        resource: ResourceRequest,
        url: &str,
        hops: u8,
        head: response::Parts,
        summary: Summary,
    ) -> Step {
        let status = head.status;
        if status.is_success() {
            // Too large to stream in this runtime: the client fetches it from storage itself
            // (the signed URL needs no credentials), and this response's body is dropped.
            if let (BlobRedirects::Large(limit), Route::Blob { .. }, &Method::GET) = (
                self.config.blob_redirects,
                &resource.route,
                &resource.method,
            ) {
                let length =
                    header_str(&head.headers, "content-length").and_then(|v| v.parse::<u64>().ok());
                if length.is_none_or(|l| l > limit) {
                    // With a store that clients fetch from by redirect: copied there first.
                    if let Some(write) = self.fill_write(&resource, length) {
                        let key = write.key.clone();
                        let url = Some(url.to_string());
                        let state = State::Filling { resource, key, url };
                        return fill_step(write, state, summary);
                    }
                    return self.redirect_client(url, &resource.origin, summary);
                }
            }
            let mut out = relay_head(status, &head.headers, STORAGE_TO_CLIENT);
            let digest = resource.route.content_digest();
            if let Some(value) = digest.and_then(|d| HeaderValue::from_str(d).ok()) {
                out.headers.insert("docker-content-digest", value);
            }
            return self.relay_storable(&resource, out, summary);
        }
        if status.is_redirection() {
            return self.redirected(resource, url, hops, &head, summary);
        }
        // A Range past the end is the client's mistake, as storage says; its other refusals
        // (an expired signature, a missing object) are not.
        if status == StatusCode::RANGE_NOT_SATISFIABLE {
            let mut response = RegistryError::new(
                ErrorCode::RangeInvalid,
                "the requested range is not in the blob",
            )
            .into_response();
            if let Some(range) = head.headers.get(header::CONTENT_RANGE) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_RANGE, range.clone());
            }
            return Step::Answer(for_method(&resource.method, response), summary);
        }
        answer_error(
            &resource.method,
            RegistryError::new(
                ErrorCode::Unavailable,
                format!("the upstream blob storage answered {}", status.as_u16()),
            ),
            summary,
        )
    }
}

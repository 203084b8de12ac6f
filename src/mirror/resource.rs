//! Manifests, blobs and tags: admitting the request, asking the registry, and what its answer
//! means (relay it, follow its redirect to storage, or hand the redirect to the client).

use super::answers::*;
use super::*;

impl Mirror {
    pub(super) fn resource(
        &self,
        incoming: &Incoming,
        route: Route,
        origin: Origin,
        now: u64,
        mut summary: Summary,
    ) -> Step {
        let head = incoming.head;
        let name = route.repository().unwrap_or_default().to_string();
        let ns = query_param(head.uri.query(), "ns");
        let resolved = match self
            .config
            .registries
            .select(&origin.host, ns.as_deref(), &name)
        {
            Ok(resolved) => resolved,
            Err(unknown) => return answer_error(&head.method, name_unknown(unknown), summary),
        };
        let registry = self.config.registries.get(resolved.registry);
        summary.upstream = Some(registry.name.clone());
        let scope = format!("repository:{}:pull", resolved.scope_name);

        // Step 2: admit. With WHITE_LIST, only a valid mirror token for this registry opens it.
        let mut anonymous = false;
        let mut account = None;
        let listed = self
            .verified_token(&head.headers, now)
            .filter(|t| t.registry == registry.name);
        let upstream_token = if let Some(t) = listed {
            summary.user = Some(t.user);
            t.upstream
        } else if self.closed_to(incoming) {
            return self.challenge_response(
                &head.method,
                &origin,
                Some(&scope),
                "authentication required",
                summary,
            );
        } else {
            let token = bearer(&head.headers).filter(|t| t != "anonymous");
            match token
                .as_deref()
                .and_then(|t| self.anonymous_token(t, &registry.name, now))
            {
                Some(signed) => {
                    anonymous = true;
                    account = signed.account;
                    signed.upstream
                }
                None => {
                    let handout = token
                        .as_deref()
                        .and_then(|t| self.anonymous_tokens.find(t, now));
                    anonymous = token.is_none() || handout.is_some();
                    account = handout.and_then(|h| h.account);
                    token
                }
            }
        };

        // Step 3: the upstream request.
        let path = match &route {
            Route::Manifest { reference, .. } => {
                format!(
                    "/v2/{}/manifests/{}",
                    resolved.upstream_name,
                    reference.as_str()
                )
            }
            Route::Blob { digest, .. } => format!("/v2/{}/blobs/{digest}", resolved.upstream_name),
            Route::Tags { .. } => {
                let mut path = format!("/v2/{}/tags/list", resolved.upstream_name);
                let query = tags_query(head.uri.query());
                if !query.is_empty() {
                    path.push('?');
                    path.push_str(&query);
                }
                path
            }
            _ => unreachable!("only resource routes come here"),
        };
        let mut headers = HeaderMap::new();
        upstream::copy_request_headers(&head.headers, &mut headers, CLIENT_TO_REGISTRY);
        if let Some(token) = upstream_token {
            if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}")) {
                value.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, value);
            }
        }
        let mut storage_headers = HeaderMap::new();
        upstream::copy_request_headers(&head.headers, &mut storage_headers, CLIENT_TO_STORAGE);
        // Manifests and blobs are checked against their digests (and stored): their bytes as
        // they are, never compressed by an upstream or a proxy before it.
        if matches!(route, Route::Manifest { .. } | Route::Blob { .. }) {
            let identity = HeaderValue::from_static("identity");
            headers.insert(header::ACCEPT_ENCODING, identity.clone());
            storage_headers.insert(header::ACCEPT_ENCODING, identity);
        }
        let url = registry.upstream.url(&path);
        let store_key = self.store_key(&registry.name, &route, head);
        let tag_by_head = self.resolves_tags_by_head(&route, head);
        let resource = ResourceRequest {
            route,
            resolved,
            method: head.method.clone(),
            storage_headers,
            origin,
            ns,
            store_key: None,
            anonymous,
            account,
            now,
        };
        let request = build_request(head.method.clone(), &url, headers);
        // Content the store may hold: look first; a tag: ask its digest with HEAD first (the
        // steps are in `stored`), or its record first with `TAG_TTL_SECS` (in `stale`).
        if let Some(key) = store_key {
            return self.lookup_step(key, OnLookup::Authorize, resource, request, summary);
        }
        if tag_by_head {
            return self.tag_from_record_or_head(resource, request, summary);
        }
        fetch_step(request, None, State::Resource(resource), summary)
    }

    /// Step 4, for the registry's answer.
    pub(super) fn registry_answered(
        &self,
        resource: ResourceRequest,
        head: response::Parts,
        now: u64,
        mut summary: Summary,
    ) -> Step {
        let status = head.status;
        let method = resource.method.clone();
        self.note_rate_limit(&mut summary, &resource, &head);
        if let Some(length) = self.too_large_to_answer(&resource, &head) {
            return self.store_or_refuse(resource, length, summary);
        }
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            let mut out = relay_head(status, &head.headers, REGISTRY_TO_CLIENT);
            if method == Method::HEAD {
                self.hide_untrusted_head_digest(&resource, &mut out.headers);
            }
            if let (Route::Tags { name }, Some(link)) =
                (&resource.route, header_str(&head.headers, "link"))
            {
                if let Some(link) = upstream::rewrite_link(
                    link,
                    &resource.resolved.upstream_name,
                    name,
                    resource.ns.as_deref(),
                ) {
                    if let Ok(value) = HeaderValue::from_str(&link) {
                        out.headers.insert(header::LINK, value);
                    }
                }
            }
            return self.relay_storable(&resource, out, summary);
        }
        if status.is_redirection() {
            let url = self
                .config
                .registries
                .get(resource.resolved.registry)
                .upstream
                .url("/");
            return self.redirected(resource, &url, 0, &head, summary);
        }
        match status.as_u16() {
            401 => {
                self.remember_challenge(resource.resolved.registry, &head.headers, now);
                let scope = format!("repository:{}:pull", resource.resolved.scope_name);
                self.challenge_response(
                    &method,
                    &resource.origin,
                    Some(&scope),
                    "authentication required",
                    summary,
                )
            }
            429 => answer_too_many(&method, &head.headers, summary),
            400..=499 => Step::Relay(
                relay_head(status, &head.headers, REGISTRY_TO_CLIENT),
                summary,
            ),
            code => answer_error(
                &method,
                RegistryError::new(
                    ErrorCode::Unavailable,
                    format!("the upstream registry answered {code}"),
                ),
                summary,
            ),
        }
    }

    /// Whether the registry's answer is a blob it serves itself (no redirect to storage) larger
    /// than this runtime's answers hold (`Config::largest_answer`, a Lambda function URL); with
    /// its length, when the registry said it.
    fn too_large_to_answer(
        &self,
        resource: &ResourceRequest,
        head: &response::Parts,
    ) -> Option<Option<u64>> {
        let limit = self.config.largest_answer?;
        let is_blob = matches!(resource.route, Route::Blob { .. });
        if !(is_blob && resource.method == Method::GET && head.status == StatusCode::OK) {
            return None;
        }
        let length = header_str(&head.headers, "content-length").and_then(|v| v.parse().ok());
        length.is_none_or(|l: u64| l > limit).then_some(length)
    }

    /// Such a blob: copied into the store and redirected to, or, without one, refused before
    /// its body is read, with the setting that fixes it.
    fn store_or_refuse(
        &self,
        resource: ResourceRequest,
        length: Option<u64>,
        summary: Summary,
    ) -> Step {
        if let Some(write) = self.fill_write(&resource, length) {
            let key = write.key.clone();
            let state = State::Filling {
                resource,
                key,
                url: None,
            };
            return fill_step(write, state, summary);
        }
        let limit = self.config.largest_answer.unwrap_or_default();
        let error = RegistryError::new(
            ErrorCode::Unavailable,
            format!(
                "the upstream registry serves this blob itself, and it is larger than this \
                 runtime's answers hold ({limit} bytes); set CACHE=s3://bucket/prefix (the \
                 template's StoreBucket) so that such blobs are copied there and redirected to"
            ),
        );
        answer_error(&Method::GET, error, summary)
    }
}

/// The `n` and `last` parameters of a tags list, re-encoded (nothing else goes upstream).
pub(super) fn tags_query(query: Option<&str>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key == "n" || key == "last" {
            out.append_pair(&key, &value);
        }
    }
    out.finish()
}

impl Mirror {
    /// Without a length it can trust (behind a Lambda function URL), a client must not take a
    /// manifest `HEAD` for the manifest's descriptor: with no digest, dockerd and containerd ask
    /// again with `GET`.
    pub(super) fn hide_untrusted_head_digest(
        &self,
        resource: &ResourceRequest,
        headers: &mut HeaderMap,
    ) {
        let manifest = matches!(resource.route, Route::Manifest { .. });
        if manifest && !self.config.head_lengths_kept {
            headers.remove("docker-content-digest");
        }
    }

    /// A mirror token the mirror signed for an anonymous client of this registry (no user).
    fn anonymous_token(&self, token: &str, registry: &str, now: u64) -> Option<MirrorToken> {
        let secret = self.config.token_secret.as_ref()?;
        MirrorToken::verify(token, secret, now)
            .ok()
            .filter(|t| t.user.is_empty() && t.registry == registry)
    }

    /// What Docker Hub's accounting sees of this answer: a manifest `GET` counts as a pull, and
    /// the `ratelimit-remaining` it sends says how many are left (for the log, and for choosing
    /// among the mirror's own accounts).
    pub(super) fn note_rate_limit(
        &self,
        summary: &mut Summary,
        resource: &ResourceRequest,
        head: &response::Parts,
    ) {
        // A refused GET (no token yet, a wrong one, an unknown tag) pulls nothing.
        if matches!(resource.route, Route::Manifest { .. })
            && resource.method == Method::GET
            && head.status.is_success()
        {
            summary.counted_get = true;
        }
        self.note_remaining(summary, resource, &head.headers);
    }

    /// The upstream's `ratelimit-remaining`, when it sends one.
    pub(super) fn note_remaining(
        &self,
        summary: &mut Summary,
        resource: &ResourceRequest,
        headers: &HeaderMap,
    ) {
        if let Some(remaining) = header_str(headers, "ratelimit-remaining") {
            summary.ratelimit_remaining = Some(remaining.chars().take(64).collect());
            if let Some(account) = resource.account {
                let registry = resource.resolved.registry;
                self.accounts_remaining.note(registry, account, remaining);
            }
        }
    }
}

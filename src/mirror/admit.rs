//! Step 2 for every route, and the routes answered at once: where the client reached the mirror
//! (the realm of its challenge), who the client is (its address, its mirror token), whether
//! `WHITE_LIST` lets it in; `/v2/` and `/v1/search`.

use super::*;

impl Mirror {
    // ---- Where clients reach the mirror ----

    pub(super) fn origin(&self, incoming: &Incoming) -> Result<Origin, RegistryError> {
        if let Some(public) = &self.config.public_url {
            return Ok(Origin {
                scheme: public.scheme.clone(),
                host: public.host.clone(),
            });
        }
        let headers = &incoming.head.headers;
        let forwarded = |name: &str| {
            self.config
                .trust_forwarded_headers
                .then(|| header_str(headers, name))
                .flatten()
                .map(|v| v.split(',').next().unwrap_or("").trim().to_string())
        };
        let scheme = match forwarded("x-forwarded-proto") {
            Some(proto) if proto == "http" || proto == "https" => proto,
            Some(_) => {
                return Err(RegistryError::new(
                    ErrorCode::BadRequest,
                    "bad X-Forwarded-Proto",
                ))
            }
            None => incoming.scheme.to_string(),
        };
        let host = forwarded("x-forwarded-host")
            .or_else(|| header_str(headers, "host").map(str::to_string))
            .or_else(|| incoming.head.uri.authority().map(|a| a.to_string()))
            .ok_or_else(|| {
                RegistryError::new(ErrorCode::BadRequest, "the request names no Host")
            })?;
        if !is_valid_host(&host) {
            return Err(RegistryError::new(ErrorCode::BadRequest, "bad Host header"));
        }
        Ok(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
        })
    }

    // ---- Step 2: who the client is ----

    /// The client's address: the socket's, or, behind a trusted proxy
    /// (`TRUST_FORWARDED_HEADERS`), the last one `X-Forwarded-For` names (the one that proxy
    /// added; the ones before it are the client's to write); see `client_address`.
    pub(crate) fn client_address(&self, incoming: &Incoming) -> Option<std::net::IpAddr> {
        crate::auth::client_address::client_address(
            &incoming.head.headers,
            incoming.client,
            self.config.trust_forwarded_headers,
        )
    }

    /// Whether `WHITE_LIST` holds for this client: it is set, and the client is not on one of
    /// the `ALLOW_NETWORKS`.
    pub(super) fn closed_to(&self, incoming: &Incoming) -> bool {
        if self.config.whitelist.is_none() {
            return false;
        }
        let address = self.client_address(incoming);
        !address.is_some_and(|a| self.config.allow_networks.iter().any(|n| n.contains(&a)))
    }

    /// A mirror token from the request, checked, when `WHITE_LIST` is on: signed by this mirror,
    /// unexpired, and naming a user the whitelist still lists (removing a user revokes their
    /// tokens at once).
    pub(super) fn verified_token(&self, headers: &HeaderMap, now: u64) -> Option<MirrorToken> {
        let secret = self.config.token_secret.as_ref()?;
        let whitelist = self.config.whitelist.as_ref()?;
        MirrorToken::verify(&bearer(headers)?, secret, now)
            .ok()
            .filter(|token| whitelist.allows(&token.user))
    }

    pub(super) fn challenge_response(
        &self,
        method: &Method,
        origin: &Origin,
        scope: Option<&str>,
        message: &str,
        summary: Summary,
    ) -> Step {
        let mut response = RegistryError::new(ErrorCode::Unauthorized, message).into_response();
        let value = auth::challenge_header(&origin.realm(), &origin.host, scope);
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        Step::Answer(for_method(method, response), summary)
    }

    // ---- /v2/ ----

    pub(super) fn ping(
        &self,
        incoming: &Incoming,
        origin: &Origin,
        now: u64,
        mut summary: Summary,
    ) -> Step {
        let headers = &incoming.head.headers;
        let listed = self.verified_token(headers, now);
        let admitted = if let Some(t) = listed {
            summary.user = Some(t.user);
            Some(())
        } else if self.closed_to(incoming) {
            None
        } else {
            // Without a whitelist there is nothing to protect: any bearer token is the client's
            // own upstream token, checked by the upstream when it is used.
            bearer(headers).map(|_| ())
        };
        match admitted {
            Some(()) => answer_json(
                &incoming.head.method,
                StatusCode::OK,
                b"{}".to_vec(),
                summary,
            ),
            None => self.challenge_response(
                &incoming.head.method,
                origin,
                None,
                "authentication required",
                summary,
            ),
        }
    }

    // ---- /token ----

    // ---- /v1/search ----

    /// Docker Hub's search, with only `q`, `n` and `page` passed on; with `WHITE_LIST`, for
    /// holders of a mirror token only, as every other request.
    pub(super) fn search(
        &self,
        incoming: &Incoming,
        origin: &Origin,
        now: u64,
        summary: Summary,
    ) -> Step {
        let method = &incoming.head.method;
        if self.closed_to(incoming) && self.verified_token(&incoming.head.headers, now).is_none() {
            let message = "this mirror requires docker login";
            return self.challenge_response(method, origin, None, message, summary);
        }
        let query = incoming.head.uri.query().unwrap_or("");
        let mut out = form_urlencoded::Serializer::new(String::new());
        let mut has_q = false;
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "q" if value.len() <= MAX_SEARCH_QUERY => {
                    has_q = true;
                    out.append_pair("q", &value);
                }
                "n" | "page" if value.len() <= 4 && value.bytes().all(|b| b.is_ascii_digit()) => {
                    out.append_pair(&key, &value);
                }
                _ => {}
            }
        }
        if !has_q {
            let e = RegistryError::new(
                ErrorCode::BadRequest,
                "search needs q (at most 256 characters)",
            );
            return answer_error(&incoming.head.method, e, summary);
        }
        let url = self
            .config
            .search_upstream
            .url(&format!("/v1/search?{}", out.finish()));
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        fetch_step(
            build_request(Method::GET, &url, headers),
            None,
            State::Search,
            summary,
        )
    }
}

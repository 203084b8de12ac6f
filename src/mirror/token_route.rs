//! The `/token` route: the mirror's own token service in front of each upstream's.
//!
//! It learns the upstream's realm from the upstream's challenge (once, then cached), fetches the
//! upstream token with the client's credentials, and answers with it, or, with `WHITE_LIST`, with
//! a signed mirror token wrapping it.

use super::answers::*;
use super::*;

impl Mirror {
    pub(super) fn token(
        &self,
        incoming: &Incoming,
        origin: Origin,
        now: u64,
        mut summary: Summary,
    ) -> Step {
        let method = &incoming.head.method;
        let params: Vec<(String, String)> = if *method == Method::POST {
            if incoming.body.len() > MAX_REQUEST_BODY {
                let e = RegistryError::new(ErrorCode::BadRequest, "request body too large")
                    .with_status(StatusCode::PAYLOAD_TOO_LARGE);
                return answer_error(method, e, summary);
            }
            form_urlencoded::parse(incoming.body).into_owned().collect()
        } else {
            form_urlencoded::parse(incoming.head.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect()
        };
        let param = |key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };

        // Credentials: Basic on GET; the OAuth password grant on POST (containerd).
        let credentials = if *method == Method::POST {
            match param("grant_type") {
                Some("password") => match (param("username"), param("password")) {
                    (Some(user), Some(password)) => Some(BasicCredentials {
                        user: user.to_string(),
                        password: password.to_string(),
                    }),
                    _ => {
                        let e = RegistryError::new(
                            ErrorCode::BadRequest,
                            "username and password are required",
                        );
                        return answer_error(method, e, summary);
                    }
                },
                // The mirror never hands out refresh tokens, so it has none to take back.
                _ => {
                    let e = RegistryError::new(
                        ErrorCode::Unsupported,
                        "only grant_type=password is supported",
                    )
                    .with_status(StatusCode::BAD_REQUEST);
                    return answer_error(method, e, summary);
                }
            }
        } else {
            match incoming.head.headers.get(header::AUTHORIZATION) {
                None => None,
                Some(value) => match auth::parse_authorization(value.as_bytes()) {
                    Ok(Authorization::Basic(credentials)) => Some(credentials),
                    // A bearer token on a token request is no credential to log in with.
                    Ok(Authorization::Bearer(_)) => None,
                    Err(_) => {
                        return self.challenge_response(
                            method,
                            &origin,
                            None,
                            "malformed credentials",
                            summary,
                        )
                    }
                },
            }
        };
        summary.user = credentials.as_ref().map(|c| c.user.clone());
        // Too many wrong passwords from this address: the upstream is not asked again for now.
        if let Some(c) = &credentials {
            if let Some(wait) = self
                .logins
                .retry_after(self.client_address(incoming), &c.user, now)
            {
                return answer_too_many_logins(method, wait, summary);
            }
        }

        // Scopes: `scope` may repeat, and each may hold several, space-separated.
        let names: Vec<&str> = match params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' '))
            .filter_map(pull_scope_name)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(names) => names,
            Err(e) => return answer_error(method, e, summary),
        };
        let (registry, upstream_names) = match self
            .config
            .registries
            .select_for_token(&origin.host, &names)
        {
            Ok(selected) => selected,
            Err(SelectError::Unknown(unknown)) => {
                return answer_error(method, name_unknown(unknown), summary)
            }
            Err(SelectError::Several) => {
                let e =
                    RegistryError::new(ErrorCode::BadRequest, "scopes for more than one registry");
                return answer_error(method, e, summary);
            }
        };
        let mut scopes: Vec<String> = Vec::new();
        for name in upstream_names {
            let scope = format!("repository:{name}:pull");
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        summary.upstream = Some(self.config.registries.get(registry).name.clone());
        // The log names the first repository asked for, in the upstream's terms.
        summary.repository = scopes
            .first()
            .and_then(|s| s.strip_prefix("repository:"))
            .and_then(|s| s.strip_suffix(":pull"))
            .map(str::to_string);

        // WHITE_LIST: only listed users, and only with credentials the upstream accepts (checked
        // when the upstream answers the token request below).
        if let Some(whitelist) = &self.config.whitelist {
            match &credentials {
                Some(c) if whitelist.allows(&c.user) => {}
                // From one of the ALLOW_NETWORKS: an anonymous pull, as on an open mirror.
                None if !self.closed_to(incoming) => {}
                Some(_) => {
                    return self.challenge_response(
                        method,
                        &origin,
                        None,
                        "this user may not use this mirror",
                        summary,
                    )
                }
                None => {
                    return self.challenge_response(
                        method,
                        &origin,
                        None,
                        "this mirror requires docker login",
                        summary,
                    )
                }
            }
        }

        let user = credentials.as_ref().map(|c| c.user.clone());
        let mut request = TokenRequest {
            registry,
            scopes,
            credentials,
            user: user.clone(),
            client: self.client_address(incoming),
            origin,
            then: None,
            account: None,
        };
        // The whitelist names Docker Hub users: their identity is Docker Hub's to check, whatever
        // the registry asked for, and their Docker Hub password goes nowhere else.
        if self.config.whitelist.is_some() && request.credentials.is_some() {
            let Some(hub) = self.config.registries.by_name("docker.io") else {
                let e = RegistryError::new(
                    ErrorCode::Unavailable,
                    "WHITE_LIST needs docker.io among REGISTRIES to check who logs in",
                );
                return answer_error(method, e, summary);
            };
            if registry != hub {
                let identity = TokenRequest {
                    registry: hub,
                    scopes: Vec::new(),
                    credentials: request.credentials.take(),
                    user,
                    client: self.client_address(incoming),
                    origin: request.origin.clone(),
                    then: None,
                    account: None,
                };
                request = TokenRequest {
                    then: Some(Box::new(request)),
                    ..identity
                };
            }
        }
        match self.cached_challenge(registry, now) {
            Some(challenge) => self.fetch_upstream_token(request, &challenge, summary),
            None => self.fetch_challenge(request, summary),
        }
    }

    pub(super) fn fetch_upstream_token(
        &self,
        mut request: TokenRequest,
        challenge: &Challenge,
        summary: Summary,
    ) -> Step {
        // A client without credentials: the mirror's own account, when it has some.
        let accounts = &self.config.registries.get(request.registry).accounts;
        if request.credentials.is_none() {
            request.account = self
                .accounts_remaining
                .pick(request.registry, accounts.len());
        }
        let credentials = request
            .credentials
            .as_ref()
            .or_else(|| accounts.get(request.account?));
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(service) = &challenge.service {
            query.append_pair("service", service);
        }
        for scope in &request.scopes {
            query.append_pair("scope", scope);
        }
        if let Some(c) = credentials {
            query.append_pair("account", &c.user);
        }
        query.append_pair("client_id", "registry-mirror");
        let separator = if challenge.realm.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{}{}", challenge.realm, separator, query.finish());
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(c) = credentials {
            if let Ok(value) = HeaderValue::from_str(&c.header_value()) {
                let mut value = value;
                value.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, value);
            }
        }
        fetch_step(
            build_request(Method::GET, &url, headers),
            Some(MAX_UPSTREAM_BODY),
            State::UpstreamToken(request),
            summary,
        )
    }

    pub(super) fn upstream_token_answered(
        &self,
        request: TokenRequest,
        head: response::Parts,
        body: Vec<u8>,
        now: u64,
        summary: Summary,
    ) -> Step {
        // A login, right or wrong, is counted for the throttle.
        if let Some(c) = &request.credentials {
            match head.status.as_u16() {
                200..=299 => self.logins.succeeded(request.client, &c.user),
                401 | 403 => self.logins.failed(request.client, &c.user, now),
                _ => {}
            }
        }
        match head.status.as_u16() {
            // Docker Hub knows the user: now the token of the registry asked for, anonymously.
            200..=299 if request.then.is_some() => {
                let next = *request.then.expect("checked");
                match self.cached_challenge(next.registry, now) {
                    Some(challenge) => self.fetch_upstream_token(next, &challenge, summary),
                    None => self.fetch_challenge(next, summary),
                }
            }
            200..=299 => match UpstreamToken::parse(&body) {
                Some(t) => self.answer_token(Some(t.token), t.expires_in, &request, now, summary),
                None => answer_error(
                    &Method::GET,
                    RegistryError::new(
                        ErrorCode::Unavailable,
                        "the upstream token service gave no token",
                    ),
                    summary,
                ),
            },
            401 | 403 if request.account.is_some() => {
                let registry = self.config.registries.get(request.registry);
                let e = RegistryError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the upstream refused the mirror's own account for {} (UPSTREAM_AUTH_*)",
                        registry.name
                    ),
                );
                answer_error(&Method::GET, e, summary)
            }
            401 | 403 => self.challenge_response(
                &Method::GET,
                &request.origin,
                None,
                "the upstream refused these credentials",
                summary,
            ),
            429 => {
                let fallback = too_many(&Method::GET, &head.headers);
                self.offline_token(request, fallback, now, summary)
            }
            status => {
                let error = RegistryError::new(
                    ErrorCode::Unavailable,
                    format!("the upstream token service answered {status}"),
                );
                self.offline_token(request, error.into_response(), now, summary)
            }
        }
    }

    pub(super) fn answer_token(
        &self,
        upstream: Option<String>,
        expires_in: u64,
        request: &TokenRequest,
        now: u64,
        summary: Summary,
    ) -> Step {
        // Anonymous: nobody logged in (a listed user's token for another registry is fetched
        // without their credentials, but is theirs).
        let anonymous = request.user.is_none();
        let token = match (&self.config.whitelist, &self.config.token_secret) {
            (Some(_), Some(secret)) if !anonymous => MirrorToken {
                user: request
                    .user
                    .as_ref()
                    .map(|u| u.to_ascii_lowercase())
                    .unwrap_or_default(),
                registry: self.config.registries.get(request.registry).name.clone(),
                expires_at: now + expires_in,
                upstream,
                account: None,
            }
            .sign(secret),
            // Without a whitelist, an anonymous client gets a signed mirror token naming nobody
            // when there is a TOKEN_SECRET, so that any instance knows it for anonymous (see
            // `anonymous_tokens`); others get the upstream's token itself.
            (_, Some(secret)) if anonymous => MirrorToken {
                user: String::new(),
                registry: self.config.registries.get(request.registry).name.clone(),
                expires_at: now + expires_in,
                upstream,
                account: request.account,
            }
            .sign(secret),
            _ => {
                if let (Some(token), None) = (&upstream, &request.credentials) {
                    let handout = crate::auth::anonymous_tokens::Handout {
                        expires_at: now + expires_in,
                        account: request.account,
                    };
                    self.anonymous_tokens.remember(token, handout, now);
                }
                upstream.unwrap_or_else(|| "anonymous".to_string())
            }
        };
        answer_json(
            &Method::GET,
            StatusCode::OK,
            token::token_answer(&token, expires_in, now),
            summary,
        )
    }
}

/// The repository name of a `repository:<name>:<actions>` scope that asks to pull (a read-only
/// mirror asks the upstream for nothing more); `None` for other scopes, which are dropped.
pub(super) fn pull_scope_name(scope: &str) -> Option<Result<&str, RegistryError>> {
    let rest = scope.strip_prefix("repository:")?;
    let (name, actions) = rest.rsplit_once(':')?;
    if !actions.split(',').any(|a| a == "pull" || a == "*") {
        return None;
    }
    if !is_valid_name(name) {
        return Some(Err(RegistryError::new(
            ErrorCode::NameInvalid,
            "invalid repository name in scope",
        )
        .with_detail(name.chars().take(300).collect::<String>())));
    }
    Some(Ok(name))
}

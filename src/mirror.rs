//! The proxy's decisions, one small step each, with no I/O.
//!
//! A runtime adapter hands [`Mirror::start`] the client's request; the mirror answers with a
//! [`Step`]: an answer of its own, an upstream request to make ([`Fetch`]), or an instruction to
//! relay the last upstream response's body under a rewritten head. The adapter makes the fetch and
//! calls [`Mirror::resume`] (or [`Mirror::fail`]) with what came back. The steps of a request are:
//!
//! 1. route: what the client asks for ([`crate::route`]), and for which registry
//!    ([`crate::registry::Registries::select`]);
//! 2. admit (in `resource`): who the client is, and whether `WHITE_LIST` lets them in;
//! 3. upstream request (in `resource`): what to ask the upstream, with which credentials;
//! 4. upstream response (`registry_answered`, `redirected`, `storage_answered`): relay it, follow
//!    its redirect to storage, or turn it into the mirror's own challenge or error. A gateway error
//!    or a broken connection is retried first (`retry`).
//!
//! The `/token` route has its own short dance (`token`, `challenge_learnt`,
//! `upstream_token_answered`): learn the upstream's realm from its challenge (once, then cached),
//! fetch the upstream token with the client's credentials, answer with it (or with a signed mirror
//! token wrapping it, when `WHITE_LIST` is on).

use crate::auth::{self, Authorization, BasicCredentials, Challenge};
use crate::config::{BlobRedirects, Config};
use crate::errors::{ErrorCode, RegistryError};
use crate::reference::{is_valid_name, Reference};
use crate::registry::{Resolved, SelectError};
use crate::route::{self, Route, MAX_URL_LEN};
use crate::token::{self, MirrorToken, UpstreamToken};
use crate::upstream::{
    self, CLIENT_TO_REGISTRY, CLIENT_TO_STORAGE, REGISTRY_TO_CLIENT, STORAGE_TO_CLIENT,
};
use http::{
    header, request, response, HeaderMap, HeaderValue, Method, Request, Response, StatusCode,
};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The most request body the mirror reads (a `POST /token` form); adapters read at most one byte
/// more, so that the mirror can tell a larger body.
pub const MAX_REQUEST_BODY: usize = 16 * 1024;
/// The most header bytes (names and values) the mirror reads.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most of an upstream body the mirror reads into memory (challenges and token answers).
pub const MAX_UPSTREAM_BODY: usize = 256 * 1024;
/// The longest search query passed to Docker Hub.
const MAX_SEARCH_QUERY: usize = 256;
/// Search-answer headers relayed to the client.
const SEARCH_TO_CLIENT: &[&str] = &["content-type", "content-length"];
/// How many storage redirects in a row the mirror follows.
const MAX_REDIRECTS: u8 = 5;
/// How long a learnt upstream challenge (realm and service) is trusted.
const CHALLENGE_TTL_SECS: u64 = 3600;
/// What the mirror tells a client to wait after an upstream 429 that did not say.
const DEFAULT_RETRY_AFTER: &str = "60";

/// The client's request as the adapter received it.
pub struct Incoming<'a> {
    pub head: &'a request::Parts,
    /// `http` or `https`: how the client reached the adapter.
    pub scheme: &'a str,
    /// At most [`MAX_REQUEST_BODY`] + 1 bytes of the request body.
    pub body: &'a [u8],
}

/// What the adapter does next.
#[derive(Debug)]
pub enum Step {
    /// Send this response; the mirror made it.
    Answer(Response<Vec<u8>>, Summary),
    /// Make this upstream request, then call [`Mirror::resume`] or [`Mirror::fail`].
    Fetch(Box<Fetch>),
    /// Send this head with the body of the last fetched response, streamed as it is.
    Relay(response::Parts, Summary),
}

/// An upstream request for the adapter to make. Redirects are never to be followed by the adapter:
/// the mirror decides which ones to follow.
#[derive(Debug)]
pub struct Fetch {
    /// An absolute URL, and only the headers the mirror chose.
    pub request: Request<Vec<u8>>,
    /// `Some(n)`: read the body (at most `n` bytes) and pass it to `resume`. `None`: do not read
    /// it; it may be relayed.
    pub read_body: Option<usize>,
    /// Set when the answer is immutable content (a blob, or a manifest by digest, whole): a key,
    /// independent of the repository, under which an adapter with a shared cache may serve it
    /// instead of fetching, and store a successful `GET` answer. Only requests the mirror has
    /// admitted get one, so the whitelist holds for cache hits too.
    pub cache_key: Option<String>,
    /// Wait this long before sending: a retry's backoff (zero on a first attempt).
    pub delay: Duration,
    pub pending: Pending,
}

/// Why an upstream request did not give a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    Timeout,
    Connect,
    /// The body was longer than `read_body` allowed.
    BodyTooLarge,
    /// The runtime has no way to reach that host (on Fastly: no backend for it).
    NoBackend,
    Other,
}

/// The fields of the request's log line that only the mirror knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub route: &'static str,
    pub repository: Option<String>,
    /// The upstream registry's name.
    pub upstream: Option<String>,
    pub user: Option<String>,
}

/// What the mirror was doing when it asked for a fetch. Opaque to adapters.
#[derive(Debug)]
pub struct Pending {
    state: State,
    summary: Summary,
    /// Which attempt the fetch was (1 for the first).
    attempt: u32,
    /// What to send again if it is retried.
    resend: Resend,
}

/// A copy of a fetch, for its retries (all the mirror's upstream requests are GET or HEAD, so
/// sending one again is safe).
#[derive(Debug, Clone)]
struct Resend {
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    read_body: Option<usize>,
    cache_key: Option<String>,
}

impl Pending {
    /// The log fields of a request the adapter finished without the core (a cache hit).
    pub fn into_summary(self) -> Summary {
        self.summary
    }
}

#[derive(Debug)]
enum State {
    /// Fetched the upstream's `/v2/` to learn its challenge, for a token request.
    LearnChallenge(TokenRequest),
    /// Fetched the upstream token.
    UpstreamToken(TokenRequest),
    /// Fetched a manifest, blob or tag list from the registry.
    Resource(ResourceRequest),
    /// Fetched Docker Hub's search.
    Search,
    /// Followed a redirect to storage (`hops` so far).
    Storage {
        resource: ResourceRequest,
        url: String,
        hops: u8,
    },
}

/// A `/token` request, decided and waiting for the upstream.
#[derive(Debug)]
struct TokenRequest {
    registry: usize,
    /// In the upstream's names: `repository:library/alpine:pull`.
    scopes: Vec<String>,
    credentials: Option<BasicCredentials>,
    origin: Origin,
}

/// A manifest, blob or tags request, decided and waiting for the upstream.
#[derive(Debug)]
struct ResourceRequest {
    route: Route,
    resolved: Resolved,
    method: Method,
    /// The client headers that may go on to storage, if the registry redirects there.
    storage_headers: HeaderMap,
    origin: Origin,
}

/// How clients reach the mirror: the realm and service of its challenge come from here.
#[derive(Debug, Clone)]
struct Origin {
    scheme: String,
    host: String,
}

impl Origin {
    fn realm(&self) -> String {
        format!("{}://{}/token", self.scheme, self.host)
    }
}

#[derive(Debug, Clone)]
struct CachedChallenge {
    challenge: Challenge,
    learnt_at: u64,
}

/// The proxy core: the configuration, and the upstream challenges it has learnt.
pub struct Mirror {
    config: Config,
    challenges: Mutex<Vec<Option<CachedChallenge>>>,
}

impl Mirror {
    pub fn new(config: Config) -> Mirror {
        let count = config.registries.iter().count();
        Mirror {
            config,
            challenges: Mutex::new(vec![None; count]),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The first step of a request.
    pub fn start(&self, incoming: &Incoming, now: SystemTime) -> Step {
        let now = unix_seconds(now);
        let head = incoming.head;
        let mut summary = Summary {
            route: "invalid",
            ..Summary::default()
        };
        if let Err(e) = check_bounds(incoming) {
            return answer_error(&head.method, e, summary);
        }
        let route = match route::route(&head.method, head.uri.path()) {
            Ok(route) => route,
            Err(e) => return answer_error(&head.method, e, summary),
        };
        summary.route = route.label();
        summary.repository = route.repository().map(str::to_string);
        let origin = match self.origin(incoming) {
            Ok(origin) => origin,
            Err(e) => return answer_error(&head.method, e, summary),
        };
        match route {
            Route::Health => answer_json(
                &head.method,
                StatusCode::OK,
                br#"{"status":"ok"}"#.to_vec(),
                summary,
            ),
            Route::Ping => self.ping(incoming, &origin, now, summary),
            Route::Page => {
                let query_lang = query_param(head.uri.query(), "lang");
                let language = crate::page::Language::choose(
                    query_lang.as_deref(),
                    header_str(&head.headers, "accept-language"),
                );
                let html =
                    crate::page::render(&self.config, &origin.scheme, &origin.host, language);
                answer_html(&head.method, html, summary)
            }
            Route::Search => self.search(incoming, summary),
            Route::Token => self.token(incoming, origin, now, summary),
            Route::Manifest { .. } | Route::Blob { .. } | Route::Tags { .. } => {
                self.resource(incoming, route, origin, now, summary)
            }
        }
    }

    /// The next step, given the head (and, when asked for, the body) of the upstream's response.
    pub fn resume(
        &self,
        pending: Pending,
        head: response::Parts,
        body: Option<Vec<u8>>,
        now: SystemTime,
    ) -> Step {
        let now = unix_seconds(now);
        // A gateway error may pass: send the same request again, a bounded number of times.
        let pending = if matches!(head.status.as_u16(), 502..=504) {
            match retry(pending) {
                Ok(step) => return step,
                Err(pending) => *pending,
            }
        } else {
            pending
        };
        let Pending { state, summary, .. } = pending;
        match state {
            State::LearnChallenge(request) => self.challenge_learnt(request, head, now, summary),
            State::UpstreamToken(request) => {
                self.upstream_token_answered(request, head, body.unwrap_or_default(), now, summary)
            }
            State::Resource(resource) => self.registry_answered(resource, head, now, summary),
            State::Storage {
                resource,
                url,
                hops,
            } => self.storage_answered(resource, &url, hops, head, summary),
            State::Search if head.status.is_success() => Step::Relay(
                relay_head(head.status, &head.headers, SEARCH_TO_CLIENT),
                summary,
            ),
            State::Search => answer_error(
                &Method::GET,
                RegistryError::new(
                    ErrorCode::Unavailable,
                    format!("Docker Hub's search answered {}", head.status.as_u16()),
                ),
                summary,
            ),
        }
    }

    /// The next step when an upstream request failed without a response: the registry's
    /// `UNAVAILABLE`, answered at once.
    pub fn fail(&self, pending: Pending, error: FetchError) -> Step {
        // A refused or broken connection may be passing; a timeout has used the time already.
        let pending = if matches!(error, FetchError::Connect | FetchError::Other) {
            match retry(pending) {
                Ok(step) => return step,
                Err(pending) => *pending,
            }
        } else {
            pending
        };
        let Pending { state, summary, .. } = pending;
        let what = match &state {
            State::LearnChallenge(_) | State::Resource(_) => "the upstream registry",
            State::Search => "Docker Hub's search",
            State::UpstreamToken(_) => "the upstream token service",
            State::Storage { .. } => "the upstream blob storage",
        };
        let why = match error {
            FetchError::Timeout => "did not answer in time",
            FetchError::Connect => "could not be reached",
            FetchError::BodyTooLarge => "sent an answer too large to read",
            FetchError::NoBackend => "has no backend configured in this deployment",
            FetchError::Other => "failed",
        };
        let method = match &state {
            State::Resource(r) | State::Storage { resource: r, .. } => r.method.clone(),
            _ => Method::GET,
        };
        answer_error(
            &method,
            RegistryError::new(ErrorCode::Unavailable, format!("{what} {why}")),
            summary,
        )
    }

    // ---- Where clients reach the mirror ----

    fn origin(&self, incoming: &Incoming) -> Result<Origin, RegistryError> {
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

    /// A mirror token from the request, checked, when `WHITE_LIST` is on.
    fn verified_token(&self, headers: &HeaderMap, now: u64) -> Option<MirrorToken> {
        let secret = self.config.token_secret.as_ref()?;
        MirrorToken::verify(&bearer(headers)?, secret, now).ok()
    }

    fn challenge_response(
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

    fn ping(&self, incoming: &Incoming, origin: &Origin, now: u64, mut summary: Summary) -> Step {
        let headers = &incoming.head.headers;
        let admitted = if self.config.whitelist.is_some() {
            self.verified_token(headers, now).map(|t| {
                summary.user = Some(t.user);
            })
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

    fn token(&self, incoming: &Incoming, origin: Origin, now: u64, mut summary: Summary) -> Step {
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

        let request = TokenRequest {
            registry,
            scopes,
            credentials,
            origin,
        };
        match self.cached_challenge(registry, now) {
            Some(challenge) => self.fetch_upstream_token(request, &challenge, summary),
            None => self.fetch_challenge(request, summary),
        }
    }

    fn cached_challenge(&self, registry: usize, now: u64) -> Option<Challenge> {
        let cache = self.challenges.lock().unwrap_or_else(|e| e.into_inner());
        cache[registry]
            .as_ref()
            .filter(|c| now.saturating_sub(c.learnt_at) < CHALLENGE_TTL_SECS)
            .map(|c| c.challenge.clone())
    }

    fn remember_challenge(
        &self,
        registry: usize,
        headers: &HeaderMap,
        now: u64,
    ) -> Option<Challenge> {
        let challenge = headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(auth::parse_challenge)?;
        // Only an absolute http(s) realm is a place the mirror will go.
        let realm: http::Uri = challenge.realm.parse().ok()?;
        if !matches!(realm.scheme_str(), Some("http" | "https")) || realm.authority().is_none() {
            return None;
        }
        let challenge = Challenge {
            scope: None,
            ..challenge
        };
        let mut cache = self.challenges.lock().unwrap_or_else(|e| e.into_inner());
        cache[registry] = Some(CachedChallenge {
            challenge: challenge.clone(),
            learnt_at: now,
        });
        Some(challenge)
    }

    fn fetch_challenge(&self, request: TokenRequest, summary: Summary) -> Step {
        let url = self
            .config
            .registries
            .get(request.registry)
            .upstream
            .url("/v2/");
        fetch_step(
            build_request(Method::GET, &url, HeaderMap::new()),
            Some(MAX_UPSTREAM_BODY),
            None,
            State::LearnChallenge(request),
            summary,
        )
    }

    fn challenge_learnt(
        &self,
        request: TokenRequest,
        head: response::Parts,
        now: u64,
        summary: Summary,
    ) -> Step {
        if head.status.is_success() {
            // An upstream without a token service: anonymous pulls need no token; the whitelist
            // has nobody to check passwords with.
            if self.config.whitelist.is_some() {
                return answer_error(
                    &Method::GET,
                    RegistryError::new(
                        ErrorCode::Unavailable,
                        "the upstream has no token service to check credentials with",
                    ),
                    summary,
                );
            }
            return self.answer_token(None, 300, &request, now, summary);
        }
        match self.remember_challenge(request.registry, &head.headers, now) {
            Some(challenge) => self.fetch_upstream_token(request, &challenge, summary),
            None => answer_error(
                &Method::GET,
                RegistryError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the upstream registry answered {} without a token challenge",
                        head.status.as_u16()
                    ),
                ),
                summary,
            ),
        }
    }

    fn fetch_upstream_token(
        &self,
        request: TokenRequest,
        challenge: &Challenge,
        summary: Summary,
    ) -> Step {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(service) = &challenge.service {
            query.append_pair("service", service);
        }
        for scope in &request.scopes {
            query.append_pair("scope", scope);
        }
        if let Some(c) = &request.credentials {
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
        if let Some(c) = &request.credentials {
            if let Ok(value) = HeaderValue::from_str(&c.header_value()) {
                let mut value = value;
                value.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, value);
            }
        }
        fetch_step(
            build_request(Method::GET, &url, headers),
            Some(MAX_UPSTREAM_BODY),
            None,
            State::UpstreamToken(request),
            summary,
        )
    }

    fn upstream_token_answered(
        &self,
        request: TokenRequest,
        head: response::Parts,
        body: Vec<u8>,
        now: u64,
        summary: Summary,
    ) -> Step {
        match head.status.as_u16() {
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
            401 | 403 => self.challenge_response(
                &Method::GET,
                &request.origin,
                None,
                "the upstream refused these credentials",
                summary,
            ),
            429 => answer_too_many(&Method::GET, &head.headers, summary),
            status => answer_error(
                &Method::GET,
                RegistryError::new(
                    ErrorCode::Unavailable,
                    format!("the upstream token service answered {status}"),
                ),
                summary,
            ),
        }
    }

    fn answer_token(
        &self,
        upstream: Option<String>,
        expires_in: u64,
        request: &TokenRequest,
        now: u64,
        summary: Summary,
    ) -> Step {
        let token = match (&self.config.whitelist, &self.config.token_secret) {
            (Some(_), Some(secret)) => MirrorToken {
                user: request
                    .credentials
                    .as_ref()
                    .map(|c| c.user.to_ascii_lowercase())
                    .unwrap_or_default(),
                registry: self.config.registries.get(request.registry).name.clone(),
                expires_at: now + expires_in,
                upstream,
            }
            .sign(secret),
            // Without a whitelist the client gets the upstream's token itself.
            _ => upstream.unwrap_or_else(|| "anonymous".to_string()),
        };
        answer_json(
            &Method::GET,
            StatusCode::OK,
            token::token_answer(&token, expires_in, now),
            summary,
        )
    }

    // ---- /v1/search ----

    /// Docker Hub's search, with only `q`, `n` and `page` passed on.
    fn search(&self, incoming: &Incoming, summary: Summary) -> Step {
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
            None,
            State::Search,
            summary,
        )
    }

    // ---- Manifests, blobs and tags ----

    fn resource(
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
        let upstream_token = if self.config.whitelist.is_some() {
            match self.verified_token(&head.headers, now) {
                Some(t) if t.registry == registry.name => {
                    summary.user = Some(t.user);
                    t.upstream
                }
                _ => {
                    return self.challenge_response(
                        &head.method,
                        &origin,
                        Some(&scope),
                        "authentication required",
                        summary,
                    )
                }
            }
        } else {
            bearer(&head.headers).filter(|t| t != "anonymous")
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
        upstream::copy_headers(&head.headers, &mut headers, CLIENT_TO_REGISTRY);
        if let Some(token) = upstream_token {
            if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}")) {
                value.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, value);
            }
        }
        let mut storage_headers = HeaderMap::new();
        upstream::copy_headers(&head.headers, &mut storage_headers, CLIENT_TO_STORAGE);
        let url = registry.upstream.url(&path);
        let cache_key = cache_key(&registry.name, &route, &head.headers);
        let state = State::Resource(ResourceRequest {
            route,
            resolved,
            method: head.method.clone(),
            storage_headers,
            origin,
        });
        fetch_step(
            build_request(head.method.clone(), &url, headers),
            None,
            cache_key,
            state,
            summary,
        )
    }

    /// Step 4, for the registry's answer.
    fn registry_answered(
        &self,
        resource: ResourceRequest,
        head: response::Parts,
        now: u64,
        summary: Summary,
    ) -> Step {
        let status = head.status;
        let method = resource.method.clone();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            let mut out = relay_head(status, &head.headers, REGISTRY_TO_CLIENT);
            if let (Route::Tags { name }, Some(link)) =
                (&resource.route, header_str(&head.headers, "link"))
            {
                if let Some(link) =
                    upstream::rewrite_link(link, &resource.resolved.upstream_name, name)
                {
                    if let Ok(value) = HeaderValue::from_str(&link) {
                        out.headers.insert(header::LINK, value);
                    }
                }
            }
            return Step::Relay(out, summary);
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

    /// A 3xx from the registry or from storage: follow it, or pass it on (`BLOB_REDIRECTS=pass`).
    fn redirected(
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
        let registry = &self.config.registries.get(resource.resolved.registry).name;
        let cache_key = cache_key(registry, &resource.route, &resource.storage_headers);
        fetch_step(
            request,
            None,
            cache_key,
            State::Storage {
                resource,
                url: location,
                hops: hops + 1,
            },
            summary,
        )
    }

    /// A 307 that sends the client to storage, through a `STORAGE_RELAY` when one serves that host.
    fn redirect_client(&self, location: &str, origin: &Origin, summary: Summary) -> Step {
        let location = self.relayed(location, origin);
        let mut response = Response::new(Vec::new());
        *response.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        add_api_version(response.headers_mut());
        Step::Answer(response, summary)
    }

    fn relayed(&self, location: &str, origin: &Origin) -> String {
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
    fn storage_answered(
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
                    return self.redirect_client(url, &resource.origin, summary);
                }
            }
            let mut out = relay_head(status, &head.headers, STORAGE_TO_CLIENT);
            let digest = match &resource.route {
                Route::Blob { digest, .. } => Some(digest.as_str()),
                Route::Manifest {
                    reference: Reference::Digest(digest),
                    ..
                } => Some(digest.as_str()),
                _ => None,
            };
            if let Some(value) = digest.and_then(|d| HeaderValue::from_str(d).ok()) {
                out.headers.insert("docker-content-digest", value);
            }
            return Step::Relay(out, summary);
        }
        if status.is_redirection() {
            return self.redirected(resource, url, hops, &head, summary);
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

// ---- Fetches and their retries ----

/// How many times the mirror sends one upstream request, at most.
const MAX_ATTEMPTS: u32 = 3;

/// The pause before attempt `n + 1`: 100 ms, then 400 ms.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * 4u64.pow(attempt.saturating_sub(1)))
}

/// A first attempt at an upstream request.
fn fetch_step(
    request: Request<Vec<u8>>,
    read_body: Option<usize>,
    cache_key: Option<String>,
    state: State,
    summary: Summary,
) -> Step {
    let resend = Resend {
        method: request.method().clone(),
        uri: request.uri().clone(),
        headers: request.headers().clone(),
        read_body,
        cache_key: cache_key.clone(),
    };
    Step::Fetch(Box::new(Fetch {
        request,
        read_body,
        cache_key,
        delay: Duration::ZERO,
        pending: Pending {
            state,
            summary,
            attempt: 1,
            resend,
        },
    }))
}

/// The same request again after a pause, while attempts remain; the pending state back if not.
fn retry(pending: Pending) -> Result<Step, Box<Pending>> {
    if pending.attempt >= MAX_ATTEMPTS {
        return Err(Box::new(pending));
    }
    let resend = pending.resend.clone();
    let mut request = Request::new(Vec::new());
    *request.method_mut() = resend.method;
    *request.uri_mut() = resend.uri;
    *request.headers_mut() = resend.headers;
    Ok(Step::Fetch(Box::new(Fetch {
        request,
        read_body: resend.read_body,
        cache_key: resend.cache_key,
        delay: backoff(pending.attempt),
        pending: Pending {
            attempt: pending.attempt + 1,
            ..pending
        },
    })))
}

// ---- Small helpers ----

/// The repository name of a `repository:<name>:<actions>` scope that asks to pull (a read-only
/// mirror asks the upstream for nothing more); `None` for other scopes, which are dropped.
fn pull_scope_name(scope: &str) -> Option<Result<&str, RegistryError>> {
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

/// `NAME_UNKNOWN` for a registry no one configured, naming those that are.
fn name_unknown(unknown: crate::registry::UnknownRegistry) -> RegistryError {
    RegistryError::new(ErrorCode::NameUnknown, unknown.to_string())
}

fn unix_seconds(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    match auth::parse_authorization(headers.get(header::AUTHORIZATION)?.as_bytes()) {
        Ok(Authorization::Bearer(token)) => Some(token),
        _ => None,
    }
}

/// A host name or address with an optional port; nothing that could bend a URL.
fn is_valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
        })
}

fn check_bounds(incoming: &Incoming) -> Result<(), RegistryError> {
    let uri = &incoming.head.uri;
    let url_len = uri.path_and_query().map(|p| p.as_str().len()).unwrap_or(0);
    if url_len > MAX_URL_LEN {
        return Err(
            RegistryError::new(ErrorCode::BadRequest, "request URL too long")
                .with_status(StatusCode::URI_TOO_LONG),
        );
    }
    let header_bytes: usize = incoming
        .head
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err(
            RegistryError::new(ErrorCode::BadRequest, "request headers too large")
                .with_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        );
    }
    Ok(())
}

/// The shared-cache key of immutable content: blobs, and manifests by digest, asked for whole.
/// The registry is part of the key (a digest means the same bytes everywhere, but a hit must never
/// cross registries); the repository is not, so a layer shared by many images is stored once.
fn cache_key(registry: &str, route: &Route, client_headers: &HeaderMap) -> Option<String> {
    if client_headers.contains_key(header::RANGE) {
        return None;
    }
    let (kind, digest) = match route {
        Route::Blob { digest, .. } => ("blob", digest),
        Route::Manifest {
            reference: Reference::Digest(digest),
            ..
        } => ("manifest", digest),
        _ => return None,
    };
    Some(format!("registry-mirror/v1/{registry}/{kind}/{digest}"))
}

/// The `n` and `last` parameters of a tags list, re-encoded (nothing else goes upstream).
fn tags_query(query: Option<&str>) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key == "n" || key == "last" {
            out.append_pair(&key, &value);
        }
    }
    out.finish()
}

fn build_request(method: Method, url: &str, headers: HeaderMap) -> Request<Vec<u8>> {
    let mut request = Request::new(Vec::new());
    *request.method_mut() = method;
    // Every URL here was built from a parsed upstream URL or checked by `resolve_location`.
    *request.uri_mut() = url.parse().unwrap_or_default();
    *request.headers_mut() = headers;
    request
}

fn relay_head(status: StatusCode, from: &HeaderMap, names: &[&'static str]) -> response::Parts {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = status;
    upstream::copy_headers(from, &mut parts.headers, names);
    add_api_version(&mut parts.headers);
    parts
}

fn add_api_version(headers: &mut HeaderMap) {
    headers.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
}

/// A HEAD answer keeps the headers (and `Content-Length`) of the GET answer, without its body.
fn for_method(method: &Method, mut response: Response<Vec<u8>>) -> Response<Vec<u8>> {
    if *method == Method::HEAD {
        response.body_mut().clear();
    }
    response
}

fn answer_error(method: &Method, error: RegistryError, summary: Summary) -> Step {
    Step::Answer(for_method(method, error.into_response()), summary)
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn answer_html(method: &Method, html: String, summary: Summary) -> Step {
    let mut response = Response::new(html.into_bytes());
    let length = response.body().len();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Step::Answer(for_method(method, response), summary)
}

fn answer_json(method: &Method, status: StatusCode, body: Vec<u8>, summary: Summary) -> Step {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let length = response.body().len();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    add_api_version(headers);
    Step::Answer(for_method(method, response), summary)
}

/// An upstream 429 as the registry's `TOOMANYREQUESTS`, with `Retry-After` and the rate-limit
/// headers, whether the upstream sent JSON or a bare 429.
fn answer_too_many(method: &Method, upstream: &HeaderMap, summary: Summary) -> Step {
    let mut response = RegistryError::new(
        ErrorCode::TooManyRequests,
        "the upstream registry's rate limit was reached",
    )
    .into_response();
    let headers = response.headers_mut();
    upstream::copy_headers(
        upstream,
        headers,
        &[
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
            "docker-ratelimit-source",
        ],
    );
    let retry_after = upstream
        .get(header::RETRY_AFTER)
        .cloned()
        .unwrap_or(HeaderValue::from_static(DEFAULT_RETRY_AFTER));
    headers.insert(header::RETRY_AFTER, retry_after);
    Step::Answer(for_method(method, response), summary)
}

#[cfg(test)]
#[path = "mirror_tests.rs"]
mod tests;

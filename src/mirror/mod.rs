//! The proxy's decisions, one small step each, with no I/O.
//!
//! A runtime adapter hands [`Mirror::start`] the client's request; the mirror answers with a
//! [`Step`]: an answer of its own, an upstream request to make ([`Fetch`]), or an instruction to
//! relay the last upstream response's body under a rewritten head. The adapter makes the fetch and
//! calls [`Mirror::resume`] (or [`Mirror::fail`]) with what came back. The steps of a request are:
//!
//! 1. route: what the client asks for ([`crate::registry::route`]), and for which registry
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

use crate::auth::token::{self, MirrorToken, UpstreamToken};
use crate::auth::{self, Authorization, BasicCredentials, Challenge};
use crate::config::{BlobRedirects, Config};
use crate::registry::errors::{ErrorCode, RegistryError};
use crate::registry::reference::{is_valid_name, Reference};
use crate::registry::route::{self, Route, MAX_URL_LEN};
use crate::registry::upstream::{
    self, CLIENT_TO_REGISTRY, CLIENT_TO_STORAGE, REGISTRY_TO_CLIENT, STORAGE_TO_CLIENT,
};
use crate::registry::{Resolved, SelectError};
use http::{
    header, request, response, HeaderMap, HeaderValue, Method, Request, Response, StatusCode,
};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod answers;
mod resource;
mod stale;
mod stored;
mod token_route;

use answers::*;
use stored::unexpected;

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
    /// The client's address, where the adapter knows it (failed logins are counted by it).
    pub client: Option<std::net::IpAddr>,
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
    /// Look the key up in the store, then call [`Mirror::resume_lookup`] with the stored object's
    /// length, or `None`.
    Lookup(Box<Lookup>),
    /// Read the small record at this key (at most [`crate::store::MAX_RECORD`] bytes), then call
    /// [`Mirror::resume_recall`] with it, or `None`.
    Recall(Box<Lookup>),
    /// Send this head with the stored object at this key as its body (the one the lookup found).
    Serve(response::Parts, String, Summary),
    /// Answer this head (a `307`) with a `Location` the adapter adds: a signed URL of the stored
    /// object, which the client fetches from the store itself (through a `STORAGE_RELAY` that
    /// serves the store's host: [`SignedObject::location`]).
    ServeSigned(response::Parts, SignedObject, Summary),
    /// Copy the body of the last fetched response into the store under [`StoreWrite::key`],
    /// checked by [`StoreWrite::verifier`], sending the client nothing yet; then call
    /// [`Mirror::resume_filled`] with whether the object is now stored.
    Fill(Box<Fill>),
    /// As `Relay`, and store the body as it passes under [`StoreWrite::key`]: committed only when
    /// [`StoreWrite::verifier`] finishes `Ok`; otherwise dropped, and the client's response cut
    /// short before its last bytes.
    RelayAndStore(response::Parts, Summary, Box<StoreWrite>),
}

/// A store lookup for the adapter to make.
#[derive(Debug)]
pub struct Lookup {
    pub key: String,
    pub pending: Pending,
}

/// A body to copy into the store, then [`Mirror::resume_filled`].
#[derive(Debug)]
pub struct Fill {
    pub write: StoreWrite,
    pub pending: Pending,
}

/// Where a relayed body goes in the store, what checks it, and the media type kept with it.
#[derive(Debug)]
pub struct StoreWrite {
    pub key: String,
    pub verifier: crate::store::verify::Verifier,
    pub media_type: Option<String>,
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
    /// The store's part: `hit`, `miss`, or `None` where the store had no say.
    pub store: Option<&'static str>,
    /// Whether the registry answered a manifest `GET`: what Docker Hub counts as a pull.
    pub counted_get: bool,
    /// The registry's last `ratelimit-remaining` (Docker Hub's pulls left in its window).
    pub ratelimit_remaining: Option<String>,
    /// Records to keep in the store once the answer is sent (see [`crate::store::Record`]).
    pub remember: Vec<crate::store::Record>,
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
    /// Looked content up in the store, before fetching it (`get`); `then` says what follows.
    Lookup {
        resource: ResourceRequest,
        get: Request<Vec<u8>>,
        key: String,
        then: OnLookup,
    },
    /// Asked the registry for a tag's digest with `HEAD` (free in Docker Hub's accounting);
    /// `get` is the client's `GET` by tag, for when the answer names no digest.
    TagHead {
        resource: ResourceRequest,
        get: Request<Vec<u8>>,
    },
    /// `TAG_TTL_SECS`: read the tag's record before asking the upstream.
    TagRecall {
        resource: ResourceRequest,
        get: Request<Vec<u8>>,
    },
    /// The upstream failed on a tag: read its record, for a stale answer; else `fallback`.
    StaleTag {
        resource: ResourceRequest,
        get: Request<Vec<u8>>,
        fallback: Box<Response<Vec<u8>>>,
    },
    /// The upstream failed to authorise stored content: read its public record, for a stale
    /// answer; else `fallback`.
    StaleContent {
        resource: ResourceRequest,
        key: String,
        stored: crate::store::Stored,
        fallback: Box<Response<Vec<u8>>>,
    },
    /// Asked the registry, with the client's credentials, whether this client may read the stored
    /// blob under this repository (a `HEAD`); on a refusal, `get` asks for the upstream's own answer.
    Authorize {
        resource: ResourceRequest,
        get: Request<Vec<u8>>,
        key: String,
        stored: crate::store::Stored,
    },
    /// Followed a redirect to storage (`hops` so far).
    Storage {
        resource: ResourceRequest,
        url: String,
        hops: u8,
    },
    /// Copied a blob too large to stream into the store; `url` is the storage URL it came from
    /// (none when the registry served it itself).
    Filling {
        resource: ResourceRequest,
        key: String,
        url: Option<String>,
    },
}

/// A `/token` request, decided and waiting for the upstream.
/// What follows a store lookup.
#[derive(Debug)]
enum OnLookup {
    /// Found: serve once the upstream authorises this client (a `HEAD`). Missing: fetch.
    Authorize,
    /// Found: serve (the upstream has just let this client read it). Missing: fetch.
    Serve,
    /// Found: serve, marked stale. Missing: answer the upstream's failure.
    ServeStale(Box<Response<Vec<u8>>>),
}

#[derive(Debug)]
struct TokenRequest {
    registry: usize,
    /// In the upstream's names: `repository:library/alpine:pull`.
    scopes: Vec<String>,
    /// What goes to this upstream's token service.
    credentials: Option<BasicCredentials>,
    /// Who asks: the user the mirror's token names.
    user: Option<String>,
    /// From where: failed logins are counted per address and user.
    client: Option<std::net::IpAddr>,
    origin: Origin,
    /// With `WHITE_LIST`, a token for another registry: this request checks the user's identity
    /// with Docker Hub, then the other registry's token is fetched without the user's credentials.
    then: Option<Box<TokenRequest>>,
    /// The mirror's own account the upstream token is fetched with, for a client without
    /// credentials (see `accounts`).
    account: Option<usize>,
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
    /// The `ns` the client chose the registry with, kept in the links it is given.
    ns: Option<String>,
    /// Where a whole `GET` answer goes in the store (a blob missing from it).
    store_key: Option<String>,
    /// The client sent no credentials of its own: what it is shown is anyone's to pull.
    anonymous: bool,
    /// The mirror's own account behind the client's token (see `accounts`).
    account: Option<usize>,
    /// When the request came (unix seconds): the time records are made and judged by.
    now: u64,
}

/// How clients reach the mirror: the realm and service of its challenge come from here.
#[derive(Debug, Clone)]
struct Origin {
    scheme: String,
    host: String,
}

/// A stored object clients are sent to by a signed URL: its key, and where the client reached
/// the mirror (a `STORAGE_RELAY` on that host may serve the store's host too).
#[derive(Debug)]
pub struct SignedObject {
    pub key: String,
    origin: Origin,
}

impl SignedObject {
    /// The `Location` for the store's signed `url` of the object: the URL itself, or its path
    /// and query under the `STORAGE_RELAY` that serves the store's host.
    pub fn location(&self, mirror: &Mirror, url: &str) -> String {
        mirror.relayed(url, &self.origin)
    }
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
    logins: crate::auth::throttle::LoginThrottle,
    anonymous_tokens: crate::auth::anonymous_tokens::AnonymousTokens,
    accounts_remaining: crate::auth::accounts::Remaining,
}

impl Mirror {
    pub fn new(config: Config) -> Mirror {
        let count = config.registries.iter().count();
        Mirror {
            config,
            challenges: Mutex::new(vec![None; count]),
            logins: Default::default(),
            anonymous_tokens: Default::default(),
            accounts_remaining: Default::default(),
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
        // Load balancers check health over HTTP/1.0, without a Host: answered before the
        // origin, which needs one.
        if route == Route::Health {
            return answer_health(&head.method, summary);
        }
        let origin = match self.origin(incoming) {
            Ok(origin) => origin,
            Err(e) => return answer_error(&head.method, e, summary),
        };
        match route {
            Route::Health => answer_health(&head.method, summary),
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
            Route::Search => self.search(incoming, &origin, now, summary),
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
        let pending = match retry(matches!(head.status.as_u16(), 502..=504), pending) {
            Ok(step) => return step,
            Err(pending) => *pending,
        };
        let Pending { state, summary, .. } = pending;
        match state {
            State::LearnChallenge(request) => self.challenge_learnt(request, head, now, summary),
            State::UpstreamToken(request) => {
                self.upstream_token_answered(request, head, body.unwrap_or_default(), now, summary)
            }
            State::Resource(resource) => self.registry_answered(resource, head, now, summary),
            State::Authorize {
                resource,
                get,
                key,
                stored,
            } => self.authorized(resource, get, key, stored, head, summary),
            State::TagHead { resource, get } => self.tag_answered(resource, get, head, summary),
            // States that wait on the store, not on an upstream.
            State::Lookup { .. }
            | State::TagRecall { .. }
            | State::StaleTag { .. }
            | State::StaleContent { .. }
            | State::Filling { .. } => {
                answer_error(&Method::GET, unexpected("an upstream answer"), summary)
            }
            State::Storage {
                resource,
                url,
                hops,
            } => self.storage_answered(resource, &url, hops, head, summary),
            // A search the index refuses (a bad query) is the client's to know about.
            State::Search if head.status.is_success() || head.status.is_client_error() => {
                Step::Relay(
                    relay_head(head.status, &head.headers, SEARCH_TO_CLIENT),
                    summary,
                )
            }
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
    pub fn fail(&self, pending: Pending, error: FetchError, now: SystemTime) -> Step {
        let now = unix_seconds(now);
        // A refused or broken connection may be passing; a timeout has used the time already.
        let pending = match retry(
            matches!(error, FetchError::Connect | FetchError::Other),
            pending,
        ) {
            Ok(step) => return step,
            Err(pending) => *pending,
        };
        let Pending { state, summary, .. } = pending;
        let what = match &state {
            State::LearnChallenge(_)
            | State::Resource(_)
            | State::Lookup { .. }
            | State::TagHead { .. }
            | State::TagRecall { .. }
            | State::StaleTag { .. }
            | State::StaleContent { .. }
            | State::Authorize { .. } => "the upstream registry",
            State::Filling { .. } => "the content store",
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
            State::Resource(r)
            | State::Storage { resource: r, .. }
            | State::Lookup { resource: r, .. }
            | State::TagHead { resource: r, .. }
            | State::Authorize { resource: r, .. } => r.method.clone(),
            _ => Method::GET,
        };
        let error = RegistryError::new(ErrorCode::Unavailable, format!("{what} {why}"));
        let fallback = for_method(&method, error.into_response());
        // Not the client's fault: what the store may answer instead.
        match state {
            State::TagHead { resource, get } => self.stale_tag(resource, get, fallback, summary),
            State::Authorize {
                resource,
                key,
                stored,
                ..
            } => self.stale_content(resource, key, stored, fallback, summary),
            State::LearnChallenge(request) | State::UpstreamToken(request) => {
                self.offline_token(request, fallback, now, summary)
            }
            _ => Step::Answer(fallback, summary),
        }
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
    fn closed_to(&self, incoming: &Incoming) -> bool {
        if self.config.whitelist.is_none() {
            return false;
        }
        let address = self.client_address(incoming);
        !address.is_some_and(|a| self.config.allow_networks.iter().any(|n| n.contains(&a)))
    }

    /// A mirror token from the request, checked, when `WHITE_LIST` is on: signed by this mirror,
    /// unexpired, and naming a user the whitelist still lists (removing a user revokes their
    /// tokens at once).
    fn verified_token(&self, headers: &HeaderMap, now: u64) -> Option<MirrorToken> {
        let secret = self.config.token_secret.as_ref()?;
        let whitelist = self.config.whitelist.as_ref()?;
        MirrorToken::verify(&bearer(headers)?, secret, now)
            .ok()
            .filter(|token| whitelist.allows(&token.user))
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
    fn search(&self, incoming: &Incoming, origin: &Origin, now: u64, summary: Summary) -> Step {
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

    // ---- Manifests, blobs and tags ----
}

// ---- Fetches and their retries ----

/// How many times the mirror sends one upstream request, at most.
const MAX_ATTEMPTS: u32 = 3;

/// The pause before attempt `n + 1`: 100 ms, then 400 ms.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * 4u64.pow(attempt.saturating_sub(1)))
}

impl Resend {
    fn of(request: &Request<Vec<u8>>, read_body: Option<usize>) -> Self {
        Resend {
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
            read_body,
        }
    }
}

/// A first attempt at an upstream request.
fn fetch_step(
    request: Request<Vec<u8>>,
    read_body: Option<usize>,
    state: State,
    summary: Summary,
) -> Step {
    let resend = Resend::of(&request, read_body);
    Step::Fetch(Box::new(Fetch {
        request,
        read_body,
        delay: Duration::ZERO,
        pending: Pending {
            state,
            summary,
            attempt: 1,
            resend,
        },
    }))
}

/// A store lookup before `get` would be fetched.
fn lookup_step(
    key: String,
    then: OnLookup,
    resource: ResourceRequest,
    get: Request<Vec<u8>>,
    summary: Summary,
) -> Step {
    let state = State::Lookup {
        resource,
        get,
        key: key.clone(),
        then,
    };
    Step::Lookup(Box::new(store_step(key, state, summary)))
}

fn fill_step(write: StoreWrite, state: State, summary: Summary) -> Step {
    let Lookup { pending, .. } = store_step(write.key.clone(), state, summary);
    Step::Fill(Box::new(Fill { write, pending }))
}

/// A store lookup or recall: no upstream request, so what it keeps to resend is never used.
fn store_step(key: String, state: State, summary: Summary) -> Lookup {
    let resend = Resend {
        method: Method::GET,
        uri: http::Uri::default(),
        headers: HeaderMap::new(),
        read_body: None,
    };
    Lookup {
        key,
        pending: Pending {
            state,
            summary,
            attempt: 1,
            resend,
        },
    }
}

/// The same request again after a pause, when the failure is `retryable` and attempts remain;
/// the pending state back if not, to answer with.
fn retry(retryable: bool, pending: Pending) -> Result<Step, Box<Pending>> {
    if !retryable || pending.attempt >= MAX_ATTEMPTS {
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
        delay: backoff(pending.attempt),
        pending: Pending {
            attempt: pending.attempt + 1,
            ..pending
        },
    })))
}

// ---- Small helpers ----

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

fn build_request(method: Method, url: &str, headers: HeaderMap) -> Request<Vec<u8>> {
    let mut request = Request::new(Vec::new());
    *request.method_mut() = method;
    // Every URL here was built from a parsed upstream URL or checked by `resolve_location`.
    *request.uri_mut() = url.parse().unwrap_or_default();
    *request.headers_mut() = headers;
    request
}

#[cfg(test)]
mod tests;

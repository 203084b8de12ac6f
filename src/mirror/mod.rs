//! The proxy's decisions, one small step each, with no I/O.
//!
//! A runtime adapter hands [`Mirror::start`] the client's request; the mirror answers with a
//! [`Step`]: an answer of its own, an upstream request to make ([`Fetch`]), or an instruction to
//! relay the last upstream response's body under a rewritten head. The adapter makes the fetch and
//! calls [`Mirror::resume`] (or [`Mirror::fail`]) with what came back. The steps of a request, each
//! found by its name:
//!
//! 1. route (here, `start`): what the client asks for ([`crate::registry::route`]), and for which
//!    registry ([`crate::registry::Registries::select`]);
//! 2. admit (`admit`): where the client reached the mirror, who the client is, whether
//!    `WHITE_LIST` lets it in; `/v2/` and `/v1/search` are answered there;
//! 3. upstream request (`resource`): what to ask the upstream, with which credentials;
//! 4. upstream answer (`resource`: `registry_answered`; `storage`: `redirected`,
//!    `storage_answered`): relay it, follow its redirect to storage, or turn it into the
//!    mirror's own challenge or error. A gateway error or a broken connection is retried first
//!    (`fetches`);
//! 5. store (`stored`): look content up, have the upstream authorise a hit, relay and store a miss;
//! 6. stale (`stale`): what the store answers when the upstream fails.
//!
//! The `/token` route has its own short dance (`token_route`): learn the upstream's realm from its
//! challenge (`challenge`: once, then cached), fetch the upstream token with the client's
//! credentials, answer with it (or with a signed mirror token wrapping it, when `WHITE_LIST` is
//! on). What passes
//! between core and adapter is in `step`; what the core keeps meanwhile, in `state`.

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

mod admit;
mod answers;
mod challenge;
mod fetches;
mod resource;
mod stale;
mod state;
mod step;
mod storage;
mod stored;
mod token_route;

use answers::*;
use fetches::*;
pub use state::SignedObject;
use state::*;
pub use step::*;
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
            matches!(error, FetchError::Connect(_) | FetchError::Other),
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
        let why: std::borrow::Cow<'static, str> = match error {
            FetchError::Timeout => "did not answer in time".into(),
            FetchError::Connect(Unreachable::Unknown) => "could not be reached".into(),
            FetchError::Connect(cause) => format!("could not be reached: {}", cause.says()).into(),
            FetchError::BodyTooLarge => "sent an answer too large to read".into(),
            FetchError::NoBackend => "has no backend configured in this deployment".into(),
            FetchError::Other => "failed".into(),
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

    // ---- Manifests, blobs and tags ----
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

//! What the core remembers of a request while an adapter fetches for it: the state it resumes
//! in, the token or resource request it decided, and where the client reached the mirror.

use super::*;

#[derive(Debug)]
pub(super) enum State {
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
pub(super) enum OnLookup {
    /// Found: serve once the upstream authorises this client (a `HEAD`). Missing: fetch.
    Authorize,
    /// Found: serve (the upstream has just let this client read it). Missing: fetch.
    Serve,
    /// Found: serve, marked stale. Missing: answer the upstream's failure.
    ServeStale(Box<Response<Vec<u8>>>),
}

#[derive(Debug)]
pub(super) struct TokenRequest {
    pub(super) registry: usize,
    /// In the upstream's names: `repository:library/alpine:pull`.
    pub(super) scopes: Vec<String>,
    /// What goes to this upstream's token service.
    pub(super) credentials: Option<BasicCredentials>,
    /// Who asks: the user the mirror's token names.
    pub(super) user: Option<String>,
    /// From where: failed logins are counted per address and user.
    pub(super) client: Option<std::net::IpAddr>,
    pub(super) origin: Origin,
    /// With `WHITE_LIST`, a token for another registry: this request checks the user's identity
    /// with Docker Hub, then the other registry's token is fetched without the user's credentials.
    pub(super) then: Option<Box<TokenRequest>>,
    /// The mirror's own account the upstream token is fetched with, for a client without
    /// credentials (see `accounts`).
    pub(super) account: Option<usize>,
}

/// A manifest, blob or tags request, decided and waiting for the upstream.
#[derive(Debug)]
pub(super) struct ResourceRequest {
    pub(super) route: Route,
    pub(super) resolved: Resolved,
    pub(super) method: Method,
    /// The client headers that may go on to storage, if the registry redirects there.
    pub(super) storage_headers: HeaderMap,
    pub(super) origin: Origin,
    /// The `ns` the client chose the registry with, kept in the links it is given.
    pub(super) ns: Option<String>,
    /// Where a whole `GET` answer goes in the store (a blob missing from it).
    pub(super) store_key: Option<String>,
    /// The client sent no credentials of its own: what it is shown is anyone's to pull.
    pub(super) anonymous: bool,
    /// The mirror's own account behind the client's token (see `accounts`).
    pub(super) account: Option<usize>,
    /// When the request came (unix seconds): the time records are made and judged by.
    pub(super) now: u64,
}

/// How clients reach the mirror: the realm and service of its challenge come from here.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    pub(super) scheme: String,
    pub(super) host: String,
}

/// A stored object clients are sent to by a signed URL: its key, and where the client reached
/// the mirror (a `STORAGE_RELAY` on that host may serve the store's host too).
#[derive(Debug)]
pub struct SignedObject {
    pub key: String,
    pub(super) origin: Origin,
}

impl SignedObject {
    /// The `Location` for the store's signed `url` of the object: the URL itself, or its path
    /// and query under the `STORAGE_RELAY` that serves the store's host.
    pub fn location(&self, mirror: &Mirror, url: &str) -> String {
        mirror.relayed(url, &self.origin)
    }
}

impl Origin {
    pub(super) fn realm(&self) -> String {
        format!("{}://{}/token", self.scheme, self.host)
    }
}

#[derive(Debug, Clone)]
pub(super) struct CachedChallenge {
    pub(super) challenge: Challenge,
    pub(super) learnt_at: u64,
}

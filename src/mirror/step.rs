//! What the core and an adapter pass each other: the client's request ([`Incoming`]), the step
//! the core asks for ([`Step`]: answer, fetch, look in the store, relay, serve), and what the core
//! keeps while the adapter does it ([`Pending`]).

use super::*;

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
    /// The object's bytes are served if it is found: the adapter may begin reading them now.
    pub opens_body: bool,
    /// Only what is stored now counts (a client's `HEAD`): the adapter neither waits for an
    /// object being filled nor claims the key for a fill, so a `HEAD` never waits on a transfer.
    pub peek: bool,
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
    /// No connection could be made, and why, as far as the runtime can tell.
    Connect(Unreachable),
    /// The body was longer than `read_body` allowed.
    BodyTooLarge,
    /// The runtime has no way to reach that host (on Fastly: no backend for it).
    NoBackend,
    Other,
}

/// Why a connection to an upstream host could not be made: what an operator must fix differs
/// (a resolver, a firewall, a clock or a CA bundle, a proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// The host's name did not resolve.
    Dns,
    /// The host (or the path to it) refused the connection.
    Refused,
    /// The TLS handshake failed (a certificate not trusted or not for that host, a clock off).
    Tls,
    /// The HTTP proxy (`HTTPS_PROXY`) could not be reached or would not open the tunnel.
    Proxy,
    /// The runtime did not say.
    Unknown,
}

impl Unreachable {
    /// What the client's `503` and the log say of it: the cause, nothing of the request.
    pub fn says(self) -> &'static str {
        match self {
            Unreachable::Dns => "its name did not resolve (DNS)",
            Unreachable::Refused => "refused the connection",
            Unreachable::Tls => "failed the TLS handshake (certificate, or this machine's clock)",
            Unreachable::Proxy => "was not reached through the HTTP proxy (HTTPS_PROXY)",
            Unreachable::Unknown => "could not be reached",
        }
    }
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
    pub(super) state: State,
    pub(super) summary: Summary,
    /// Which attempt the fetch was (1 for the first).
    pub(super) attempt: u32,
    /// What to send again if it is retried.
    pub(super) resend: Resend,
}

/// A copy of a fetch, for its retries (all the mirror's upstream requests are GET or HEAD, so
/// sending one again is safe).
#[derive(Debug, Clone)]
pub(super) struct Resend {
    pub(super) method: Method,
    pub(super) uri: http::Uri,
    pub(super) headers: HeaderMap,
    pub(super) read_body: Option<usize>,
}

impl Pending {
    /// The log fields of a request the adapter finished without the core (a cache hit).
    pub fn into_summary(self) -> Summary {
        self.summary
    }
}

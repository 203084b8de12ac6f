//! The async driver shared by the native runtimes (the local server and the Lambda binary): it runs
//! the core's steps, making each upstream request with one shared `reqwest` client, and streams the
//! last upstream body to the client untouched.
//!
//! The core decides; this module only moves bytes. Upstream bodies are never buffered except the
//! small ones the core asks to read (challenges, token answers), and those only up to its limit.

use crate::mirror::{FetchError, Incoming, Mirror, Step, Summary};
use crate::native::said_once::SaidOnce;
use crate::native::store::{ContentStore, Found};

pub mod fetch;
use crate::native::store::resume::Resume;
use http::{request, Response};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long the driver waits for an upstream's response head, and for a small body.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the driver itself (not of the core).
#[derive(Debug, Clone)]
pub struct DriverSettings {
    /// `UPSTREAM_TIMEOUT_SECS`: the longest wait for an upstream's response head.
    pub upstream_timeout: Duration,
    /// `COPY_TIMEOUT_SECS`: the longest a blob's copy into the bucket may keep its client waiting
    /// before the client is sent to the upstream's storage instead (the Lambda's large blobs).
    pub copy_timeout: Duration,
}

/// CloudFront, in front of the Lambda function, waits 60 s for the origin's first byte
/// (`OriginReadTimeout` in `template.yaml`, the most it allows without a quota increase) and then
/// answers the client `504`: a copy that may keep the client waiting must end well before.
pub const DEFAULT_COPY_TIMEOUT: Duration = Duration::from_secs(50);

impl DriverSettings {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<DriverSettings, String> {
        let default = DEFAULT_UPSTREAM_TIMEOUT.as_secs();
        let secs = crate::config::positive_number(&lookup, "UPSTREAM_TIMEOUT_SECS", default)?;
        let copy = DEFAULT_COPY_TIMEOUT.as_secs();
        let copy = crate::config::positive_number(&lookup, "COPY_TIMEOUT_SECS", copy)?;
        Ok(DriverSettings {
            upstream_timeout: Duration::from_secs(secs),
            copy_timeout: Duration::from_secs(copy),
        })
    }
}

/// Drives one [`Mirror`] with one HTTP client.
#[derive(Clone)]
pub struct Driver {
    mirror: Arc<Mirror>,
    client: reqwest::Client,
    settings: DriverSettings,
    store: Option<Arc<ContentStore>>,
    metrics: Option<Arc<crate::native::server::metrics::Metrics>>,
}

/// The HTTP client of every upstream request (the driver's, and `doctor`'s checks of the same
/// hosts): no redirect followed (the core decides), bounded waits.
pub fn upstream_client(upstream_timeout: Duration) -> Result<reqwest::Client, String> {
    // rustls needs a process-wide crypto provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10).min(upstream_timeout))
        // A stalled body ends rather than hangs; a slow but moving one goes on.
        .read_timeout(Duration::from_secs(60).max(upstream_timeout))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl Driver {
    pub fn new(mirror: Mirror, settings: DriverSettings) -> Result<Driver, String> {
        let client = upstream_client(settings.upstream_timeout)?;
        Ok(Driver {
            mirror: Arc::new(mirror),
            client,
            settings,
            store: None,
            metrics: None,
        })
    }

    /// The content store the mirror's `Lookup`, `Serve` and `RelayAndStore` steps use.
    pub fn with_store(mut self, store: Arc<ContentStore>) -> Driver {
        self.store = Some(store);
        self
    }

    /// Where upstream requests are counted (`METRICS_LISTEN`).
    pub fn with_metrics(mut self, metrics: Arc<crate::native::server::metrics::Metrics>) -> Driver {
        self.metrics = Some(metrics);
        self
    }

    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// Answers one client request: the response to send (its body streams from the upstream when
    /// relayed) and the core's fields for the log line.
    pub async fn handle(
        &self,
        head: &request::Parts,
        scheme: &str,
        body: &[u8],
        client: Option<std::net::IpAddr>,
    ) -> (Response<reqwest::Body>, Summary) {
        let incoming = Incoming {
            head,
            scheme,
            body,
            client,
        };
        let (response, summary) = self.run(&incoming).await;
        if let Some(store) = &self.store {
            store.keep(&summary.remember);
        }
        (response, summary)
    }

    async fn run(&self, incoming: &Incoming<'_>) -> (Response<reqwest::Body>, Summary) {
        let mut step = self.mirror.start(incoming, SystemTime::now());
        let mut last_body: Option<reqwest::Body> = None;
        // The object a lookup found, held open until it is served; or the claim to fetch it.
        let mut found: Option<Found> = None;
        let mut claim = None;
        // How to ask again for the rest of the last answer, should a store fall behind it.
        let mut resume = None;
        loop {
            step = match step {
                Step::Answer(response, summary) => {
                    return (response.map(reqwest::Body::from), summary)
                }
                Step::Relay(parts, summary) => {
                    let body = last_body
                        .take()
                        .unwrap_or_else(|| reqwest::Body::from(Vec::new()));
                    return (Response::from_parts(parts, body), summary);
                }
                Step::Lookup(lookup) => {
                    let (stored, claimed) = match &self.store {
                        Some(store) if lookup.peek => {
                            (store.open_object(&lookup.key, false).await, None)
                        }
                        Some(store) => {
                            let wait = self.settings.upstream_timeout;
                            store.look_up(&lookup.key, wait, lookup.opens_body).await
                        }
                        None => (None, None),
                    };
                    claim = claimed;
                    let (object, stored) = stored.unzip();
                    found = object;
                    self.mirror.resume_lookup(lookup.pending, stored)
                }
                Step::Recall(recall) => {
                    let record = match &self.store {
                        Some(store) => store.read_record(&recall.key).await,
                        None => None,
                    };
                    self.mirror.resume_recall(recall.pending, record)
                }
                Step::Fill(fill) => {
                    let body = last_body.take().unwrap_or_default();
                    let write = fill.write;
                    let filled = match &self.store {
                        Some(store) => {
                            let deadline = tokio::time::Instant::now() + self.settings.copy_timeout;
                            store.fill(&write.key, body, write.verifier, deadline).await
                        }
                        None => false,
                    };
                    drop(claim.take());
                    self.mirror.resume_filled(fill.pending, filled)
                }
                Step::ServeSigned(parts, signed, summary) => {
                    let response = match &self.store {
                        Some(store) => store.signed_redirect(parts, &signed, &self.mirror).await,
                        None => crate::native::store::no_signed_url(),
                    };
                    return (response, summary);
                }
                Step::Serve(parts, _key, summary) => {
                    let body = match (found.take(), &self.store) {
                        (Some(found), Some(store)) => store.body(found).await,
                        _ => reqwest::Body::from(Vec::new()),
                    };
                    return (Response::from_parts(parts, body), summary);
                }
                Step::RelayAndStore(parts, summary, write) => {
                    let upstream = last_body.take().unwrap_or_default();
                    let body = match &self.store {
                        Some(store) => {
                            let (claim, resume) = (claim.take(), resume.take());
                            store.relay_and_store(*write, upstream, claim, resume).await
                        }
                        None => upstream,
                    };
                    return (Response::from_parts(parts, body), summary);
                }
                Step::Fetch(fetch) => {
                    if !fetch.delay.is_zero() {
                        tokio::time::sleep(fetch.delay).await;
                    }
                    let (limit, timeout) = (fetch.read_body, self.settings.upstream_timeout);
                    let host = fetch.request.uri().host().unwrap_or("-").to_string();
                    let port = fetch.request.uri().port_u16();
                    resume = Resume::of(&self.client, &fetch.request, timeout);
                    let fetched = fetch::fetch(&self.client, timeout, fetch.request, limit).await;
                    if let Some(metrics) = &self.metrics {
                        metrics.upstream(&host, fetched.as_ref().ok().map(|f| f.0.status.as_u16()));
                    }
                    match fetched {
                        Ok((head, small_body, stream)) => {
                            last_body = stream;
                            self.mirror
                                .resume(fetch.pending, head, small_body, SystemTime::now())
                        }
                        Err(error) => {
                            upstream_failed(&host, port, error);
                            self.mirror.fail(fetch.pending, error, SystemTime::now())
                        }
                    }
                }
            };
        }
    }
}

/// Upstream failures already logged lately, by host and cause.
static UPSTREAM_FAILURES: SaidOnce = SaidOnce::new(Duration::from_secs(60));

/// Logs an upstream request that got no answer, with its host and why, once per host and cause
/// a minute: the client's `503` says the cause, the log says where.
fn upstream_failed(host: &str, port: Option<u16>, error: FetchError) {
    // Host and port only: never user info, should a URL carry any.
    let host = match port {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let cause = match error {
        FetchError::Timeout => "no answer in time (UPSTREAM_TIMEOUT_SECS)",
        FetchError::Connect(unreachable) => unreachable.says(),
        FetchError::BodyTooLarge => "an answer too large to read",
        FetchError::NoBackend => "no backend for this host",
        FetchError::Other => "the connection broke",
    };
    if UPSTREAM_FAILURES.due(&format!("{host} {cause}"), std::time::Instant::now()) {
        tracing::warn!(
            host = %host,
            cause,
            "an upstream request failed (said once per host and cause a minute)"
        );
    }
}

//! Prometheus metrics for the local server (`METRICS_LISTEN=ADDR`): served as OpenMetrics text
//! at `/metrics` on an address of its own, never on the public one. What a scrape shows: requests
//! by route and status, response bytes, upstream requests by host and status, Docker Hub's
//! counted pulls and the pulls it says are left, store hits, misses and stale answers, the bytes
//! a directory store holds, failures to keep an object or a record, and requests in flight.
//! Counted with `prometheus-client`. The same requests by user and repository are at `/usage`
//! (see `usage`).

use super::usage::Usage;
use crate::mirror::Summary;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostStatus {
    host: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Upstream {
    registry: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreResult {
    result: String,
}

/// Every metric, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    bytes: Family<Route, Counter>,
    upstream_requests: Family<HostStatus, Counter>,
    counted_pulls: Family<Upstream, Counter>,
    pulls_left: Family<Upstream, Gauge>,
    store: Family<StoreResult, Counter>,
    store_bytes: Gauge<u64, AtomicU64>,
    in_flight: Gauge,
    /// The same requests by user, repository and hour, for `/usage`.
    usage: Usage,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Metrics::keeping_usage_in(None, None)
    }

    /// Metrics whose `/usage` figures are kept in `file` (the store's directory) across restarts,
    /// repositories named as `registries`' upstreams know them.
    pub fn keeping_usage_in(
        file: Option<std::path::PathBuf>,
        registries: Option<crate::registry::Registries>,
    ) -> Arc<Metrics> {
        let (requests, bytes) = (Family::default(), Family::default());
        let (upstream_requests, counted_pulls) = (Family::default(), Family::default());
        let (pulls_left, store) = (Family::default(), Family::default());
        let (store_bytes, in_flight) = (Gauge::default(), Gauge::default());
        let mut registry = Registry::with_prefix("registry_mirror");
        registry.register("requests", "Requests answered", requests.clone());
        registry.register("response_bytes", "Bytes of responses", bytes.clone());
        registry.register(
            "upstream_requests",
            "Requests to upstreams (registries, token services, storage)",
            upstream_requests.clone(),
        );
        registry.register(
            "counted_pulls",
            "Manifest GETs the registry answered (pulls in Docker Hub's accounting)",
            counted_pulls.clone(),
        );
        registry.register(
            "pulls_left",
            "The ratelimit-remaining the registry last announced",
            pulls_left.clone(),
        );
        registry.register(
            "store",
            "Content answered from the store (hit, stale) or fetched (miss)",
            store.clone(),
        );
        registry.register(
            "store_bytes",
            "Bytes a directory store holds",
            store_bytes.clone(),
        );
        registry.register(
            "store_failures",
            "Objects (blobs, manifests) and records the store could not keep",
            crate::native::store::complaints::failures(),
        );
        registry.register("in_flight", "Requests being answered", in_flight.clone());
        Arc::new(Metrics {
            registry,
            requests,
            bytes,
            upstream_requests,
            counted_pulls,
            pulls_left,
            store,
            store_bytes,
            in_flight,
            usage: Usage::new(file, registries),
        })
    }

    /// A request begins; the guard ends it.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.inc();
        InFlight(self.clone())
    }

    /// A request answered (`get`: by `GET`), with the core's summary of it.
    pub fn answered(&self, get: bool, summary: &Summary, status: u16, bytes: Option<u64>) {
        self.usage
            .count(get, summary, status, bytes, std::time::SystemTime::now());
        let route = summary.route.to_string();
        self.requests
            .get_or_create(&RouteStatus {
                route: route.clone(),
                status: status.to_string(),
            })
            .inc();
        if let Some(bytes) = bytes {
            self.bytes.get_or_create(&Route { route }).inc_by(bytes);
        }
        let registry = summary.upstream.clone().unwrap_or_default();
        if summary.counted_get {
            let upstream = Upstream {
                registry: registry.clone(),
            };
            self.counted_pulls.get_or_create(&upstream).inc();
        }
        let left = summary
            .ratelimit_remaining
            .as_deref()
            .and_then(crate::auth::accounts::pulls_left)
            .and_then(|left| i64::try_from(left).ok());
        if let Some(left) = left {
            self.pulls_left
                .get_or_create(&Upstream { registry })
                .set(left);
        }
        if let Some(result) = summary.store {
            let result = result.to_string();
            self.store.get_or_create(&StoreResult { result }).inc();
        }
    }

    /// An upstream request made, and the status it got (`error` for none).
    pub fn upstream(&self, host: &str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        let host = host.to_string();
        self.upstream_requests
            .get_or_create(&HostStatus { host, status })
            .inc();
    }

    pub fn set_store_bytes(&self, bytes: u64) {
        self.store_bytes.set(bytes);
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// A request in flight; dropped when it is answered.
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Serves `/metrics` on `listener` for as long as the server runs.
pub fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    store_bytes: impl Fn() -> Option<u64> + Send + Sync + 'static,
) {
    let store_bytes = Arc::new(store_bytes);
    let saved = metrics.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(super::usage::SAVE_EVERY).await;
            let saving = saved.clone();
            let result = tokio::task::spawn_blocking(move || saving.usage.save()).await;
            if let Ok(Err(e)) = result {
                tracing::warn!(error = %e, "the usage figures could not be saved");
            }
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (metrics, store_bytes) = (metrics.clone(), store_bytes.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: http::Request<_>| {
                    let (metrics, store_bytes) = (metrics.clone(), store_bytes.clone());
                    async move {
                        let response = if request.uri().path() == "/usage" {
                            http::Response::builder()
                                .header("content-type", "text/html; charset=utf-8")
                                .body(metrics.usage.page())
                        } else if request.uri().path() == "/metrics" {
                            if let Some(bytes) = store_bytes() {
                                metrics.set_store_bytes(bytes);
                            }
                            http::Response::builder()
                                .header(
                                    "content-type",
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )
                                .body(metrics.encode())
                        } else {
                            http::Response::builder().status(404).body(String::new())
                        };
                        Ok::<_, std::convert::Infallible>(response.unwrap_or_default())
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
}

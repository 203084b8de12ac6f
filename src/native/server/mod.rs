//! The local server's listener: accepts connections (plain, or TLS with `tls`), speaks HTTP/1.1
//! and HTTP/2 on them, hands each request to the driver, and logs it.
//!
//! On `SIGTERM` (or Ctrl-C) it stops accepting and lets the transfers in flight finish, for up to
//! `SHUTDOWN_GRACE_SECS` (30 by default), before it exits: a pull under way when a service manager
//! restarts the server completes whole.

pub mod acme;
pub mod connections;
pub mod metrics;
pub mod tls;
pub mod usage;

use crate::auth::client_address::{client_address, limit_group};
use crate::config::positive_number;
use crate::mirror::MAX_REQUEST_BODY;
use crate::native::drive::Driver;
use crate::native::logging;
use crate::native::server::connections::{ConnectionSettings, IdleWriteTimeout, PerAddress, Slot};
use crate::native::server::metrics::Metrics;
use crate::registry::errors::{ErrorCode, RegistryError};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// `SHUTDOWN_GRACE_SECS` by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long a client has for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `SHUTDOWN_GRACE_SECS`.
pub fn shutdown_grace(lookup: impl Fn(&str) -> Option<String>) -> Result<Duration, String> {
    let default = DEFAULT_SHUTDOWN_GRACE.as_secs();
    positive_number(&lookup, "SHUTDOWN_GRACE_SECS", default).map(Duration::from_secs)
}

/// How the listener serves, besides the driver.
pub struct Options {
    pub connections: ConnectionSettings,
    /// HTTPS with this configuration (`tls`), or plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `SHUTDOWN_GRACE_SECS`.
    pub grace: Duration,
    /// Where each request is counted (`METRICS_LISTEN`).
    pub metrics: Option<Arc<Metrics>>,
}

/// Serves `driver` on `listener` until `SIGTERM`, then for up to the grace period while
/// transfers finish.
pub async fn serve(
    listener: TcpListener,
    driver: Arc<Driver>,
    options: Options,
) -> Result<(), String> {
    let Options {
        connections,
        tls,
        grace,
        metrics,
    } = options;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    // Connections are counted by the socket's address (an IPv6 client by its /64); behind a
    // trusted proxy every connection is the proxy's, so requests are counted instead, by the
    // address the proxy forwarded.
    let behind_proxy = driver.mirror().config().trust_forwarded_headers;
    let limit = PerAddress::new(connections.max_per_address);
    let (per_address, per_client) = match behind_proxy {
        false => (Some(limit), None),
        true => (None, Some(Arc::new(limit))),
    };
    let graceful = GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // One address holding its share of connections gets no more.
        let slot = match &per_address {
            Some(per_address) => match per_address.admit(limit_group(peer.ip())) {
                Some(slot) => Some(slot),
                None => continue,
            },
            None => None,
        };
        let _ = stream.set_nodelay(true);
        let (driver, acceptor, metrics) = (driver.clone(), acceptor.clone(), metrics.clone());
        let per_client = per_client.clone();
        let idle = connections.client_idle_timeout;
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let scheme = if acceptor.is_some() { "https" } else { "http" };
            let service = hyper::service::service_fn(move |request| {
                let (driver, metrics, per_client) =
                    (driver.clone(), metrics.clone(), per_client.clone());
                async move {
                    let answer = match admit_request(per_client.as_deref(), &request, peer.ip()) {
                        Ok(None) => answer(&driver, metrics, request, scheme, peer.ip()).await,
                        Ok(Some(slot)) => {
                            let answer = answer(&driver, metrics, request, scheme, peer.ip()).await;
                            // The slot is the request's until its body is sent.
                            answer.map(|body| reqwest::Body::wrap(Holding { body, _slot: slot }))
                        }
                        Err(TooManyAtOnce) => too_many_at_once(&request),
                    };
                    Ok::<_, std::convert::Infallible>(answer)
                }
            });
            let builder = http_builder();
            match acceptor {
                None => {
                    let io = IdleWriteTimeout::new(TokioIo::new(stream), idle);
                    let _ = watcher
                        .watch(builder.serve_connection(io, service).into_owned())
                        .await;
                }
                Some(acceptor) => {
                    let Some(tls) = handshake(&acceptor, stream).await else {
                        return;
                    };
                    let io = IdleWriteTimeout::new(TokioIo::new(tls), idle);
                    let _ = watcher
                        .watch(builder.serve_connection(io, service).into_owned())
                        .await;
                }
            }
        });
    }
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: finishing transfers"
    );
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("transfers still running at the end of the grace period were cut");
    }
    Ok(())
}

/// The address a request is counted under holds its share already.
struct TooManyAtOnce;

/// Behind a trusted proxy (`per_client` is there), a slot for this request among those of the
/// address the proxy forwarded (an unparsable one counts as the proxy's).
fn admit_request(
    per_client: Option<&PerAddress>,
    request: &http::Request<Incoming>,
    peer: IpAddr,
) -> Result<Option<Slot>, TooManyAtOnce> {
    let Some(per_client) = per_client else {
        return Ok(None);
    };
    let client = client_address(request.headers(), Some(peer), true).unwrap_or(peer);
    per_client
        .admit(limit_group(client))
        .map(Some)
        .ok_or(TooManyAtOnce)
}

/// The `429` for a request past its address's share, logged as every answer is.
fn too_many_at_once(request: &http::Request<Incoming>) -> http::Response<reqwest::Body> {
    let error = RegistryError::new(
        ErrorCode::TooManyRequests,
        "too many requests at once from this address",
    );
    tracing::warn!(path = request.uri().path(), "{error}");
    error.into_response().map(reqwest::Body::from)
}

/// A response body that holds its request's slot until it is sent or dropped.
struct Holding {
    body: reqwest::Body,
    _slot: Slot,
}

impl hyper::body::Body for Holding {
    type Data = bytes::Bytes;
    type Error = reqwest::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, reqwest::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128);
    builder
}

async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        // An ACME server checking a TLS-ALPN-01 challenge: answered in the handshake, done.
        Ok(Ok(tls))
            if tls.get_ref().1.alpn_protocol()
                == Some(crate::native::server::acme::CHALLENGE_ALPN) =>
        {
            None
        }
        Ok(Ok(tls)) => Some(tls),
        _ => None,
    }
}

async fn answer(
    driver: &Driver,
    metrics: Option<Arc<Metrics>>,
    request: http::Request<Incoming>,
    scheme: &str,
    client: IpAddr,
) -> http::Response<reqwest::Body> {
    let started = Instant::now();
    let _in_flight = metrics.as_ref().map(|m| m.begin());
    let (head, body) = request.into_parts();
    let body = read_request_body(body).await;
    let (response, summary) = driver.handle(&head, scheme, &body, Some(client)).await;
    let bytes = logging::content_length(response.headers());
    if let Some(metrics) = &metrics {
        let get = head.method == http::Method::GET;
        metrics.answered(get, &summary, response.status().as_u16(), bytes);
    }
    logging::request_line(
        &head.method,
        response.status().as_u16(),
        bytes,
        started.elapsed(),
        &summary,
    );
    response
}

/// Reads at most `MAX_REQUEST_BODY + 1` bytes, so that the core can tell a body too large.
async fn read_request_body(mut body: Incoming) -> Vec<u8> {
    let mut bytes = Vec::new();
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                bytes.extend_from_slice(&data);
                if bytes.len() > MAX_REQUEST_BODY {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    bytes
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return ctrl_c.await.unwrap_or(());
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

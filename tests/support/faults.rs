//! A fault-injecting front between the mirror and the fixture: it proxies the registry, the token
//! service (it rewrites the registry's challenge to point at itself) and storage (it rewrites the
//! registry's redirects to point at itself), and on command breaks one of them the way networks
//! and upstreams break.

use super::http_front::{empty, forward, Body};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the front does to the requests that reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Pass everything.
    None,
    /// Answer the next `times` registry requests with `status` (and no body), then pass.
    Status { status: u16, times: usize },
    /// Close the connection without an answer on the next `times` registry requests.
    Drop { times: usize },
    /// Wait this long before every answer's head.
    SlowHead(Duration),
    /// Cut storage bodies after this many bytes, with a reset.
    CutBody { after: usize },
    /// Send storage bodies at this many bytes a second (an upstream slower than the clients).
    SlowBody { bytes_per_sec: u64 },
    /// Flip a bit in the first byte of every storage body: whole, but not the content asked for.
    CorruptBody,
    /// The token service does not answer: its connections close at once.
    TokenDown,
    /// Storage redirects point at a port where nothing listens.
    DeadRedirect,
    /// Answer manifest requests with a 429 and `Retry-After: 77`.
    TooMany,
    /// Docker Hub is down: every connection (registry, token service, storage) closes without
    /// an answer.
    Down,
    /// Docker Hub's accounting (docker/docs, "usage/pulls"): `left` more manifest `GET`s are
    /// allowed (a `HEAD` is free), each answer says how many remain in `ratelimit-*`, and past
    /// the limit a `GET` is answered 429 `TOOMANYREQUESTS`.
    PullLimit { left: usize },
    /// A compressing proxy before the registry (nginx with `gzip on`): manifest answers are
    /// gzipped for requests whose `Accept-Encoding` allows it.
    Gzip,
}

pub struct FaultFront {
    pub addr: String,
    fault: Arc<Mutex<Fault>>,
    /// Registry requests that reached the front (for counting retries).
    pub registry_requests: Arc<AtomicUsize>,
    /// Storage requests (blob downloads) that reached the front.
    pub storage_requests: Arc<AtomicUsize>,
}

struct Targets {
    registry: String,
    token: String,
    storage: String,
    me: String,
    dead: String,
}

impl FaultFront {
    pub fn start(registry: &str, token_port: u16, storage_port: u16) -> FaultFront {
        let (listener, addr) = super::http_front::bind();
        // A port that was free a moment ago and that nothing will listen on.
        let (dead_listener, dead) = super::http_front::bind();
        drop(dead_listener);
        let targets = Arc::new(Targets {
            registry: registry.to_string(),
            token: format!("127.0.0.1:{token_port}"),
            storage: format!("127.0.0.1:{storage_port}"),
            me: addr.clone(),
            dead,
        });
        let fault = Arc::new(Mutex::new(Fault::None));
        let registry_requests = Arc::new(AtomicUsize::new(0));
        let storage_requests = Arc::new(AtomicUsize::new(0));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let counts = Arc::new((registry_requests.clone(), storage_requests.clone()));
        let f = fault.clone();
        super::http_front::serve(listener, move |request| {
            let (client, targets, fault, counts) =
                (client.clone(), targets.clone(), f.clone(), counts.clone());
            async move { handle(&client, &targets, &fault, &counts, request).await }
        });
        FaultFront {
            addr,
            fault,
            registry_requests,
            storage_requests,
        }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

/// Docker Hub's answer past the pull limit.
fn too_many_pulls() -> http::Response<Body> {
    let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}"#;
    let mut response = http::Response::new(
        http_body_util::Full::new(Bytes::from(body))
            .map_err(|e| match e {})
            .boxed(),
    );
    *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
    for (name, value) in [
        ("content-type", "application/json"),
        ("ratelimit-limit", "100;w=21600"),
        ("ratelimit-remaining", "0;w=21600"),
        ("retry-after", "3600"),
    ] {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

async fn handle(
    client: &reqwest::Client,
    targets: &Targets,
    fault: &Mutex<Fault>,
    counts: &(Arc<AtomicUsize>, Arc<AtomicUsize>),
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Body>, std::io::Error> {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let (kind, upstream, upstream_path) = if path.starts_with("/token") {
        ("token", &targets.token, path.clone())
    } else if let Some(rest) = path.strip_prefix("/_storage") {
        ("storage", &targets.storage, rest.to_string())
    } else {
        ("registry", &targets.registry, path.clone())
    };
    let current = fault.lock().unwrap().clone();
    if kind == "registry" {
        counts.0.fetch_add(1, Ordering::SeqCst);
    } else if kind == "storage" {
        counts.1.fetch_add(1, Ordering::SeqCst);
    }
    match (&current, kind) {
        (Fault::Status { status, times }, "registry") if *times > 0 => {
            *fault.lock().unwrap() = Fault::Status {
                status: *status,
                times: times - 1,
            };
            return Ok(empty(*status, &[("content-length", "0")]));
        }
        (Fault::Drop { times }, "registry") if *times > 0 => {
            *fault.lock().unwrap() = Fault::Drop { times: times - 1 };
            return Err(std::io::Error::other("dropped by the fault front"));
        }
        (Fault::Down, _) => return Err(std::io::Error::other("the upstream is down")),
        (Fault::TokenDown, "token") => {
            return Err(std::io::Error::other("the token service is down"))
        }
        (Fault::TooMany, "registry") if path.contains("/manifests/") => {
            return Ok(empty(
                429,
                &[("retry-after", "77"), ("content-length", "0")],
            ));
        }
        (Fault::PullLimit { left }, "registry")
            if path.contains("/manifests/") && request.method() == http::Method::GET =>
        {
            if *left == 0 {
                return Ok(too_many_pulls());
            }
            *fault.lock().unwrap() = Fault::PullLimit { left: left - 1 };
        }
        (Fault::SlowHead(pause), _) => tokio::time::sleep(*pause).await,
        _ => {}
    }

    let (head, body) = request.into_parts();
    let gzip = current == Fault::Gzip
        && kind == "registry"
        && head.method == http::Method::GET
        && path.contains("/manifests/")
        && head
            .headers
            .get_all("accept-encoding")
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("gzip")));
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let url = format!("http://{upstream}{upstream_path}");
    let response = forward(client, &head, url, body).await?;
    let status = response.status();
    let mut headers = response.headers().clone();
    // Send the token service's and storage's traffic through here too.
    if let Some(challenge) = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
    {
        let rewritten = challenge.replace(
            &format!("http://{}/token", targets.token),
            &format!("http://{}/token", targets.me),
        );
        headers.insert("www-authenticate", rewritten.parse().unwrap());
    }
    if let Some(location) = headers.get("location").and_then(|v| v.to_str().ok()) {
        let to = if current == Fault::DeadRedirect {
            targets.dead.clone()
        } else {
            format!("{}/_storage", targets.me)
        };
        let rewritten = location.replace(&targets.storage, &to);
        headers.insert("location", rewritten.parse().unwrap());
    }
    if gzip && status == http::StatusCode::OK {
        use std::io::Write;
        let plain = response.bytes().await.map_err(std::io::Error::other)?;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&plain)?;
        let compressed = encoder.finish()?;
        headers.insert("content-encoding", "gzip".parse().unwrap());
        headers.insert("content-length", compressed.len().into());
        let mut out = http::Response::new(
            http_body_util::Full::new(Bytes::from(compressed))
                .map_err(|e| match e {})
                .boxed(),
        );
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        return Ok(out);
    }
    let cut = match (&current, kind) {
        (Fault::CutBody { after }, "storage") => Some(*after),
        _ => None,
    };
    let pace = match (&current, kind) {
        (Fault::SlowBody { bytes_per_sec }, "storage") => Some(*bytes_per_sec),
        _ => None,
    };
    let mut corrupt = matches!((&current, kind), (Fault::CorruptBody, "storage"));
    let mut stream = response.bytes_stream();
    let body = async_stream(move |tx| async move {
        use futures_util::StreamExt;
        let mut sent = 0usize;
        let started = std::time::Instant::now();
        while let Some(chunk) = stream.next().await {
            let Ok(mut chunk) = chunk else {
                let _ = tx.send(Err(std::io::Error::other("upstream broke"))).await;
                return;
            };
            if let Some(after) = cut {
                if sent + chunk.len() >= after {
                    chunk.truncate(after - sent);
                    let _ = tx.send(Ok(Frame::data(chunk))).await;
                    let _ = tx
                        .send(Err(std::io::Error::other(
                            "reset in the middle of the body",
                        )))
                        .await;
                    return;
                }
            }
            if corrupt && !chunk.is_empty() {
                let mut flipped = chunk.to_vec();
                flipped[0] ^= 1;
                chunk = flipped.into();
                corrupt = false;
            }
            sent += chunk.len();
            if tx.send(Ok(Frame::data(chunk))).await.is_err() {
                return;
            }
            if let Some(rate) = pace {
                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    });
    if let (Fault::PullLimit { .. }, true) = (&current, path.contains("/manifests/")) {
        if let Fault::PullLimit { left } = &*fault.lock().unwrap() {
            headers.insert("ratelimit-limit", "100;w=21600".parse().unwrap());
            let remaining = format!("{left};w=21600");
            headers.insert("ratelimit-remaining", remaining.parse().unwrap());
        }
    }
    let mut out = http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// A body fed by a task through a channel.
fn async_stream<F, Fut>(produce: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(produce(tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    StreamBody::new(stream).boxed()
}

/// Keeps `Duration` in scope for callers that set `SlowHead`.
pub fn seconds(n: u64) -> Duration {
    Duration::from_secs(n)
}

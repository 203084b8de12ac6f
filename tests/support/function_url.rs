//! A stand-in for an AWS Lambda function URL, as strict as the platform: it speaks the Lambda
//! Runtime API to the function's own processes (no emulator between) and turns what they answer
//! into HTTP the way AWS does, in the one invoke mode `template.yaml` gives the URL.
//!
//! What it reproduces, and where each rule is written down:
//! - One invoke mode for every response. Under `RESPONSE_STREAM` "Lambda streams all response
//!   payloads for invocations that come through the function's URL" (AWS Lambda guide,
//!   config-rs-invoke-furls): a buffered answer reaches the client as its raw JSON with status 200
//!   (localstack's AWS-validated `test_lambda_url_echo_invoke[RESPONSE_STREAM]`; aws-lambda-rust-runtime
//!   #805, #967). Under `BUFFERED` the payload format 2.0 is read (`statusCode`, `headers`,
//!   `cookies`, `body`, `isBase64Encoded`; AWS Lambda guide, urls-invocation); any other payload,
//!   a streamed one among them, reaches the client as raw bytes with status 200.
//! - A streamed answer: a JSON prelude, 8 NUL bytes, then the body (lambda_runtime's
//!   `streaming`); `Content-Length` goes out renamed `x-amzn-remapped-content-length` (reported on
//!   AWS in cargo-lambda #862, imitated by cargo-lambda #874), the body chunked.
//! - Caps: a buffered payload of 6 MB (Lambda quotas: "6 MB each for request and response"; the
//!   smaller reading, 6,000,000 bytes, is enforced) answers 502; a streamed one is cut after
//!   200 MB (config-rs-invoke-furls); a request body over 6 MB answers 413.
//! - The event: payload format 2.0, repeated headers joined with commas (API Gateway's payload
//!   format differences, which function URLs share), cookies in `cookies`, a body that is not
//!   text base64-encoded.
//! - One invocation per instance at a time: each instance takes the next request when it asks
//!   for it (`GET …/invocation/next`); requests wait in a queue until one does.
//! - `HEAD`: nothing AWS documents says whether a buffered answer's `Content-Length` survives a
//!   `HEAD`; [`HeadLength`] chooses, and the suite runs where it does not.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Notify};

/// A function URL's invoke mode (`FunctionUrlConfig.InvokeMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvokeMode {
    Buffered,
    ResponseStream,
}

/// What a `HEAD` answer's `Content-Length` becomes under `BUFFERED` (undocumented; see above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadLength {
    /// The function's own value goes out.
    Kept,
    /// No `Content-Length` at all.
    Dropped,
    /// `Content-Length: 0`, the empty body's length.
    Zero,
}

const BUFFERED_PAYLOAD_LIMIT: usize = 6_000_000;
const STREAMED_PAYLOAD_LIMIT: u64 = 200_000_000;
const REQUEST_PAYLOAD_LIMIT: usize = 6_000_000;
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:registry-mirror";

/// The `InvokeMode` a SAM template gives the function URL (the template's one such line).
pub fn invoke_mode_in(template: &std::path::Path) -> InvokeMode {
    let text = std::fs::read_to_string(template)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", template.display()));
    let modes: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("InvokeMode:"))
        .map(str::trim)
        .collect();
    match modes.as_slice() {
        ["BUFFERED"] => InvokeMode::Buffered,
        ["RESPONSE_STREAM"] => InvokeMode::ResponseStream,
        other => panic!(
            "{}: expected one InvokeMode, found {other:?}",
            template.display()
        ),
    }
}

/// A running function URL: clients go to `url_port`; instances of the function get
/// `runtime_api` as `AWS_LAMBDA_RUNTIME_API`.
pub struct FunctionUrl {
    pub url_port: u16,
    pub runtime_api: String,
}

/// What an instance answered for one invocation.
enum Outcome {
    /// `POST …/response`: its body still streaming in; `done` tells the runtime side it was read.
    Response {
        streaming: bool,
        body: Incoming,
        done: oneshot::Sender<()>,
    },
    /// `POST …/error`.
    Error,
}

struct Invocation {
    id: String,
    event: Vec<u8>,
    outcome: oneshot::Sender<Outcome>,
}

struct Shared {
    mode: InvokeMode,
    head_length: HeadLength,
    queue: mpsc::UnboundedSender<Invocation>,
    waiting: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    in_flight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_failed: Mutex<Option<String>>,
    init_failure: Notify,
    ids: AtomicU64,
}

type Body = BoxBody<Bytes, std::io::Error>;

/// Starts the function URL and its Runtime API, each on a free port of 127.0.0.1.
pub fn start(mode: InvokeMode, head_length: HeadLength) -> FunctionUrl {
    let (queue, waiting) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        mode,
        head_length,
        queue,
        waiting: tokio::sync::Mutex::new(waiting),
        in_flight: Mutex::new(HashMap::new()),
        init_failed: Mutex::new(None),
        init_failure: Notify::new(),
        ids: AtomicU64::new(1),
    });
    let (api_listener, runtime_api) = super::http_front::bind();
    let api_shared = shared.clone();
    super::http_front::serve(api_listener, move |request| {
        let shared = api_shared.clone();
        async move { Ok::<_, std::convert::Infallible>(runtime_api_call(&shared, request).await) }
    });
    let (url_listener, url_addr) = super::http_front::bind();
    super::http_front::serve(url_listener, move |request| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(invoke(&shared, request).await) }
    });
    FunctionUrl {
        url_port: url_addr.rsplit(':').next().unwrap().parse().unwrap(),
        runtime_api,
    }
}

// ---- The Runtime API, as the function's instances see it ----

async fn runtime_api_call(shared: &Shared, request: http::Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let rest = path.strip_prefix("/2018-06-01/runtime/").unwrap_or("");
    let parts: Vec<&str> = rest.split('/').collect();
    match (request.method().as_str(), parts.as_slice()) {
        ("GET", ["invocation", "next"]) => {
            let Some(invocation) = shared.waiting.lock().await.recv().await else {
                return plain(StatusCode::INTERNAL_SERVER_ERROR, "the front stopped");
            };
            shared
                .in_flight
                .lock()
                .unwrap()
                .insert(invocation.id.clone(), invocation.outcome);
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 900_000;
            Response::builder()
                .header("content-type", "application/json")
                .header("lambda-runtime-aws-request-id", &invocation.id)
                .header("lambda-runtime-deadline-ms", deadline.to_string())
                .header("lambda-runtime-invoked-function-arn", FUNCTION_ARN)
                .header(
                    "lambda-runtime-trace-id",
                    "Root=1-00000000-000000000000000000000000;Sampled=0",
                )
                .body(full(invocation.event))
                .unwrap()
        }
        ("POST", ["invocation", id, kind @ ("response" | "error")]) => {
            let Some(outcome) = shared.in_flight.lock().unwrap().remove(*id) else {
                return plain(StatusCode::BAD_REQUEST, "InvalidRequestID");
            };
            if *kind == "error" {
                let _ = outcome.send(Outcome::Error);
                return plain(StatusCode::ACCEPTED, r#"{"status":"OK"}"#);
            }
            let streaming = request
                .headers()
                .get("lambda-runtime-function-response-mode")
                .is_some_and(|v| v == "streaming");
            let (done, read) = oneshot::channel();
            let body = request.into_body();
            if outcome
                .send(Outcome::Response {
                    streaming,
                    body,
                    done,
                })
                .is_ok()
            {
                let _ = read.await;
            }
            plain(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        ("POST", ["init", "error"]) => {
            let body = request.into_body().collect().await.map(|b| b.to_bytes());
            let text = String::from_utf8_lossy(&body.unwrap_or_default()).to_string();
            *shared.init_failed.lock().unwrap() = Some(text);
            shared.init_failure.notify_waiters();
            plain(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        _ => plain(StatusCode::NOT_FOUND, "unknown Runtime API call"),
    }
}

// ---- The function URL, as clients see it ----

async fn invoke(shared: &Shared, request: http::Request<Incoming>) -> Response<Body> {
    let (head, body) = request.into_parts();
    let body = match http_body_util::Limited::new(body, REQUEST_PAYLOAD_LIMIT)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"Message":"Request Too Long"}"#,
            )
        }
    };
    let id = format!("{:08x}-front", shared.ids.fetch_add(1, Ordering::Relaxed));
    let event = event(&head, &body, &id);
    let (outcome, answered) = oneshot::channel();
    let failed = shared.init_failure.notified();
    if shared.init_failed.lock().unwrap().is_some() {
        return internal_error();
    }
    let _ = shared.queue.send(Invocation { id, event, outcome });
    let outcome = tokio::select! {
        outcome = answered => outcome,
        _ = failed => return internal_error(),
    };
    match outcome {
        Ok(Outcome::Response {
            streaming,
            body,
            done,
        }) => match (shared.mode, streaming) {
            (InvokeMode::Buffered, false) => {
                buffered(
                    body,
                    done,
                    head.method == http::Method::HEAD,
                    shared.head_length,
                )
                .await
            }
            (InvokeMode::ResponseStream, true) => streamed(body, done).await,
            (mode, _) => raw(body, done, mode).await,
        },
        // `…/error`, or an instance that went away mid-invocation.
        Ok(Outcome::Error) | Err(_) => internal_error(),
    }
}

/// The event: payload format 2.0, as a function URL sends it.
fn event(head: &http::request::Parts, body: &[u8], id: &str) -> Vec<u8> {
    let mut headers = serde_json::Map::new();
    let mut cookies = Vec::new();
    for name in head.headers.keys() {
        let values: Vec<&str> = head
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if name == http::header::COOKIE {
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split("; "))
                    .map(str::to_string),
            );
            continue;
        }
        headers.insert(name.as_str().to_string(), values.join(",").into());
    }
    let source_ip = head
        .extensions
        .get::<std::net::SocketAddr>()
        .map(|peer| peer.ip().to_string())
        .unwrap_or_default();
    headers.insert("x-forwarded-proto".into(), "http".into());
    headers.insert("x-forwarded-for".into(), source_ip.clone().into());
    let host = head
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let text = head
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/") || t.starts_with("application/json"));
    let mut event = serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": head.uri.path(),
        "rawQueryString": head.uri.query().unwrap_or(""),
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "mirror",
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(host),
            "http": {
                "method": head.method.as_str(),
                "path": head.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": head.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or(""),
            },
            "requestId": id,
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Dec/2026:00:00:00 +0000",
            "timeEpoch": 1796083200000u64,
        },
        "isBase64Encoded": false,
    });
    if !cookies.is_empty() {
        event["cookies"] = cookies.into();
    }
    if !body.is_empty() {
        use base64::Engine;
        event["isBase64Encoded"] = (!text).into();
        event["body"] = if text {
            String::from_utf8_lossy(body).into()
        } else {
            base64::engine::general_purpose::STANDARD
                .encode(body)
                .into()
        };
    }
    serde_json::to_vec(&event).unwrap()
}

/// `BUFFERED`, a buffered answer: payload format 2.0 is interpreted.
async fn buffered(
    body: Incoming,
    done: oneshot::Sender<()>,
    is_head: bool,
    head_length: HeadLength,
) -> Response<Body> {
    let payload = http_body_util::Limited::new(body, BUFFERED_PAYLOAD_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes());
    let _ = done.send(());
    let Ok(payload) = payload else {
        return plain(
            StatusCode::BAD_GATEWAY,
            r#"{"Message":"payload too large"}"#,
        );
    };
    let json: Option<serde_json::Value> = serde_json::from_slice(&payload).ok();
    let Some(answer) = json.filter(|v| v.get("statusCode").is_some()) else {
        // Any other payload is the body of a 200 (urls-invocation: "Lambda infers the response
        // format").
        let mut response = Response::new(full(payload.to_vec()));
        set(response.headers_mut(), "content-type", "application/json");
        return response;
    };
    let status = answer["statusCode"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok());
    let Some(status) = status else {
        return internal_error();
    };
    let mut bytes = answer["body"].as_str().unwrap_or("").as_bytes().to_vec();
    if answer["isBase64Encoded"] == true {
        use base64::Engine;
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&bytes) else {
            return internal_error();
        };
        bytes = decoded;
    }
    let mut headers = response_headers(&answer, "content-length");
    let given_length = headers.remove(http::header::CONTENT_LENGTH);
    headers.remove(http::header::TRANSFER_ENCODING);
    let length = match (is_head, head_length) {
        (false, _) => Some(HeaderValue::from(bytes.len())),
        (true, HeadLength::Kept) => given_length,
        (true, HeadLength::Zero) => Some(HeaderValue::from(0)),
        (true, HeadLength::Dropped) => None,
    };
    let body = match length {
        Some(length) => {
            headers.insert(http::header::CONTENT_LENGTH, length);
            full(bytes)
        }
        // A body of unknown length: hyper then adds no Content-Length of its own.
        None => unsized_body(vec![Bytes::from(bytes)]),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The runtime's bytes as they are, with status 200: a payload the mode does not interpret
/// (chunked when the mode streams).
async fn raw(body: Incoming, done: oneshot::Sender<()>, mode: InvokeMode) -> Response<Body> {
    let payload = http_body_util::Limited::new(body, BUFFERED_PAYLOAD_LIMIT)
        .collect()
        .await
        .map(|b| b.to_bytes());
    let _ = done.send(());
    match (payload, mode) {
        (Ok(payload), InvokeMode::Buffered) => Response::new(full(payload)),
        (Ok(payload), InvokeMode::ResponseStream) => Response::new(unsized_body(vec![payload])),
        (Err(_), _) => plain(
            StatusCode::BAD_GATEWAY,
            r#"{"Message":"payload too large"}"#,
        ),
    }
}

/// `RESPONSE_STREAM`, a streamed answer: the prelude gives status and headers, the rest streams,
/// `Content-Length` renamed, cut after the stream cap.
async fn streamed(mut body: Incoming, done: oneshot::Sender<()>) -> Response<Body> {
    let mut prelude = Vec::new();
    let separator = [0u8; 8];
    let rest = loop {
        if let Some(at) = prelude.windows(8).position(|w| w == separator) {
            break prelude.split_off(at + 8);
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    prelude.extend_from_slice(&data);
                }
            }
            _ => {
                let _ = done.send(());
                return internal_error();
            }
        }
    };
    prelude.truncate(prelude.len() - 8);
    let Ok(meta) = serde_json::from_slice::<serde_json::Value>(&prelude) else {
        let _ = done.send(());
        return internal_error();
    };
    let status = meta["statusCode"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::OK);
    let headers = response_headers(&meta, "x-amzn-remapped-content-length");
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(8);
    tokio::spawn(async move {
        let mut sent = rest.len() as u64;
        if !rest.is_empty() && tx.send(Ok(Frame::data(Bytes::from(rest)))).await.is_err() {
            let _ = done.send(());
            return;
        }
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            sent += data.len() as u64;
            let item = if sent > STREAMED_PAYLOAD_LIMIT {
                Err(std::io::Error::other("the stream passed Lambda's cap"))
            } else {
                Ok(Frame::data(data))
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
        let _ = done.send(());
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed());
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

// ---- Small pieces ----

/// The headers of a payload-format answer or a stream's prelude: `headers` (format 2.0 has no
/// `multiValueHeaders`), `Content-Length` under the name given, and a `Set-Cookie` per cookie.
fn response_headers(answer: &serde_json::Value, content_length: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in answer["headers"].as_object().into_iter().flatten() {
        if let Some(value) = value.as_str() {
            let name = match name.eq_ignore_ascii_case("content-length") {
                true => content_length,
                false => name,
            };
            set(&mut headers, name, value);
        }
    }
    for cookie in answer["cookies"].as_array().into_iter().flatten() {
        if let Some(Ok(value)) = cookie.as_str().map(HeaderValue::from_str) {
            headers.append(http::header::SET_COOKIE, value);
        }
    }
    headers
}

fn set(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        http::HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(name, value);
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body whose length hyper does not know, so it writes none.
fn unsized_body(chunks: Vec<Bytes>) -> Body {
    let stream = futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|chunk| Ok::<_, std::io::Error>(Frame::data(chunk))),
    );
    StreamBody::new(stream).boxed()
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response
}

/// What a function URL answers when the function failed or cannot start.
fn internal_error() -> Response<Body> {
    plain(
        StatusCode::BAD_GATEWAY,
        r#"{"Message":"Internal Server Error"}"#,
    )
}

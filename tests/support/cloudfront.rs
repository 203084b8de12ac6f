//! A stand-in for the CloudFront relay `template.yaml` puts before the function
//! (`EnableCloudFrontRelay=true`), for its store-bucket route, behaving as AWS documents it:
//!
//! - every request first passes the template's viewer-request function: the viewer's host goes on
//!   as `X-Forwarded-Host`, and on a `/_storage/<name>/` path the prefix and `Authorization` are
//!   dropped (the function's code in `template.yaml`);
//! - `/_storage/bucket/*` goes to the bucket's origin with the origin's own domain as `Host`
//!   ("The HTTP headers that CloudFront automatically includes in every origin request, including
//!   `Host`", AWS, "Control origin requests with a policy"; Managed-AllViewerExceptHostHeader
//!   forwards every viewer header but `Host`) and the whole query string (the same policy: "Query
//!   strings included in origin requests: All"); nothing is cached (Managed-CachingDisabled);
//!   only `GET` and `HEAD` are allowed there (the behaviour's `AllowedMethods`);
//! - everything else goes to the function's origin, which must begin its answer within the
//!   origin's `OriginReadTimeout` (read from `template.yaml`): past it the relay answers `504`
//!   ("If the origin doesn't respond within the response timeout … CloudFront returns an HTTP 504
//!   status code (Gateway Timeout) to the viewer", AWS, "Origin settings: Response timeout").

use super::http_front::{empty, forward, Body};
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The function origin's `OriginReadTimeout` in `template.yaml`.
pub fn template_origin_read_timeout() -> std::time::Duration {
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    let secs = template
        .lines()
        .find_map(|l| l.trim().strip_prefix("OriginReadTimeout:"))
        .expect("an OriginReadTimeout in template.yaml")
        .trim()
        .parse()
        .unwrap();
    std::time::Duration::from_secs(secs)
}

pub struct Relay {
    pub addr: String,
    /// The function's origin (`host:port`), set once the function runs.
    function: Arc<Mutex<String>>,
    /// Requests the bucket's origin answered through the relay.
    pub bucket_requests: Arc<AtomicUsize>,
}

impl Relay {
    /// A relay whose bucket origin is `bucket_origin` (`host:port` of the bucket's REST host),
    /// with the template's origin read timeout.
    pub fn start(bucket_origin: &str) -> Relay {
        Relay::with_read_timeout(bucket_origin, template_origin_read_timeout())
    }

    /// As `start`, with a shorter origin read timeout (a test's time scaled down).
    pub fn with_read_timeout(bucket_origin: &str, read_timeout: std::time::Duration) -> Relay {
        let (listener, addr) = super::http_front::bind();
        let function = Arc::new(Mutex::new(String::new()));
        let bucket_requests = Arc::new(AtomicUsize::new(0));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let (f, counted, bucket) = (
            function.clone(),
            bucket_requests.clone(),
            bucket_origin.to_string(),
        );
        super::http_front::serve(listener, move |request| {
            let (client, function, counted, bucket) =
                (client.clone(), f.clone(), counted.clone(), bucket.clone());
            async move { relay(&client, &function, &counted, &bucket, read_timeout, request).await }
        });
        Relay {
            addr,
            function,
            bucket_requests,
        }
    }

    pub fn set_function(&self, origin: &str) {
        *self.function.lock().unwrap() = origin.to_string();
    }
}

async fn relay(
    client: &reqwest::Client,
    function: &Mutex<String>,
    bucket_requests: &AtomicUsize,
    bucket: &str,
    read_timeout: std::time::Duration,
    request: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Body>, std::io::Error> {
    let (mut head, body) = request.into_parts();
    // The viewer-request function.
    let viewer_host = head.headers.get("host").cloned();
    if let Some(host) = viewer_host {
        head.headers.insert("x-forwarded-host", host);
    }
    let path_and_query = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let (origin, path) = match path_and_query.strip_prefix("/_storage/bucket/") {
        Some(rest) => {
            head.headers.remove("authorization");
            if head.method != http::Method::GET && head.method != http::Method::HEAD {
                return Ok(empty(403, &[]));
            }
            bucket_requests.fetch_add(1, Ordering::SeqCst);
            (bucket.to_string(), format!("/{rest}"))
        }
        None => (function.lock().unwrap().clone(), path_and_query.to_string()),
    };
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    // The origin's own Host: the client sets it from the URL.
    let forwarded = forward(client, &head, format!("http://{origin}{path}"), body);
    let Ok(response) = tokio::time::timeout(read_timeout, forwarded).await else {
        return Ok(empty(504, &[]));
    };
    let response = response?;
    use futures_util::TryStreamExt;
    let (code, headers) = (response.status(), response.headers().clone());
    let frames = response
        .bytes_stream()
        .map_err(std::io::Error::other)
        .map_ok(hyper::body::Frame::data);
    let mut out = http::Response::new(http_body_util::StreamBody::new(frames).boxed());
    *out.status_mut() = code;
    *out.headers_mut() = headers;
    Ok(out)
}

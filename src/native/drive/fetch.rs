//! One upstream request for the driver: sent with the shared client, within the upstream
//! timeout; a small body read for the core, or kept as a stream to relay.

use crate::mirror::{FetchError, Unreachable};
use std::time::Duration;

/// An upstream answer: its head, the body read (with a `limit`), or the body to relay.
pub type Fetched = (
    http::response::Parts,
    Option<Vec<u8>>,
    Option<reqwest::Body>,
);

/// Makes one upstream request. With a `limit`, reads the body (up to it) for the core; without,
/// keeps it as a stream to relay.
pub async fn fetch(
    client: &reqwest::Client,
    timeout: Duration,
    request: http::Request<Vec<u8>>,
    limit: Option<usize>,
) -> Result<Fetched, FetchError> {
    let request = reqwest::Request::try_from(request).map_err(|_| FetchError::Other)?;
    let response = tokio::time::timeout(timeout, client.execute(request))
        .await
        .map_err(|_| FetchError::Timeout)?
        .map_err(classify)?;
    let (head, body) = http::Response::<reqwest::Body>::from(response).into_parts();
    match limit {
        None => Ok((head, None, Some(body))),
        Some(limit) => {
            let bytes = tokio::time::timeout(timeout, read_up_to(body, limit))
                .await
                .map_err(|_| FetchError::Timeout)??;
            Ok((head, Some(bytes), None))
        }
    }
}

async fn read_up_to(body: reqwest::Body, limit: usize) -> Result<Vec<u8>, FetchError> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| FetchError::Other)?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(FetchError::BodyTooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

/// Whether a request to `uri` goes through the HTTP proxy: the same reading of `HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (either case) as the HTTP client's, by the same crate.
pub fn through_proxy(uri: &http::Uri) -> bool {
    static PROXIES: std::sync::OnceLock<hyper_util::client::proxy::matcher::Matcher> =
        std::sync::OnceLock::new();
    PROXIES
        .get_or_init(hyper_util::client::proxy::matcher::Matcher::from_system)
        .intercept(uri)
        .is_some()
}

fn classify(error: reqwest::Error) -> FetchError {
    if error.is_timeout() {
        FetchError::Timeout
    } else if error.is_connect() {
        FetchError::Connect(unreachable(&error))
    } else {
        FetchError::Other
    }
}

/// Why a connection failed. Through the HTTP proxy, the only connection made is the proxy's
/// (TLS goes end to end, so a TLS failure is still the host's). Otherwise read from the error's
/// causes (hyper-util's connector says `dns error`; the system says `ConnectionRefused`; rustls
/// names its own errors; a proxy that will not open a tunnel makes hyper-util's `tunnel` error).
pub fn unreachable(error: &reqwest::Error) -> Unreachable {
    let proxied = error
        .url()
        .and_then(|u| u.as_str().parse::<http::Uri>().ok())
        .is_some_and(|u| through_proxy(&u));
    match from_causes(error) {
        Unreachable::Tls => Unreachable::Tls,
        _ if proxied => Unreachable::Proxy,
        cause => cause,
    }
}

fn from_causes(error: &reqwest::Error) -> Unreachable {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut texts = Vec::new();
    while let Some(c) = cause {
        if c.downcast_ref::<rustls::Error>().is_some() {
            return Unreachable::Tls;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return Unreachable::Refused;
            }
        }
        texts.push(c.to_string().to_ascii_lowercase());
        cause = c.source();
    }
    let said = |words: &[&str]| texts.iter().any(|t| words.iter().any(|w| t.contains(w)));
    if said(&[
        "dns error",
        "failed to lookup address",
        "name or service not known",
    ]) {
        Unreachable::Dns
    } else if said(&["tunnel", "proxy"]) {
        Unreachable::Proxy
    } else if said(&["certificate", "tls handshake", "invalid peer"]) {
        Unreachable::Tls
    } else if said(&["connection refused"]) {
        Unreachable::Refused
    } else {
        Unreachable::Unknown
    }
}

//! Upstream requests from the edge: each goes to the static backend named for its host, or to a
//! dynamic one where the service allows them.
//!
//! Timeouts: static backends made from `fastly.toml`'s `[setup]` get Fastly's defaults (connect
//! 1 s, first byte 15 s, between bytes 10 s; `[setup]` cannot set them, `fastly backend update`
//! can); a dynamic backend carries the mirror's own (connect 10 s, first byte 30 s, between bytes
//! 60 s).

use fastly::{Backend, Body, Request};
use registry_mirror::mirror::{FetchError, Unreachable};
use registry_mirror::registry::upstream::backend_name;
use std::io::Read;
use std::time::Duration;

/// A dynamic backend's wait for the first byte.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// An upstream response: its head, its body when it was read, or the body to relay.
pub type Fetched = (http::response::Parts, Option<Vec<u8>>, Option<Body>);

/// Sends one upstream request to the backend for its host.
pub fn fetch_upstream(
    request: http::Request<Vec<u8>>,
    read_body: Option<usize>,
) -> Result<Fetched, FetchError> {
    let backend = backend_for(request.uri())?;
    let mut request = Request::from(request.map(Body::from));
    request.set_pass(true);
    let response = request.send(backend).map_err(|e| {
        // The causes Fastly names (`SendErrorCause`): DnsTimeout, DnsError, ConnectionRefused,
        // TlsCertificateError, …
        let cause = format!("{:?}", e.root_cause());
        if cause.contains("Timeout") {
            FetchError::Timeout
        } else if cause.contains("Dns") {
            FetchError::Connect(Unreachable::Dns)
        } else if cause.contains("Refused") {
            FetchError::Connect(Unreachable::Refused)
        } else if cause.contains("Tls") {
            FetchError::Connect(Unreachable::Tls)
        } else {
            FetchError::Connect(Unreachable::Unknown)
        }
    })?;
    let (head, body) = http::Response::<Body>::from(response).into_parts();
    match read_body {
        None => Ok((head, None, Some(body))),
        Some(limit) => {
            let mut bytes = Vec::new();
            body.take(limit as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|_| FetchError::Other)?;
            if bytes.len() > limit {
                return Err(FetchError::BodyTooLarge);
            }
            Ok((head, Some(bytes), None))
        }
    }
}

/// The static backend named for `host:port` (`registry_1_docker_io_443`), or a dynamic one
/// where the service allows them.
fn backend_for(url: &http::Uri) -> Result<Backend, FetchError> {
    let host = url.host().ok_or(FetchError::Other)?;
    let https = url.scheme_str() == Some("https");
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let name = backend_name(host, port);
    if let Ok(backend) = Backend::from_name(&name) {
        if backend.exists() {
            return Ok(backend);
        }
    }
    let mut builder = Backend::builder(&name, format!("{host}:{port}"))
        .override_host(host)
        .connect_timeout(Duration::from_secs(10))
        .first_byte_timeout(UPSTREAM_TIMEOUT)
        .between_bytes_timeout(Duration::from_secs(60));
    if https {
        builder = builder
            .enable_ssl()
            .sni_hostname(host)
            .check_certificate(host);
    }
    builder.finish().map_err(|e| {
        println!(
            "{}",
            serde_json::json!({
                "msg": "no backend",
                "backend": name,
                "target": format!("{host}:{port}"),
                "error": format!("{e:?}"),
                "fix": "declare this backend in the service, or ask Fastly to enable dynamic backends",
            })
        );
        FetchError::NoBackend
    })
}

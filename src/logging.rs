//! One log line per request, the same fields in every native runtime: method, route, repository,
//! upstream, status, bytes, duration and user. Credentials and tokens are never among them.
//! `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` writes JSON lines (for CloudWatch and
//! other collectors), `text` (the default) plain lines.

use crate::mirror::Summary;
use http::Method;
use std::time::Duration;

/// Sets up `tracing` from `RUST_LOG` and `LOG_FORMAT`; logs go to standard error.
pub fn init(default_format: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = std::env::var("LOG_FORMAT").unwrap_or_else(|_| default_format.to_string());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format.as_str() {
        "json" => builder.json().flatten_event(true).init(),
        "text" | "" => builder.with_ansi(false).init(),
        other => return Err(format!("LOG_FORMAT: {other:?} is not text or json")),
    }
    Ok(())
}

/// The request's line.
pub fn request_line(
    method: &Method,
    status: u16,
    bytes: Option<u64>,
    elapsed: Duration,
    summary: &Summary,
) {
    tracing::info!(
        method = %method,
        route = summary.route,
        repository = summary.repository.as_deref().unwrap_or("-"),
        upstream = summary.upstream.as_deref().unwrap_or("-"),
        status,
        bytes = bytes.unwrap_or(0),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        user = summary.user.as_deref().unwrap_or("-"),
        "request"
    );
}

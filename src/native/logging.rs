//! One log line per request, the same fields in every native runtime: method, route, repository,
//! upstream, status, bytes, duration and user. Credentials and tokens are never among them.
//! `RUST_LOG` sets the level (`error`, `warn`, `info` (the default), `debug`, `trace` or `off`);
//! `LOG_FORMAT=json` writes JSON lines (for CloudWatch and other collectors), `text` (the
//! default) plain lines.

use crate::mirror::Summary;
use http::Method;
use std::time::Duration;

/// Sets up `tracing` from `RUST_LOG` and `LOG_FORMAT`; logs go to standard error.
pub fn init(default_format: &str) -> Result<(), String> {
    init_at(
        default_format,
        tracing_subscriber::filter::LevelFilter::INFO,
    )
}

/// The log of an owner's command: warnings and errors only, unless `RUST_LOG` says otherwise
/// (its report is on standard output).
pub fn init_for_command() -> Result<(), String> {
    init_at("text", tracing_subscriber::filter::LevelFilter::WARN)
}

fn init_at(
    default_format: &str,
    default_level: tracing_subscriber::filter::LevelFilter,
) -> Result<(), String> {
    // A level, not a per-module filter: that keeps a regex engine out of the Lambda package.
    let level = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = match level.trim() {
        "" => default_level,
        other => other
            .parse::<tracing_subscriber::filter::LevelFilter>()
            .map_err(|_| {
                format!("RUST_LOG: {other:?} is not error, warn, info, debug, trace or off")
            })?,
    };
    let format = std::env::var("LOG_FORMAT").unwrap_or_else(|_| default_format.to_string());
    let builder = tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format.as_str() {
        "json" => builder.json().flatten_event(true).init(),
        "text" | "" => builder.with_ansi(false).init(),
        other => return Err(format!("LOG_FORMAT: {other:?} is not text or json")),
    }
    Ok(())
}

/// A response's `Content-Length`, the `bytes` of its log line.
pub fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
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
        cache = summary.store.unwrap_or("-"),
        counted_get = summary.counted_get,
        ratelimit_remaining = summary.ratelimit_remaining.as_deref().unwrap_or("-"),
        "request"
    );
}

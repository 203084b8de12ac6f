//! One log line per request, the same fields in every native runtime: method, route, repository,
//! upstream, status, bytes, duration and user. Credentials and tokens are never among them.
//! `RUST_LOG` filters by level (`error`, `warn`, `info` (the default), `debug`, `trace`, `off`)
//! and by module (`warn,registry_mirror::native::store=debug`);
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
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Targets and levels (`warn,registry_mirror::native::store=debug`), the part of EnvFilter's
    // syntax that needs no regex engine (which would grow the Lambda package).
    let value = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = match value.trim() {
        "" => Targets::new().with_default(default_level),
        other => other.parse::<Targets>().map_err(|e| {
            format!(
                "RUST_LOG: {other:?} is not a filter ({e}): a level (error, warn, info, debug, \
                 trace, off), or targets and levels: warn,registry_mirror::native::store=debug"
            )
        })?,
    };
    let format = std::env::var("LOG_FORMAT").unwrap_or_else(|_| default_format.to_string());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false);
    let installed = match format.as_str() {
        "json" => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(filter)
            .try_init(),
        "text" | "" => builder.with_ansi(false).finish().with(filter).try_init(),
        other => return Err(format!("LOG_FORMAT: {other:?} is not text or json")),
    };
    installed.map_err(|e| format!("cannot set up the log: {e}"))
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

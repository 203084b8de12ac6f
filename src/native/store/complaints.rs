//! What the store says when it cannot keep something: every failure to keep an object or a
//! record is logged, once per cause every [`QUIET_FOR`] (a store that cannot write, say a
//! directory a root-run command left behind, would otherwise fail silently, or fill the log with
//! one line per blob). The cause is the error's text, which names the path or the bucket's answer.
//! Every failure, said or not, is counted for `/metrics` (`registry_mirror_store_failures`).

use crate::native::said_once::SaidOnce;
use std::time::{Duration, Instant};

/// How long one cause stays quiet after it was logged.
pub const QUIET_FOR: Duration = Duration::from_secs(600);

static LOGGED: SaidOnce = SaidOnce::new(QUIET_FOR);

/// Failures to keep an object, and a record, since the process started.
pub static OBJECT_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static RECORD_FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn due(cause: &str, now: Instant) -> bool {
    LOGGED.due(cause, now)
}

/// An object (a blob, a manifest) the store could not keep.
pub fn could_not_keep(error: &dyn std::fmt::Display) {
    OBJECT_FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cause = error.to_string();
    if due(&format!("object {cause}"), Instant::now()) {
        tracing::warn!(error = %cause, "the store could not keep an object (said once per cause every 10 minutes)");
    }
}

/// A record (a tag's digest, what a repository was shown) the store could not keep.
pub fn could_not_keep_record(error: &dyn std::fmt::Display) {
    RECORD_FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cause = error.to_string();
    if due(&format!("record {cause}"), Instant::now()) {
        tracing::warn!(error = %cause, "the store could not keep a record (said once per cause every 10 minutes)");
    }
}

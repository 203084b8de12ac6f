//! What the store says when it cannot keep something: every failure to keep an object or a
//! record is logged, once per cause every [`QUIET_FOR`] (a store that cannot write, say a
//! directory a root-run command left behind, would otherwise fail silently, or fill the log with
//! one line per blob). The cause is the error's text, which names the path or the bucket's answer.
//! Every failure, said or not, is counted for `/metrics` (`registry_mirror_store_failures`).

use crate::native::said_once::SaidOnce;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::time::{Duration, Instant};

/// How long one cause stays quiet after it was logged.
pub const QUIET_FOR: Duration = Duration::from_secs(600);

static LOGGED: SaidOnce = SaidOnce::new(QUIET_FOR);

/// What could not be kept: `object` or `record`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct What {
    pub what: &'static str,
}

/// Failures to keep an object, and a record, since the process started: the family `/metrics`
/// shows as `registry_mirror_store_failures` (the server registers it: [`failures`]).
static FAILURES: std::sync::LazyLock<Family<What, Counter>> =
    std::sync::LazyLock::new(Family::default);

/// The family of failures, both of its series made (at zero until a failure), for `/metrics`.
pub fn failures() -> Family<What, Counter> {
    for what in ["object", "record"] {
        let _ = FAILURES.get_or_create(&What { what });
    }
    FAILURES.clone()
}

fn due(cause: &str, now: Instant) -> bool {
    LOGGED.due(cause, now)
}

/// An object (a blob, a manifest) the store could not keep.
pub fn could_not_keep(error: &dyn std::fmt::Display) {
    FAILURES.get_or_create(&What { what: "object" }).inc();
    let cause = error.to_string();
    if due(&format!("object {cause}"), Instant::now()) {
        tracing::warn!(error = %cause, "the store could not keep an object (said once per cause every 10 minutes)");
    }
}

/// A record (a tag's digest, what a repository was shown) the store could not keep.
pub fn could_not_keep_record(error: &dyn std::fmt::Display) {
    FAILURES.get_or_create(&What { what: "record" }).inc();
    let cause = error.to_string();
    if due(&format!("record {cause}"), Instant::now()) {
        tracing::warn!(error = %cause, "the store could not keep a record (said once per cause every 10 minutes)");
    }
}

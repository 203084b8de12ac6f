//! What the store says when it cannot keep something: every failure to keep an object or a
//! record is logged, once per cause every [`QUIET_FOR`] (a store that cannot write, say a
//! directory a root-run command left behind, would otherwise fail silently, or fill the log with
//! one line per blob). The cause is the error's text, which names the path or the bucket's answer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one cause stays quiet after it was logged.
pub const QUIET_FOR: Duration = Duration::from_secs(600);
/// The most causes remembered; past it the oldest are forgotten (and may be logged again).
const MAX_CAUSES: usize = 256;

static LOGGED: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);

/// Whether `cause` is due to be logged now (not logged in the last [`QUIET_FOR`]).
fn due(cause: &str, now: Instant) -> bool {
    let mut logged = LOGGED.lock().unwrap_or_else(|e| e.into_inner());
    let logged = logged.get_or_insert_with(HashMap::new);
    if logged
        .get(cause)
        .is_some_and(|at| now.duration_since(*at) < QUIET_FOR)
    {
        return false;
    }
    if logged.len() >= MAX_CAUSES {
        logged.retain(|_, at| now.duration_since(*at) < QUIET_FOR);
    }
    if logged.len() < MAX_CAUSES {
        logged.insert(cause.to_string(), now);
    }
    true
}

/// An object (a blob, a manifest) the store could not keep.
pub fn could_not_keep(error: &dyn std::fmt::Display) {
    let cause = error.to_string();
    if due(&format!("object {cause}"), Instant::now()) {
        tracing::warn!(error = %cause, "the store could not keep an object (said once per cause every 10 minutes)");
    }
}

/// A record (a tag's digest, what a repository was shown) the store could not keep.
pub fn could_not_keep_record(error: &dyn std::fmt::Display) {
    let cause = error.to_string();
    if due(&format!("record {cause}"), Instant::now()) {
        tracing::warn!(error = %cause, "the store could not keep a record (said once per cause every 10 minutes)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_said_once_in_a_while() {
        let now = Instant::now();
        assert!(due("test: disk full", now));
        assert!(!due("test: disk full", now + Duration::from_secs(1)));
        assert!(due("test: permission denied", now));
        assert!(due("test: disk full", now + QUIET_FOR));
    }
}

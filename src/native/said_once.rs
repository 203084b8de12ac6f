//! Warnings said once per cause in a while: a failure that repeats on every request (a store
//! that cannot write, an upstream that cannot be reached) must show in the log without filling
//! it with one line per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most causes remembered; past it the oldest are forgotten (and may be said again).
const MAX_CAUSES: usize = 256;

/// The causes said lately, each kept quiet for `quiet_for` after it was said.
pub struct SaidOnce {
    quiet_for: Duration,
    said: Mutex<Option<HashMap<String, Instant>>>,
}

impl SaidOnce {
    pub const fn new(quiet_for: Duration) -> SaidOnce {
        SaidOnce {
            quiet_for,
            said: Mutex::new(None),
        }
    }

    /// Whether `cause` is due to be said at `now` (not said in the last `quiet_for`); if so, it
    /// counts as said.
    pub fn due(&self, cause: &str, now: Instant) -> bool {
        let mut said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        let said = said.get_or_insert_with(HashMap::new);
        if said
            .get(cause)
            .is_some_and(|at| now.duration_since(*at) < self.quiet_for)
        {
            return false;
        }
        if said.len() >= MAX_CAUSES {
            said.retain(|_, at| now.duration_since(*at) < self.quiet_for);
        }
        if said.len() < MAX_CAUSES {
            said.insert(cause.to_string(), now);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_said_once_in_a_while() {
        let once = SaidOnce::new(Duration::from_secs(60));
        let now = Instant::now();
        assert!(once.due("disk full", now));
        assert!(!once.due("disk full", now + Duration::from_secs(1)));
        assert!(once.due("permission denied", now));
        assert!(once.due("disk full", now + Duration::from_secs(60)));
    }
}

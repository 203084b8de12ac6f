//! Failed logins, counted per client address and user name, so that the mirror is no
//! password-guessing relay: after [`MAX_FAILURES`] wrong passwords within [`WINDOW_SECS`], the
//! same address gets `429 TOOMANYREQUESTS` for that user without Docker Hub being asked, until the
//! oldest failure leaves the window. Another address is not held back, so a user who types the
//! right password elsewhere is not locked out by someone guessing theirs.
//!
//! The count lives in the process: the local server keeps one; a Lambda instance keeps its own
//! (so a function with N warm instances allows up to N times as many guesses); Fastly starts
//! every request afresh and keeps none (see the README).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

/// Wrong passwords allowed per address and user within the window.
pub const MAX_FAILURES: usize = 5;

/// The window, in seconds.
pub const WINDOW_SECS: u64 = 60;

/// The most (address, user) pairs remembered; past it the stalest pair is forgotten, so a flood of
/// made-up names cannot grow the memory.
const MAX_ENTRIES: usize = 10_000;

type Key = (IpAddr, String);

/// The failures of each (address, user), as times in Unix seconds.
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<Key, Vec<u64>>>,
}

fn key(client: Option<IpAddr>, user: &str) -> Key {
    (
        client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        user.to_ascii_lowercase(),
    )
}

impl LoginThrottle {
    /// `Some(seconds to wait)` when this address has used up its wrong passwords for `user`.
    pub fn retry_after(&self, client: Option<IpAddr>, user: &str, now: u64) -> Option<u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let times = failures.get_mut(&key(client, user))?;
        times.retain(|&t| now < t + WINDOW_SECS);
        (times.len() >= MAX_FAILURES).then(|| times[0] + WINDOW_SECS - now)
    }

    /// The upstream refused this user's password from this address.
    pub fn failed(&self, client: Option<IpAddr>, user: &str, now: u64) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_ENTRIES {
            failures.retain(|_, times| times.last().is_some_and(|&t| now < t + WINDOW_SECS));
        }
        if failures.len() >= MAX_ENTRIES {
            let stalest = failures
                .iter()
                .min_by_key(|(_, times)| times.last().copied().unwrap_or(0))
                .map(|(key, _)| key.clone());
            if let Some(stalest) = stalest {
                failures.remove(&stalest);
            }
        }
        let times = failures.entry(key(client, user)).or_default();
        times.retain(|&t| now < t + WINDOW_SECS);
        times.push(now);
    }

    /// The upstream accepted the password: the count starts again.
    pub fn succeeded(&self, client: Option<IpAddr>, user: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&key(client, user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
    }

    #[test]
    fn five_failures_a_minute_then_a_wait() {
        let t = LoginThrottle::default();
        for i in 0..MAX_FAILURES as u64 {
            assert_eq!(t.retry_after(ip(1), "alice", 100 + i), None);
            t.failed(ip(1), "alice", 100 + i);
        }
        assert_eq!(t.retry_after(ip(1), "Alice", 110), Some(50));
        // Another address, and another user, are not held back.
        assert_eq!(t.retry_after(ip(2), "alice", 110), None);
        assert_eq!(t.retry_after(ip(1), "bob", 110), None);
        // Once the first failure leaves the window, one more try is allowed.
        assert_eq!(t.retry_after(ip(1), "alice", 160), None);
    }

    #[test]
    fn a_right_password_clears_the_count() {
        let t = LoginThrottle::default();
        for i in 0..4 {
            t.failed(ip(1), "alice", i);
        }
        t.succeeded(ip(1), "alice");
        t.failed(ip(1), "alice", 5);
        assert_eq!(t.retry_after(ip(1), "alice", 6), None);
    }

    #[test]
    fn memory_stays_bounded() {
        let t = LoginThrottle::default();
        for i in 0..(MAX_ENTRIES as u64 + 500) {
            t.failed(ip(1), &format!("user{i}"), 1000 + i / 100);
        }
        assert!(t.failures.lock().unwrap().len() <= MAX_ENTRIES);
    }
}

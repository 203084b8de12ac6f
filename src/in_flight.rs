//! Single flight for the native stores: concurrent misses for one key fetch it upstream once.
//! The first request claims the key; the others wait until that claim is dropped (the object is
//! stored, or the fetch gave up), then look again. Within one process: instances that share a
//! bucket may each fetch a blob once.
//!
//! A wait must never make a pull slower than the upstream alone: the first client reads at its
//! own pace, and a slow one would hold the others. So the claim counts the bytes it has relayed,
//! and a waiter stays only while they move at [`MIN_FILL_RATE`] or faster (after a short grace
//! for the first answer's head); otherwise it goes to the upstream itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The slowest fill a waiter waits for, in bytes a second, on average since it began waiting.
pub const MIN_FILL_RATE: u64 = 1024 * 1024;

/// How long a waiter waits before it measures the fill (the upstream's head comes first).
pub const GRACE: Duration = Duration::from_secs(2);

type Keys = Arc<Mutex<HashMap<String, Waiting>>>;

/// The keys requests are fetching now, each with what wakes those waiting for it.
#[derive(Default, Clone)]
pub struct InFlight {
    keys: Keys,
}

/// What a request waits on while another fetches the object: closes when that request has
/// stored the object or given up; `relayed` counts the bytes it has passed on so far.
#[derive(Clone)]
pub struct Waiting {
    done: watch::Receiver<()>,
    relayed: Arc<AtomicU64>,
}

impl InFlight {
    /// The claim to fetch `key`, or, when another request holds it, what to wait on.
    pub fn claim(&self, key: &str) -> Result<Claim, Waiting> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waiting) = keys.get(key) {
            return Err(waiting.clone());
        }
        let (done, receiver) = watch::channel(());
        let relayed = Arc::new(AtomicU64::new(0));
        keys.insert(
            key.to_string(),
            Waiting {
                done: receiver,
                relayed: relayed.clone(),
            },
        );
        Ok(Claim {
            key: key.to_string(),
            keys: self.keys.clone(),
            relayed,
            _done: done,
        })
    }
}

impl Waiting {
    /// Waits until the claim is dropped, at most `limit`, and no longer than its fill moves at
    /// [`MIN_FILL_RATE`]: whether the claim ended (the object may be stored now).
    pub async fn wait(mut self, limit: Duration) -> bool {
        let started = Instant::now();
        let at_start = self.relayed.load(Ordering::Relaxed);
        loop {
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return false;
            }
            let step = left.min(Duration::from_millis(500));
            let _ = tokio::time::timeout(step, self.done.changed()).await;
            if self.done.has_changed().is_err() {
                return true;
            }
            let elapsed = started.elapsed();
            if elapsed >= GRACE {
                let moved = self.relayed.load(Ordering::Relaxed) - at_start;
                if (moved as f64) < MIN_FILL_RATE as f64 * elapsed.as_secs_f64() {
                    return false;
                }
            }
        }
    }
}

/// A request's claim to fetch a missing object; those waiting for it wake when it is dropped.
pub struct Claim {
    key: String,
    keys: Keys,
    relayed: Arc<AtomicU64>,
    _done: watch::Sender<()>,
}

impl Claim {
    /// `bytes` more were relayed (what waiters measure the fill by).
    pub fn relayed(&self, bytes: usize) {
        self.relayed.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waiters_wait_for_a_moving_fill_and_leave_a_slow_one() {
        let flights = InFlight::default();
        // A fill that moves fast: the waiter stays until the claim ends.
        let claim = flights.claim("a").ok().unwrap();
        let waiting = flights.claim("a").err().unwrap();
        let waiter = tokio::spawn(waiting.wait(Duration::from_secs(30)));
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            claim.relayed(4 * MIN_FILL_RATE as usize);
        }
        drop(claim);
        assert!(waiter.await.unwrap(), "left a fill moving fast");
        // A fill held by a slow reader: the waiter leaves after the grace.
        let claim = flights.claim("b").ok().unwrap();
        let waiting = flights.claim("b").err().unwrap();
        let started = tokio::time::Instant::now();
        let waiter = tokio::spawn(waiting.wait(Duration::from_secs(30)));
        let slow = async {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                claim.relayed(20 * 1024);
            }
        };
        tokio::select! {
            ended = waiter => assert!(!ended.unwrap()),
            _ = slow => unreachable!(),
        }
        assert!(
            started.elapsed() <= GRACE + Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // A claim that ends: the key is free again.
        drop(claim);
        assert!(flights.claim("b").is_ok());
    }
}

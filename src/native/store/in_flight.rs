//! Single flight for the native stores: concurrent misses for one key fetch it upstream once.
//! The first request claims the key; the others wait until that claim is dropped (the object is
//! stored, or the fetch gave up), then look again. Within one process: instances that share a
//! bucket may each fetch a blob once.
//!
//! A wait must never make a pull slower than the upstream alone: the first client reads at its
//! own pace, and a slow one would hold the others. So the claim counts the bytes it has relayed,
//! and a waiter stays only while they move at [`MIN_FILL_RATE`] or faster, measured over each
//! second after a short grace for the first answer's head, or while the relayed object is being
//! made visible; otherwise it goes to the upstream itself. In a directory store the fill is no
//! client's: once it has begun ([`Claim::publish`]), a waiter reads the growing object at once
//! (`growing`), whatever the speed of the others.

use crate::native::store::growing::Growing;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The slowest fill a waiter waits for, in bytes a second, over the last second.
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
    progress: Arc<Progress>,
}

/// How far the claim's relay is: bytes passed on, and whether all of them are.
#[derive(Default)]
struct Progress {
    relayed: AtomicU64,
    complete: AtomicBool,
    /// Upstream requests started again (a store catching up): each earns a grace of its own.
    restarts: AtomicU64,
    /// The object being filled, which waiters read as it grows (a directory store).
    growing: Mutex<Option<Arc<Growing>>>,
}

impl InFlight {
    /// The claim to fetch `key`, or, when another request holds it, what to wait on.
    pub fn claim(&self, key: &str) -> Result<Claim, Waiting> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waiting) = keys.get(key) {
            return Err(waiting.clone());
        }
        let (done, receiver) = watch::channel(());
        let progress = Arc::new(Progress::default());
        keys.insert(
            key.to_string(),
            Waiting {
                done: receiver,
                progress: progress.clone(),
            },
        );
        Ok(Claim {
            key: key.to_string(),
            keys: self.keys.clone(),
            progress,
            done,
        })
    }
}

impl Waiting {
    /// The object being filled, once its fill has begun.
    pub fn growing(&self) -> Option<Arc<Growing>> {
        self.progress
            .growing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the claim is dropped, at most `limit`, and no longer than its fill moves at
    /// [`MIN_FILL_RATE`]: whether the claim ended (the object may be stored now). A fill published
    /// for its readers ([`Waiting::growing`]) is no client's and moves at the upstream's pace: a
    /// waiter that `reads` it returns at once to read it, one that does not (a command that wants
    /// the object kept) waits for its end.
    pub async fn wait(mut self, limit: Duration, reads: bool) -> bool {
        let second = Duration::from_secs(1);
        let started = Instant::now();
        let relayed = || self.progress.relayed.load(Ordering::Relaxed);
        let restarts = || self.progress.restarts.load(Ordering::Relaxed);
        let mut window = (started, relayed());
        let mut grace = (started, restarts());
        loop {
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return false;
            }
            let _ = tokio::time::timeout(left.min(second / 2), self.done.changed()).await;
            if self.done.has_changed().is_err() {
                return true;
            }
            let growing = self.growing().is_some();
            if growing && reads {
                return false;
            }
            if growing || self.progress.complete.load(Ordering::Relaxed) {
                continue;
            }
            let now = Instant::now();
            if restarts() != grace.1 {
                grace = (now, restarts());
                window = (now, relayed());
            }
            let span = now - window.0;
            if span >= second {
                let moved = relayed() - window.1;
                let fast = moved as f64 >= MIN_FILL_RATE as f64 * span.as_secs_f64();
                if grace.0.elapsed() >= GRACE && !fast {
                    return false;
                }
                window = (now, relayed());
            }
        }
    }
}

/// A request's claim to fetch a missing object; those waiting for it wake when it is dropped.
pub struct Claim {
    key: String,
    keys: Keys,
    progress: Arc<Progress>,
    done: watch::Sender<()>,
}

impl Claim {
    /// `bytes` more were relayed (what waiters measure the fill by).
    pub fn relayed(&self, bytes: usize) {
        self.progress
            .relayed
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A new upstream request for the rest of the object is under way: waiters allow its head
    /// the same grace as the first one's.
    pub fn restarted(&self) {
        self.progress.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// Every byte was relayed and checked: what is left is making the object visible.
    pub fn complete(&self) {
        self.progress.complete.store(true, Ordering::Relaxed);
    }

    /// The object's fill has begun, no client's: waiters read it as it grows.
    pub fn publish(&self, growing: Arc<Growing>) {
        *self
            .progress
            .growing
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(growing);
        // Wakes the waiters (they look at `growing` whenever woken).
        self.done.send_replace(());
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
        let waiter = tokio::spawn(waiting.wait(Duration::from_secs(30), true));
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
        let waiter = tokio::spawn(waiting.wait(Duration::from_secs(30), true));
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

    #[tokio::test(start_paused = true)]
    async fn a_store_fetching_the_rest_again_gets_a_grace_for_its_head() {
        let flights = InFlight::default();
        let claim = flights.claim("c").ok().unwrap();
        let waiting = flights.claim("c").err().unwrap();
        let waiter = tokio::spawn(waiting.wait(Duration::from_secs(30), true));
        // The relay moves fast for 3 s, then the store's own request waits 1.5 s for its head.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            claim.relayed(4 * MIN_FILL_RATE as usize);
        }
        claim.restarted();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            claim.relayed(4 * MIN_FILL_RATE as usize);
        }
        assert!(
            !waiter.is_finished(),
            "left while the store's request waited for its head"
        );
        drop(claim);
        assert!(waiter.await.unwrap());
    }

    /// A fill published for its readers: a waiter that reads it is sent to it at once; one that
    /// does not (`warm` confirming what it stored) waits for the fill's end, however long, and is
    /// not sent away for a fill that moves no client's bytes.
    #[tokio::test(start_paused = true)]
    async fn only_readers_leave_for_a_growing_fill() {
        let dir = std::env::temp_dir().join(format!("in-flight-growing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let disk = crate::native::store::disk::DiskStore::open(&dir, 1 << 30).unwrap();
        let writing = disk.begin("v1/r/blobs/sha256/aa", None).unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        let verifier = crate::store::verify::Verifier::new(&digest, 10).unwrap();
        // An upstream that sends nothing yet.
        let upstream = reqwest::Body::wrap_stream(futures_util::stream::pending::<
            Result<bytes::Bytes, std::io::Error>,
        >());
        let started = crate::native::store::growing::start(writing, upstream, verifier, None, None);
        let (growing, _fill) = started.ok().unwrap();
        let flights = InFlight::default();
        let claim = flights.claim("k").ok().unwrap();
        let reader = tokio::spawn(
            flights
                .claim("k")
                .err()
                .unwrap()
                .wait(Duration::from_secs(30), true),
        );
        let keeper = tokio::spawn(
            flights
                .claim("k")
                .err()
                .unwrap()
                .wait(Duration::from_secs(30), false),
        );
        claim.publish(growing);
        assert!(!reader.await.unwrap(), "a reader waited for the fill's end");
        tokio::time::sleep(GRACE + Duration::from_secs(5)).await;
        assert!(
            !keeper.is_finished(),
            "a waiter that keeps the object left a moving fill"
        );
        drop(claim);
        assert!(keeper.await.unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Who pulls what, kept for the owner's `/usage` page on `METRICS_LISTEN`'s address (never on the
//! public one): pulls and bytes per user and per repository by the hour for the last week, the
//! store's hits and misses, and the last `ratelimit-remaining` Docker Hub gave each account. The
//! figures are the metrics' own (counted where the metrics count), kept by the hour so that a day
//! and a week can be told apart, and saved in the store's directory (`usage.json`, replaced
//! whole by a rename) every few seconds when they changed, so that a restart keeps them.

mod page;

pub use page::render;

use crate::mirror::Summary;
use crate::registry::Registries;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How long figures are kept: a week.
const KEPT_HOURS: u64 = 7 * 24;
/// How often changed figures are saved.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);

/// Pulls and bytes.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tally {
    /// Manifest `GET`s answered 2xx (a multi-platform pull is two: the index and the image).
    pub pulls: u64,
    /// Bytes answered (manifests and blobs).
    pub bytes: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.pulls += other.pulls;
        self.bytes += other.bytes;
    }
}

/// One hour's figures.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Hour {
    pub users: BTreeMap<String, Tally>,
    pub repositories: BTreeMap<String, Tally>,
    /// Store answers by result (`hit`, `miss`, `stale`).
    pub store: BTreeMap<String, u64>,
}

/// The last `ratelimit-remaining` of an account, and when it was seen (seconds since the epoch).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PullsLeft {
    pub left: u64,
    pub seen_at: u64,
}

/// Everything kept.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Figures {
    /// By hour since the epoch.
    pub hours: BTreeMap<u64, Hour>,
    /// By `registry account`.
    pub pulls_left: BTreeMap<String, PullsLeft>,
}

/// The figures, in memory and (for a directory store) in its `usage.json`.
pub struct Usage {
    figures: Mutex<Figures>,
    file: Option<PathBuf>,
    changed: AtomicBool,
    /// To count `alpine` and `library/alpine` as the one repository they are.
    registries: Option<Registries>,
}

/// The name a request's figures go under: the user, or `anonymous`.
fn user_of(summary: &Summary) -> String {
    summary
        .user
        .clone()
        .unwrap_or_else(|| "anonymous".to_string())
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Usage {
    /// Figures kept in `file` (read back from it when it is there), or in memory only;
    /// repositories named as `registries`' upstreams know them.
    pub fn new(file: Option<PathBuf>, registries: Option<Registries>) -> Usage {
        let figures = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Usage {
            figures: Mutex::new(figures),
            file,
            changed: AtomicBool::new(false),
            registries,
        }
    }

    fn figures(&self) -> std::sync::MutexGuard<'_, Figures> {
        self.figures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One answered request.
    pub fn count(
        &self,
        get: bool,
        summary: &Summary,
        status: u16,
        bytes: Option<u64>,
        now: SystemTime,
    ) {
        let now = seconds(now);
        let tally = Tally {
            pulls: u64::from(get && summary.route == "manifest" && (200..300).contains(&status)),
            bytes: bytes.unwrap_or(0),
        };
        let mut figures = self.figures();
        let hour = figures.hours.entry(now / 3600).or_default();
        if let Some(repository) = &summary.repository {
            let registry = summary.upstream.as_deref().unwrap_or("");
            let repository = match &self.registries {
                Some(registries) => registries.upstream_repository(registry, repository),
                None => repository.clone(),
            };
            let name = format!("{registry}/{repository}");
            *hour.users.entry(user_of(summary)).or_default() += tally;
            *hour.repositories.entry(name).or_default() += tally;
        }
        if let Some(result) = summary.store {
            *hour.store.entry(result.to_string()).or_default() += 1;
        }
        let left = summary
            .ratelimit_remaining
            .as_deref()
            .and_then(crate::auth::accounts::pulls_left);
        if let (Some(left), Some(registry)) = (left, &summary.upstream) {
            let account = match &summary.user {
                Some(user) => format!("{registry} {user}"),
                None => format!("{registry} (anonymous, or the mirror's UPSTREAM_AUTH account)"),
            };
            figures
                .pulls_left
                .insert(account, PullsLeft { left, seen_at: now });
        }
        let newest = figures.hours.keys().next_back().copied().unwrap_or(0);
        let oldest = newest.saturating_sub(KEPT_HOURS);
        figures.hours.retain(|hour, _| *hour >= oldest);
        self.changed.store(true, Ordering::Relaxed);
    }

    /// The `/usage` page, now.
    pub fn page(&self) -> String {
        let kept = match &self.file {
            Some(file) => format!("Kept in {} across restarts.", file.display()),
            None => "Kept in memory only (a bucket store, or none): a restart starts them again."
                .to_string(),
        };
        render(&self.snapshot(), seconds(SystemTime::now()), &kept)
    }

    /// A copy of the figures.
    pub fn snapshot(&self) -> Figures {
        self.figures().clone()
    }

    /// Saves the figures when they changed since the last save: a new file, renamed over the
    /// old one, so that a crash leaves the old or the new, never half of one.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !self.changed.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&*self.figures()).map_err(std::io::Error::other)?;
        let temporary = file.with_extension(format!("json.{}", std::process::id()));
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, file)
    }
}

/// The totals of the hours since `since` (seconds since the epoch).
pub fn since(figures: &Figures, since: u64) -> Hour {
    let mut total = Hour::default();
    for (_, hour) in figures.hours.range(since / 3600..) {
        for (user, tally) in &hour.users {
            *total.users.entry(user.clone()).or_default() += *tally;
        }
        for (name, tally) in &hour.repositories {
            *total.repositories.entry(name.clone()).or_default() += *tally;
        }
        for (result, n) in &hour.store {
            *total.store.entry(result.clone()).or_default() += n;
        }
    }
    total
}

#[cfg(test)]
mod tests;

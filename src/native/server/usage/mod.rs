//! Who pulls what, kept for the owner's `/usage` page on `METRICS_LISTEN`'s address (never on the
//! public one): pulls and bytes per user and per repository by the hour for the last week, the
//! store's hits and misses, and the last `ratelimit-remaining` Docker Hub gave each account. The
//! figures are the metrics' own (counted where the metrics count), kept by the hour so that a day
//! and a week can be told apart, and saved in the store's directory (`usage.json`, replaced
//! whole by a rename) every few seconds when they changed, so that a restart keeps them.
//!
//! Nobody outside may grow them: only answers the mirror admitted and gave (a 2xx or 3xx) are
//! counted, so that refused logins and invented repositories add no row; each hour keeps at most
//! [`MAX_ROWS`] users and repositories, the rest under [`OTHERS`]; the file is written off the
//! request path, from a copy. Hours ahead of the clock (a clock that was once ahead) are dropped,
//! not kept in place of the present; a file that cannot be read is set aside, and said so.

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
pub const KEPT_HOURS: u64 = 7 * 24;
/// How often changed figures are saved.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);
/// The most users, and the most repositories, one hour keeps by name.
pub const MAX_ROWS: usize = 500;
/// Where an hour's figures go past [`MAX_ROWS`] names.
pub const OTHERS: &str = "(others)";
/// The longest name kept; longer ones are cut.
const MAX_NAME: usize = 256;

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
    /// Every answer given: pulls and bytes, of which `from_store` came from the store (a hit or a
    /// stale answer), and `counted` the manifest GETs the upstream answered (what Docker Hub
    /// counts against its pull limits; the rest of the pulls cost it none). Files written before
    /// these were kept read as zero.
    #[serde(default)]
    pub all: Tally,
    #[serde(default)]
    pub from_store: Tally,
    #[serde(default)]
    pub counted: u64,
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

/// `tally` added to `name`'s row of `rows`, or to [`OTHERS`] once the rows are full.
fn add_to(rows: &mut BTreeMap<String, Tally>, name: String, tally: Tally) {
    let mut name = name;
    if name.len() > MAX_NAME {
        let mut end = MAX_NAME;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    let full = rows.len() >= MAX_ROWS && !rows.contains_key(&name);
    let name = if full { OTHERS.to_string() } else { name };
    *rows.entry(name).or_default() += tally;
}

/// The figures in `file`: none when there is no file; when it cannot be read, none, and the
/// file set aside (`usage.json.unreadable-<seconds>`) with a warning, never silently replaced.
fn read_figures(file: &std::path::Path, now: u64) -> Figures {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Figures::default(),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "the usage figures cannot be read");
            return Figures::default();
        }
    };
    match serde_json::from_slice::<Figures>(&bytes) {
        Ok(mut figures) => {
            figures.hours.retain(|hour, _| *hour <= now / 3600);
            figures
        }
        Err(e) => {
            let aside = file.with_extension(format!("json.unreadable-{now}"));
            let kept = std::fs::rename(file, &aside).is_ok();
            tracing::warn!(
                file = %file.display(),
                error = %e,
                set_aside = %if kept { aside.display().to_string() } else { "no".into() },
                "the usage figures could not be read; counting starts again"
            );
            Figures::default()
        }
    }
}

impl Usage {
    /// Figures kept in `file` (read back from it when it is there), or in memory only;
    /// repositories named as `registries`' upstreams know them.
    pub fn new(file: Option<PathBuf>, registries: Option<Registries>) -> Usage {
        let now = seconds(SystemTime::now());
        let figures = file
            .as_ref()
            .map(|f| read_figures(f, now))
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

    /// One answered request; only what the mirror admitted and gave (2xx, 3xx) is counted.
    pub fn count(
        &self,
        get: bool,
        summary: &Summary,
        status: u16,
        bytes: Option<u64>,
        now: SystemTime,
    ) {
        // Refused or failed answers add no row: their names are whatever a client sent.
        let given = (200..400).contains(&status);
        let now = seconds(now);
        let tally = Tally {
            pulls: u64::from(get && summary.route == "manifest" && (200..300).contains(&status)),
            bytes: bytes.unwrap_or(0),
        };
        let mut figures = self.figures();
        let hour = figures.hours.entry(now / 3600).or_default();
        if let (true, Some(repository)) = (given, &summary.repository) {
            let registry = summary.upstream.as_deref().unwrap_or("");
            let repository = match &self.registries {
                Some(registries) => registries.upstream_repository(registry, repository),
                None => repository.clone(),
            };
            let name = format!("{registry}/{repository}");
            add_to(&mut hour.users, user_of(summary), tally);
            add_to(&mut hour.repositories, name, tally);
        }
        if let Some(result) = summary.store {
            *hour.store.entry(result.to_string()).or_default() += 1;
        }
        if given {
            hour.all += tally;
            if matches!(summary.store, Some("hit" | "stale")) {
                hour.from_store += tally;
            }
            hour.counted += u64::from(get && summary.counted_get);
        }
        let left = summary
            .ratelimit_remaining
            .as_deref()
            .and_then(crate::auth::accounts::pulls_left);
        let named = given || status == 429;
        if let (true, Some(left), Some(registry)) = (named, left, &summary.upstream) {
            let account = match &summary.user {
                Some(user) => format!("{registry} {user}"),
                None => format!("{registry} (anonymous, or the mirror's UPSTREAM_AUTH account)"),
            };
            figures
                .pulls_left
                .insert(account, PullsLeft { left, seen_at: now });
        }
        // A week back from the newest hour not ahead of the clock: an hour ahead of it (from a
        // clock that was once ahead) must not make the present look a week old.
        let this_hour = seconds(SystemTime::now()).max(now) / 3600;
        let newest = figures
            .hours
            .range(..=this_hour)
            .next_back()
            .map_or(0, |(h, _)| *h);
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
    /// old one, so that a crash leaves the old or the new, never half of one. Made from a copy,
    /// so that requests wait for no serialising; called off the async threads.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !self.changed.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let figures = self.snapshot();
        let bytes = serde_json::to_vec(&figures).map_err(std::io::Error::other)?;
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
        total.all += hour.all;
        total.from_store += hour.from_store;
        total.counted += hour.counted;
    }
    total
}

#[cfg(test)]
mod tests;

//! The directory store's index in memory: each object's size and last use, ordered by last use,
//! so that eviction takes the least recently used without a walk of the directory. Built once at
//! start (the store's lock makes it the only writer), kept as objects are written and served.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What the store holds: each object's size and last use, and the objects by last use.
#[derive(Default)]
pub struct Index {
    objects: HashMap<PathBuf, (u64, u128)>,
    by_use: BTreeSet<(u128, PathBuf)>,
    pub used: u64,
}

impl Index {
    pub fn insert(&mut self, path: PathBuf, size: u64, used_at: u128) {
        self.remove(&path);
        self.used += size;
        self.by_use.insert((used_at, path.clone()));
        self.objects.insert(path, (size, used_at));
    }

    pub fn remove(&mut self, path: &Path) {
        if let Some((size, used_at)) = self.objects.remove(path) {
            self.used = self.used.saturating_sub(size);
            self.by_use.remove(&(used_at, path.to_path_buf()));
        }
    }

    pub fn touch(&mut self, path: &Path, used_at: u128) {
        if let Some(&(size, _)) = self.objects.get(path) {
            self.insert(path.to_path_buf(), size, used_at);
        }
    }

    /// Takes the least recently used objects out until at most `target` bytes are held.
    pub fn evict_to(&mut self, target: u64) -> Vec<PathBuf> {
        let mut victims = Vec::new();
        while self.used > target {
            let Some((_, path)) = self.by_use.first().cloned() else {
                break;
            };
            self.remove(&path);
            victims.push(path);
        }
        victims
    }
}

/// Now, in nanoseconds since the epoch: the index's clock of last use.
pub fn now_nanos() -> u128 {
    nanos(SystemTime::now())
}

pub fn nanos(time: SystemTime) -> u128 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

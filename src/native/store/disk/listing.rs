//! What the owner's commands need of a directory store beyond serving: every object listed, an
//! object read without marking it used (so that `verify` and `usage` leave the order of eviction
//! as they found it), an object deleted.

use super::{objects, DiskStore};
use crate::store::Stored;
use std::time::SystemTime;

/// One stored object or record, as a listing gives it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its key (`v1/docker.io/blobs/sha256/…`).
    pub key: String,
    /// Its size in the store (for a directory, with its one-line header).
    pub bytes: u64,
    /// When it was last served (a directory) or written (a bucket).
    pub last_used: SystemTime,
    /// When it was stored: a file's birth time, where the file system keeps one; a bucket
    /// object's time.
    pub stored_at: Option<SystemTime>,
}

impl DiskStore {
    /// Every object and record under `objects/`.
    pub fn list(&self) -> Vec<Listed> {
        let root = self.root.join("objects");
        objects(&root)
            .into_iter()
            .filter_map(|(path, bytes, last_used)| {
                let key = path.strip_prefix(&root).ok()?.to_str()?.to_string();
                let stored_at = std::fs::metadata(&path).and_then(|m| m.created()).ok();
                Some(Listed {
                    key,
                    bytes,
                    last_used,
                    stored_at,
                })
            })
            .collect()
    }

    /// The object at `key`, positioned at its body, its last use left as it was.
    pub fn read_unmarked(&self, key: &str) -> Option<(std::fs::File, Stored)> {
        self.open_at(key).map(|(file, stored, _)| (file, stored))
    }

    /// Deletes the object at `key` (a reader that has it open reads on to its end).
    pub fn remove(&self, key: &str) -> std::io::Result<()> {
        let path = self
            .path(key)
            .ok_or_else(|| std::io::Error::other("not a key the store takes"))?;
        std::fs::remove_file(&path)?;
        self.index().remove(&path);
        Ok(())
    }
}

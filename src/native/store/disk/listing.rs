//! What the owner's commands need of a directory store beyond serving: every object listed, an
//! object read without marking it used (so that `verify` and `usage` leave the order of eviction
//! as they found it), an object deleted.

use super::{last_use, objects, DiskStore};
use crate::native::store::Listed;
use crate::store::Stored;

impl DiskStore {
    /// Every object and record under `objects/`.
    pub fn list(&self) -> Vec<Listed> {
        let root = self.root.join("objects");
        objects(&root)
            .into_iter()
            .filter_map(|(path, meta)| {
                let key = path.strip_prefix(&root).ok()?.to_str()?.to_string();
                Some(Listed {
                    key,
                    bytes: meta.len(),
                    last_used: last_use(&meta),
                    stored_at: meta.created().ok(),
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

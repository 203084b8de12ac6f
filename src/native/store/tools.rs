//! What the owner's commands (`warm`, `purge`, `verify`, `usage`) need of the store beyond
//! serving, whichever backend `CACHE` names: opened beside a running server, every object listed,
//! an object read without marking it used, an object deleted, and the records written in the
//! background waited for before the command exits.

use super::{Backend, ContentStore};
use crate::native::store::disk::{file_body, DiskStore};
use crate::store::{StoreSetting, Stored};
use crate::Config;
use std::sync::Arc;
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

impl ContentStore {
    /// The store `CACHE` names (the local server's default directory when it is unset), opened
    /// for a command: a directory without the server's lock (see `DiskStore::open_beside_server`).
    /// An error when `CACHE` names no store the command can reach (`none`, `edge`).
    pub fn open_for_command(config: &mut Config) -> Result<Arc<ContentStore>, String> {
        let default_dir = super::disk::default_dir();
        if config.store == StoreSetting::Unset && default_dir.is_none() {
            return Err("CACHE is unset and there is no $HOME".into());
        }
        let opened = ContentStore::open_with(config, default_dir, DiskStore::open_beside_server)?;
        opened.ok_or_else(|| match config.store {
            StoreSetting::Edge => "CACHE=edge is Fastly's cache, out of reach from here: warm it \
                 through the edge (scripts/warm-through)"
                .to_string(),
            _ => "CACHE=none names no store: set CACHE=file:///path or s3://bucket/prefix"
                .to_string(),
        })
    }

    /// Where the store is, for messages.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Disk(disk) => disk.root().display().to_string(),
            Backend::Bucket(bucket) => bucket.describe(),
        }
    }

    /// Every object and record the store holds.
    pub async fn list(&self) -> Result<Vec<Listed>, String> {
        match &self.backend {
            Backend::Disk(disk) => {
                let disk = disk.clone();
                tokio::task::spawn_blocking(move || disk.list())
                    .await
                    .map_err(|e| e.to_string())
            }
            Backend::Bucket(bucket) => bucket.list().await,
        }
    }

    /// The object at `key` and its body, its last use left as it was.
    pub async fn read_unmarked(&self, key: &str) -> Option<(reqwest::Body, Stored)> {
        match &self.backend {
            Backend::Disk(disk) => {
                let (disk, key) = (disk.clone(), key.to_string());
                let (file, stored) = tokio::task::spawn_blocking(move || disk.read_unmarked(&key))
                    .await
                    .ok()
                    .flatten()?;
                Some((file_body(file), stored))
            }
            Backend::Bucket(bucket) => {
                let stored = bucket.head_object(key).await?;
                Some((bucket.body(key).await.ok()?, stored))
            }
        }
    }

    /// Deletes the object at `key`.
    pub async fn remove(&self, key: &str) -> Result<(), String> {
        match &self.backend {
            Backend::Disk(disk) => {
                let (disk, key) = (disk.clone(), key.to_string());
                tokio::task::spawn_blocking(move || disk.remove(&key))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
            Backend::Bucket(bucket) => bucket.remove(key).await,
        }
    }

    /// Waits for the records written in the background ([`ContentStore::keep`]).
    pub async fn settle(&self) {
        self.records.close();
        self.records.wait().await;
        self.records.reopen();
    }
}

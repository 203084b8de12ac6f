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
    /// An error when `CACHE` names no store the command can reach (`none`, `edge`), or a
    /// directory that holds no store, unless the command `creates` one (`warm`, which says so: a
    /// mistyped `CACHE` must not be made and reported clean). Run as root on a directory another
    /// user owns (a systemd unit's `DynamicUser`, a container's user), what the command makes is
    /// given to that owner, so that it leaves nothing the server cannot use (`DiskStore::owner`;
    /// root keeps its own rights, which a `DynamicUser`'s store under `/var/lib/private`, a
    /// directory of mode 0700, needs).
    pub fn open_for_command(
        config: &mut Config,
        creates: bool,
    ) -> Result<Arc<ContentStore>, String> {
        let default_dir = super::disk::default_dir();
        let dir = match &config.store {
            StoreSetting::Directory(dir) => Some(std::path::PathBuf::from(dir)),
            StoreSetting::Unset => match &default_dir {
                Some(dir) => Some(dir.clone()),
                None => return Err("CACHE is unset and there is no $HOME".into()),
            },
            _ => None,
        };
        if let Some(dir) = &dir {
            if !dir.join("objects").is_dir() {
                if !creates {
                    return Err(format!(
                        "there is no store at {} (no objects/ in it): is CACHE right?",
                        dir.display()
                    ));
                }
                eprintln!("making a new store at {}", dir.display());
            }
        }
        let opened = ContentStore::open_with(config, default_dir, DiskStore::open_beside_server)?;
        if let Some(Backend::Disk(disk)) = opened.as_ref().map(|store| &store.backend) {
            if let Some((uid, gid)) = disk.owner() {
                eprintln!(
                    "acting as the owner of {}: what this command writes there belongs to uid \
                     {uid}, gid {gid}, as the server's own writes do",
                    disk.root().display()
                );
            }
        }
        opened.ok_or_else(|| match config.store {
            StoreSetting::Edge => "CACHE=edge is Fastly's cache, out of reach from here: warm it \
                 through the edge (scripts/warm-through)"
                .to_string(),
            _ => "CACHE=none names no store: set CACHE=file:///path or s3://bucket/prefix"
                .to_string(),
        })
    }

    /// Deletes the temporary files this process made in a directory store (an interrupted
    /// command's partial objects); a bucket's unfinished uploads are the bucket's lifecycle
    /// rule's to abort.
    pub fn remove_own_temporary_files(&self) {
        if let Backend::Disk(disk) = &self.backend {
            disk.remove_temporary_files_of(std::process::id());
        }
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

    /// Writes a small object, reads it back and deletes it: what `doctor` asks of a store, with
    /// what refused it.
    pub async fn probe(&self) -> Result<(), String> {
        let key = format!("doctor/probe-{}", std::process::id());
        let value = b"registry-mirror doctor";
        match &self.backend {
            Backend::Disk(disk) => {
                let (disk, key) = (disk.clone(), key.clone());
                tokio::task::spawn_blocking(move || disk.write_record(&key, value))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot write: {e}"))?
            }
            Backend::Bucket(bucket) => bucket
                .write_record(&key, value)
                .await
                .map_err(|e| format!("cannot write: {e}"))?,
        }
        let back = self.read_record(&key).await;
        let removed = self.remove(&key).await;
        if back.as_deref() != Some(&value[..]) {
            return Err(format!("wrote {key} but could not read it back"));
        }
        removed.map_err(|e| format!("cannot delete {key}: {e}"))
    }

    /// Waits for the records written in the background ([`ContentStore::keep`]).
    pub async fn settle(&self) {
        self.records.close();
        self.records.wait().await;
        self.records.reopen();
    }
}

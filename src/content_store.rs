//! The native runtimes' content store, whichever backend `CACHE` names: a directory
//! (`disk_store`) or a bucket (`bucket_store`). The driver (`drive`) uses this and nothing below
//! it; the core (`store`) decides what goes in and comes out.

use crate::bucket_store::{object_body, BucketStore};
use crate::disk_store::{file_body, DiskStore};
use crate::in_flight::{Claim, InFlight};
use crate::store::{StoreSetting, Stored};
use crate::storing_body::Sink;
use crate::Config;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

pub struct ContentStore {
    backend: Backend,
    in_flight: InFlight,
}

enum Backend {
    Disk(Arc<DiskStore>),
    Bucket(BucketStore),
}

/// A stored object a lookup found, held until it is served.
pub enum Found {
    File(std::fs::File),
    Object(object_store::GetResult),
}

impl Found {
    pub fn into_body(self) -> reqwest::Body {
        match self {
            Found::File(file) => file_body(file),
            Found::Object(object) => object_body(object),
        }
    }
}

impl ContentStore {
    /// The store `config` asks for, opened; `default_dir` is where it goes when `CACHE` is unset
    /// (the local server's default), `None` to have no store then. Leaves `config.store` saying
    /// what was opened, so that the core asks for lookups only when there is a store.
    pub fn open_configured(
        config: &mut Config,
        default_dir: Option<PathBuf>,
    ) -> Result<Option<Arc<ContentStore>>, String> {
        if config.store == StoreSetting::Unset {
            config.store = match default_dir {
                Some(dir) => StoreSetting::Directory(dir.display().to_string()),
                None => StoreSetting::None,
            };
        }
        let backend = match &config.store {
            StoreSetting::Directory(dir) => DiskStore::open(Path::new(dir), config.store_max_bytes)
                .map(Backend::Disk)
                .map_err(|e| format!("CACHE: cannot use {dir}: {e}"))?,
            StoreSetting::Bucket { bucket, prefix } => {
                Backend::Bucket(BucketStore::open(bucket, prefix)?)
            }
            StoreSetting::None | StoreSetting::Unset => return Ok(None),
        };
        Ok(Some(Arc::new(ContentStore {
            backend,
            in_flight: InFlight::default(),
        })))
    }

    /// The object at `key`, opened, with what the core needs of it.
    pub async fn open_object(&self, key: &str) -> Option<(Found, Stored)> {
        match &self.backend {
            Backend::Disk(disk) => disk
                .open_object(key)
                .map(|(file, stored)| (Found::File(file), stored)),
            Backend::Bucket(bucket) => bucket
                .open_object(key)
                .await
                .map(|(object, stored)| (Found::Object(object), stored)),
        }
    }

    /// For a miss: the claim to fetch `key` upstream, or what to wait on while another request
    /// holds it.
    pub fn claim(&self, key: &str) -> Result<Claim, watch::Receiver<()>> {
        self.in_flight.claim(key)
    }

    /// Where a relayed object of `length` bytes goes while it is checked.
    pub fn begin(&self, key: &str, media_type: Option<&str>, length: u64) -> Option<Box<dyn Sink>> {
        match &self.backend {
            Backend::Disk(disk) => disk
                .begin(key, media_type)
                .map(|w| Box::new(w) as Box<dyn Sink>),
            Backend::Bucket(bucket) => bucket.begin(key, media_type, length),
        }
    }

    /// The small record at `key`.
    pub async fn read_record(&self, key: &str) -> Option<Vec<u8>> {
        match &self.backend {
            Backend::Disk(disk) => {
                let (disk, key) = (disk.clone(), key.to_string());
                tokio::task::spawn_blocking(move || disk.read_record(&key))
                    .await
                    .ok()
                    .flatten()
            }
            Backend::Bucket(bucket) => bucket.read_record(key).await,
        }
    }

    /// Keeps a small record at `key`.
    pub async fn write_record(&self, key: &str, value: &[u8]) {
        let result = match &self.backend {
            Backend::Disk(disk) => {
                let (disk, key, value) = (disk.clone(), key.to_string(), value.to_vec());
                tokio::task::spawn_blocking(move || disk.write_record(&key, &value))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
            Backend::Bucket(bucket) => bucket.write_record(key, value).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "the store could not keep a record");
        }
    }
}

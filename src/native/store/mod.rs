//! The native runtimes' content store, whichever backend `CACHE` names: a directory
//! (`disk_store`) or a bucket (`bucket_store`). The driver (`drive`) uses this and nothing below
//! it; the core (`store`) decides what goes in and comes out.

pub mod aws_chain;
pub mod bucket;
pub mod bucket_clients;
pub mod catch_up;
pub mod complaints;
pub mod disk;
pub mod growing;
pub mod in_flight;
pub mod resume;
pub mod storing_body;
mod tools;

pub use tools::Listed;

use crate::native::store::bucket::BucketStore;
use crate::native::store::disk::{file_body, DiskStore};
use crate::native::store::growing::Growing;
use crate::native::store::in_flight::{Claim, InFlight, Waiting};
use crate::native::store::resume::Resume;
use crate::native::store::storing_body::storing_body;
use crate::store::{StoreSetting, Stored};
use crate::Config;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A directory's object filled from `upstream` by a task of its own, published to those waiting
/// on `claim` (held until the fill ends); the first client's body reads it as it grows.
async fn fill_growing(
    disk: &Arc<DiskStore>,
    write: crate::mirror::StoreWrite,
    upstream: reqwest::Body,
    claim: Option<Claim>,
    resume: Option<Resume>,
) -> reqwest::Body {
    let (disk, key) = (disk.clone(), write.key.clone());
    let media_type = write.media_type.clone();
    let begun = tokio::task::spawn_blocking(move || disk.begin(&key, media_type.as_deref()))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
    let writing = match begun {
        Ok(writing) => writing,
        Err(e) => {
            complaints::could_not_keep(&e);
            return upstream;
        }
    };
    let started = growing::start(writing, upstream, write.verifier, write.media_type, resume);
    let (growing, done) = match started {
        Ok(started) => started,
        Err(upstream) => return upstream,
    };
    if let Some(claim) = claim {
        claim.publish(growing.clone());
        tokio::spawn(async move {
            let _ = done.await;
            drop(claim);
        });
    }
    growing.body()
}

/// How often a serving directory store looks for abandoned temporary files.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

pub struct ContentStore {
    backend: Backend,
    in_flight: InFlight,
    /// The records being written in the background, for a command to wait for before it exits.
    records: tokio_util::task::TaskTracker,
}

enum Backend {
    Disk(Arc<DiskStore>),
    Bucket(BucketStore),
}

/// A stored object a lookup found, held until it is served: a file held open (so that eviction
/// cannot take it), a bucket's object whose body's read the lookup began, or a bucket object's
/// key (a lookup that serves no bytes: a redirect, a refusal, a `HEAD`).
pub enum Found {
    File(std::fs::File),
    Reading(reqwest::Body),
    Object(String),
    /// An object being filled by another request, read as it grows (a directory store).
    Growing(Arc<Growing>),
}

/// The answer when the store gives no URL for a stored object.
pub fn no_signed_url() -> http::Response<reqwest::Body> {
    let e = crate::registry::errors::RegistryError::new(
        crate::registry::errors::ErrorCode::Unavailable,
        "the store gave no URL for a stored blob",
    );
    e.into_response().map(reqwest::Body::from)
}

impl ContentStore {
    /// The store `config` asks for, opened; `default_dir` is where it goes when `CACHE` is unset
    /// (the local server's default), `None` to have no store then. Leaves `config.store` saying
    /// what was opened, so that the core asks for lookups only when there is a store.
    pub fn open_configured(
        config: &mut Config,
        default_dir: Option<PathBuf>,
    ) -> Result<Option<Arc<ContentStore>>, String> {
        ContentStore::open_with(config, default_dir, DiskStore::open)
    }

    /// The store `config` names, a directory opened with `open_dir` (with the server's lock, or
    /// beside a server: `tools`).
    fn open_with(
        config: &mut Config,
        default_dir: Option<PathBuf>,
        open_dir: fn(&Path, u64) -> std::io::Result<Arc<DiskStore>>,
    ) -> Result<Option<Arc<ContentStore>>, String> {
        if config.store == StoreSetting::Unset {
            config.store = match default_dir {
                Some(dir) => StoreSetting::Directory(dir.display().to_string()),
                None => StoreSetting::None,
            };
        }
        let backend = match &config.store {
            StoreSetting::Directory(dir) => open_dir(Path::new(dir), config.store_max_bytes)
                .map(Backend::Disk)
                .map_err(|e| format!("CACHE: cannot use {dir}: {e}"))?,
            StoreSetting::Bucket { bucket, prefix } => {
                Backend::Bucket(BucketStore::open(bucket, prefix)?)
            }
            StoreSetting::None | StoreSetting::Unset | StoreSetting::Edge => return Ok(None),
        };
        // One large object must not empty a directory: larger ones are relayed, not kept.
        if let Backend::Disk(disk) = &backend {
            let largest = disk.largest_object();
            config.store_max_object =
                Some(config.store_max_object.map_or(largest, |m| m.min(largest)));
        }
        Ok(Some(Arc::new(ContentStore::with_backend(backend))))
    }

    fn with_backend(backend: Backend) -> ContentStore {
        ContentStore {
            backend,
            in_flight: InFlight::default(),
            records: tokio_util::task::TaskTracker::new(),
        }
    }

    /// The object at `key`, opened, with what the core needs of it; a bucket's body is begun
    /// with the lookup when `opens_body` (see `bucket`).
    pub async fn open_object(&self, key: &str, opens_body: bool) -> Option<(Found, Stored)> {
        match &self.backend {
            Backend::Disk(disk) => {
                // File system calls (open, read the header, mark the use) off the async threads.
                let (disk, key) = (disk.clone(), key.to_string());
                tokio::task::spawn_blocking(move || disk.open_object(&key))
                    .await
                    .ok()
                    .flatten()
                    .map(|(file, stored)| (Found::File(file), stored))
            }
            Backend::Bucket(bucket) if opens_body => bucket
                .open_object(key)
                .await
                .map(|(body, stored)| (Found::Reading(body), stored)),
            Backend::Bucket(bucket) => bucket
                .head_object(key)
                .await
                .map(|stored| (Found::Object(key.to_string()), stored)),
        }
    }

    /// The body of what a lookup found. When it cannot be read any more (an object gone since
    /// its lookup), the body fails at once: the response is cut short and the client sees it.
    pub async fn body(&self, found: Found) -> reqwest::Body {
        let body = match (found, &self.backend) {
            (Found::File(file), _) => Ok(file_body(file)),
            (Found::Reading(body), _) => Ok(body),
            (Found::Growing(growing), _) => Ok(growing.body()),
            (Found::Object(key), Backend::Bucket(bucket)) => bucket.body(&key).await,
            (Found::Object(_), Backend::Disk(_)) => Err(std::io::Error::other(
                "a bucket's object in a directory store",
            )),
        };
        body.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "a stored object could not be read");
            reqwest::Body::wrap_stream(futures_util::stream::iter([Err::<bytes::Bytes, _>(e)]))
        })
    }

    /// For a miss: the claim to fetch `key` upstream, or what to wait on while another request
    /// holds it.
    fn claim(&self, key: &str) -> Result<Claim, Waiting> {
        self.in_flight.claim(key)
    }

    /// The body of a relayed object the store keeps as it passes: in a directory, filled once
    /// by a task of its own that every client of the object reads as it grows (`growing`); in a
    /// bucket, uploaded as the client's relay passes (`storing_body`). The upstream's body as it
    /// is when the store cannot take it.
    pub async fn relay_and_store(
        &self,
        write: crate::mirror::StoreWrite,
        upstream: reqwest::Body,
        claim: Option<Claim>,
        resume: Option<Resume>,
    ) -> reqwest::Body {
        match &self.backend {
            Backend::Disk(disk) => fill_growing(disk, write, upstream, claim, resume).await,
            Backend::Bucket(bucket) => {
                let media_type = write.media_type.as_deref();
                match bucket.begin(&write.key, media_type, write.verifier.length()) {
                    Some(sink) => storing_body(upstream, sink, write.verifier, claim, resume),
                    None => upstream,
                }
            }
        }
    }

    /// Copies a body into the store, checked by `verifier` (a bucket only: a directory is never
    /// where clients are sent); whether it is stored now.
    pub async fn fill(
        &self,
        key: &str,
        body: reqwest::Body,
        verifier: crate::store::verify::Verifier,
        deadline: tokio::time::Instant,
    ) -> bool {
        let filled = match &self.backend {
            Backend::Bucket(bucket) => bucket.fill(key, body, verifier, deadline).await,
            Backend::Disk(_) => Err("a directory store is not filled for redirects".into()),
        };
        if let Err(e) = &filled {
            tracing::warn!(error = %e, "a blob could not be copied into the store");
        }
        filled.is_ok()
    }

    /// A URL clients may fetch the object at `key` from (a bucket's signed URL).
    async fn signed_url(&self, key: &str) -> Option<String> {
        match &self.backend {
            Backend::Bucket(bucket) => bucket.signed_url(key).await,
            Backend::Disk(_) => None,
        }
    }

    /// The object at `key`, opened (its body begun when `opens_body`); or, on a miss, the claim
    /// to fetch it. When another request is fetching it already, waits for that one (at most
    /// `wait`, and only while its fill moves: `in_flight`), then looks again; still missing, it is
    /// fetched without the claim. A lookup that `opens_body` is given an object being filled
    /// (`growing`) to read as it grows; one that does not (a command confirming what it stored)
    /// waits for the fill's end, since a growing object is not stored yet.
    pub async fn look_up(
        &self,
        key: &str,
        wait: std::time::Duration,
        opens_body: bool,
    ) -> (Option<(Found, Stored)>, Option<Claim>) {
        if let Some(found) = self.open_object(key, opens_body).await {
            return (Some(found), None);
        }
        let read_as_it_grows = |filling: Arc<Growing>| {
            let stored = filling.stored();
            (Some((Found::Growing(filling), stored)), None)
        };
        match self.claim(key) {
            Ok(claim) => (None, Some(claim)),
            Err(fetching) => {
                if let Some(filling) = fetching.growing().filter(|_| opens_body) {
                    return read_as_it_grows(filling);
                }
                let waited = fetching.clone();
                fetching.wait(wait, opens_body).await;
                if let Some(filling) = waited.growing().filter(|_| opens_body) {
                    return read_as_it_grows(filling);
                }
                match self.open_object(key, opens_body).await {
                    Some(found) => (Some(found), None),
                    None => (None, self.claim(key).ok()),
                }
            }
        }
    }

    /// `head` (a `307`) sending the client to a signed URL of the object (through the
    /// `STORAGE_RELAY` that serves the store's host, if one does).
    pub async fn signed_redirect(
        &self,
        mut head: http::response::Parts,
        signed: &crate::mirror::SignedObject,
        mirror: &crate::Mirror,
    ) -> http::Response<reqwest::Body> {
        let url = self.signed_url(&signed.key).await;
        let location = url.map(|url| signed.location(mirror, &url));
        match location.and_then(|u| http::HeaderValue::from_str(&u).ok()) {
            Some(location) => {
                head.headers.insert(http::header::LOCATION, location);
                http::Response::from_parts(head, reqwest::Body::from(Vec::new()))
            }
            None => no_signed_url(),
        }
    }

    /// The bytes a directory store holds (a bucket's size is the bucket's to tell).
    pub fn used_bytes(&self) -> Option<u64> {
        match &self.backend {
            Backend::Disk(disk) => Some(disk.used()),
            Backend::Bucket(_) => None,
        }
    }

    /// Sweeps a directory store's abandoned temporary files every [`SWEEP_EVERY`] while the
    /// server runs (a command killed mid-write leaves its partial object in `tmp/`), saying what
    /// it freed. A bucket's unfinished uploads are its lifecycle rule's to abort.
    pub fn sweep_while_serving(self: &Arc<Self>) {
        let Backend::Disk(disk) = &self.backend else {
            return;
        };
        let disk = disk.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let disk = disk.clone();
                let swept = tokio::task::spawn_blocking(move || disk.sweep_abandoned()).await;
                if let Ok((bytes, files @ 1..)) = swept {
                    tracing::info!(
                        files,
                        bytes,
                        "abandoned temporary files deleted from the store"
                    );
                }
            }
        });
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

    /// Keeps the records the core asked for, in the background (they wait for nobody).
    pub fn keep(self: &Arc<Self>, records: &[crate::store::Record]) {
        for record in records {
            let (store, record) = (self.clone(), record.clone());
            self.records
                .spawn(async move { store.write_record(&record.key, &record.value).await });
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
            complaints::could_not_keep_record(&e);
        }
    }
}

//! The content store in S3-compatible object storage (`CACHE=s3://bucket/prefix`: AWS S3, MinIO,
//! R2, …), shared by every instance that names the same bucket, through the `object_store` crate.
//! The core decides what is stored and served (`store`); this module only reads and writes.
//!
//! Credentials, region and endpoint come from the standard AWS variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`), and without a
//! key in them from the standard AWS chain (`aws_chain`: profiles, SSO, web identity, container,
//! instance); an endpoint whose URL says `http` is spoken to in plain HTTP. An object appears
//! only when its upload is complete (a single `PUT`, or a multipart upload completed only after the core's verifier has
//! accepted every byte), so nothing half-written is ever served. Size is bounded by the bucket's
//! lifecycle rule (README), not here. The media type travels as the object's `Content-Type`.
//!
//! The bucket must never make a pull slower than the upstream alone: a lookup has
//! [`LOOKUP_TIMEOUT`] in all and one retry, and then counts as a miss (the pull goes upstream);
//! an upload that stops taking bytes for [`STALLED_UPLOAD`] is dropped, and the client's relay
//! goes on without it. `object_store`'s own defaults (30 s a request, ten retries over three
//! minutes) would hold a pull for minutes behind a stalled endpoint.
//!
//! A stored body is bounded by inactivity, never by its length: a client reading a 100 MiB layer
//! at 10 MB/s takes ten seconds, and a whole-request timeout would cut it. Its read starts with
//! the lookup (a `GET`, when the core says the bytes will be served), so that a bucket too busy
//! to start it in time makes a miss, not a cut response; once started, a read that takes no
//! bytes for [`STALLED_READ`] or fails is asked again from where it stopped (`object_store`
//! resumes a body with a `Range` request, checking the object's ETag), up to three times
//! (`bucket_clients`).

pub use crate::native::store::bucket_clients::STALLED_READ;
use crate::native::store::bucket_clients::{Clients, LOOKUP_TIMEOUT};
use crate::native::store::in_flight::Claim;
use crate::native::store::storing_body::{Sink, Stall};
use crate::store::Stored;
use bytes::Bytes;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, GetOptions, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, WriteMultipart,
};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::PollSender;

/// Parts of a multipart upload (S3's smallest part but the last is 5 MiB); an object no larger is
/// sent with one `PUT`.
const PART_SIZE: usize = 5 * 1024 * 1024;
/// How long a signed URL of a stored object is good for (S3 checks it when a download starts).
const SIGNED_URL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);
/// Chunks waiting for the upload; past this many the relay waits for the store.
const QUEUED_CHUNKS: usize = 16;
/// Parts uploaded at once, for one object.
const PARTS_IN_FLIGHT: usize = 2;
/// How long an upload may take no bytes before the relay drops it.
pub const STALLED_UPLOAD: Duration = Duration::from_secs(5);
/// A bucket (and a prefix in it) holding stored objects.
pub struct BucketStore {
    /// For lookups: short timeouts, one retry.
    lookups: AmazonS3,
    /// For stored bodies: no bound on the whole request, a bound on inactivity, resumed reads.
    bodies: AmazonS3,
    /// For writes: room for a part's upload, a few retries.
    s3: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
}

/// `future`, or `None` once `LOOKUP_TIMEOUT` has passed.
async fn within_lookup_time<T>(future: impl Future<Output = Option<T>>) -> Option<T> {
    tokio::time::timeout(LOOKUP_TIMEOUT, future)
        .await
        .ok()
        .flatten()
}

impl BucketStore {
    /// `bucket` and `prefix` from `CACHE=s3://bucket/prefix`; the rest from the environment.
    pub fn open(bucket: &str, prefix: &str) -> Result<BucketStore, String> {
        let Clients {
            lookups,
            bodies,
            writes: s3,
        } = Clients::open(bucket)?;
        Ok(BucketStore {
            lookups,
            bodies,
            s3: Arc::new(s3),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    fn path(&self, key: &str) -> Option<Path> {
        let full = match self.prefix.is_empty() {
            true => key.to_string(),
            false => format!("{}/{key}", self.prefix),
        };
        Path::parse(full).ok()
    }

    /// What the core needs of the object at `key`, from a `HEAD`: its body is fetched only when
    /// it is served ([`BucketStore::body`]), never for a lookup that ends in a redirect to the
    /// bucket or in a refusal.
    pub async fn head_object(&self, key: &str) -> Option<Stored> {
        let options = GetOptions {
            head: true,
            ..Default::default()
        };
        let path = self.path(key)?;
        let found =
            within_lookup_time(async { self.lookups.get_opts(&path, options).await.ok() }).await?;
        Some(stored_of(&found.attributes, found.meta.size))
    }

    /// The object at `key` with its body's read begun, when it starts within [`LOOKUP_TIMEOUT`]:
    /// a lookup whose bytes will be served. Not found, or too slow to start: a miss.
    pub async fn open_object(&self, key: &str) -> Option<(reqwest::Body, Stored)> {
        let path = self.path(key)?;
        let found = within_lookup_time(async { self.bodies.get(&path).await.ok() }).await?;
        let stored = stored_of(&found.attributes, found.meta.size);
        Some((streamed(found), stored))
    }

    /// The body of the object at `key`, streamed, for a lookup that did not begin it.
    pub async fn body(&self, key: &str) -> std::io::Result<reqwest::Body> {
        let path = self
            .path(key)
            .ok_or_else(|| std::io::Error::other("not a key the store takes"))?;
        let found = tokio::time::timeout(STALLED_READ, self.bodies.get(&path))
            .await
            .map_err(|_| std::io::Error::other("the bucket did not answer in time"))?
            .map_err(std::io::Error::other)?;
        Ok(streamed(found))
    }

    /// The small record at `key`, at most `store::MAX_RECORD` bytes.
    pub async fn read_record(&self, key: &str) -> Option<Vec<u8>> {
        let path = self.path(key)?;
        within_lookup_time(async {
            let found = self.lookups.get(&path).await.ok()?;
            if found.meta.size > crate::store::MAX_RECORD as u64 {
                return None;
            }
            found.bytes().await.ok().map(|b| b.to_vec())
        })
        .await
    }

    /// Keeps a small record at `key`, replacing the one there.
    pub async fn write_record(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let path = self.path(key).ok_or("not a key the store takes")?;
        let payload = PutPayload::from(Bytes::copy_from_slice(value));
        self.s3
            .put(&path, payload)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// A new object at `key` of `length` bytes, uploaded as it is written, visible only after
    /// [`Sink::commit`]; the upload finishes in the background.
    pub fn begin(&self, key: &str, media_type: Option<&str>, length: u64) -> Option<Box<dyn Sink>> {
        let upload = self.start_upload(key, media_type, length)?;
        // The claim on the key, handed over at the commit, is held until the upload is done, so
        // that those waiting for the object find it when they look again.
        let (hand_over, claim) = oneshot::channel::<Option<Claim>>();
        tokio::spawn(async move {
            if let Ok(Err(e)) = upload.done.await {
                crate::native::store::complaints::could_not_keep(&e);
            }
            drop(claim.await);
        });
        Some(Box::new(BucketSink {
            data: PollSender::new(upload.data),
            verdict: Some(upload.verdict),
            claim: Some(hand_over),
            stall: Stall::new(STALLED_UPLOAD),
        }))
    }

    /// Copies `body` into the bucket at `key`, checked by `verifier`; done when the object is
    /// stored (or not).
    pub async fn fill(
        &self,
        key: &str,
        mut body: reqwest::Body,
        mut verifier: crate::store::verify::Verifier,
        deadline: tokio::time::Instant,
    ) -> Result<(), String> {
        use http_body_util::BodyExt;
        let length = verifier.length();
        let upload = self
            .start_upload(key, None, length)
            .ok_or("not a key the store takes")?;
        let (started, mut copied) = (tokio::time::Instant::now(), 0u64);
        loop {
            let Ok(frame) = tokio::time::timeout_at(deadline, body.frame()).await else {
                return Err(COPY_TOO_SLOW.into());
            };
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| e.to_string())?;
            if let Ok(chunk) = frame.into_data() {
                copied += chunk.len() as u64;
                if will_miss(deadline, started, copied, length) {
                    return Err(COPY_TOO_SLOW.into());
                }
                verifier.update(&chunk);
                upload
                    .data
                    .send(chunk)
                    .await
                    .map_err(|_| "the upload stopped")?;
            }
        }
        verifier.finish().map_err(|mismatch| mismatch.to_string())?;
        let _ = upload.verdict.send(());
        drop(upload.data);
        upload.done.await.map_err(|e| e.to_string())?
    }

    /// A URL of the object at `key` that anyone holding it may `GET` for the next hour.
    pub async fn signed_url(&self, key: &str) -> Option<String> {
        use object_store::signer::Signer;
        let path = self.path(key)?;
        let url = self
            .s3
            .signed_url(http::Method::GET, &path, SIGNED_URL_LIFETIME)
            .await
            .ok()?;
        Some(url.to_string())
    }

    fn start_upload(&self, key: &str, media_type: Option<&str>, length: u64) -> Option<Upload> {
        let path = self.path(key)?;
        let mut attributes = Attributes::new();
        if let Some(media_type) = media_type {
            attributes.insert(Attribute::ContentType, media_type.to_string().into());
        }
        let (data, chunks) = mpsc::channel(QUEUED_CHUNKS);
        let (verdict, accepted) = oneshot::channel();
        let s3 = self.s3.clone();
        let done = tokio::spawn(async move {
            match length <= PART_SIZE as u64 {
                true => put_whole(&s3, &path, attributes, chunks, accepted).await,
                false => put_in_parts(&s3, &path, attributes, chunks, accepted).await,
            }
        });
        Some(Upload {
            data,
            verdict,
            done,
        })
    }
}

/// What the core needs of a stored object: its length, and the media type kept as its
/// `Content-Type`.
fn stored_of(attributes: &Attributes, length: u64) -> Stored {
    let media_type = attributes
        .get(&Attribute::ContentType)
        .map(|t| t.to_string())
        .filter(|t| t != "application/octet-stream");
    Stored { length, media_type }
}

/// A found object's body as a client's response body (an error mid-way, past the retries, cuts
/// it short).
fn streamed(found: object_store::GetResult) -> reqwest::Body {
    use futures_util::TryStreamExt;
    reqwest::Body::wrap_stream(found.into_stream().map_err(std::io::Error::other))
}

/// Why a copy was given up (its upload aborted): the client goes to the upstream's storage.
const COPY_TOO_SLOW: &str = "the copy would not end before COPY_TIMEOUT_SECS";

/// Whether a copy that has taken `copied` of `length` bytes since `started` will, at its pace so
/// far, end after `deadline`: judged from its second second on, so that it is given up early
/// rather than at the deadline (a layer too large to copy in time wastes seconds, not the whole
/// wait, on each pull until `warm` stores it).
fn will_miss(
    deadline: tokio::time::Instant,
    started: tokio::time::Instant,
    copied: u64,
    length: u64,
) -> bool {
    let elapsed = started.elapsed();
    if elapsed < Duration::from_secs(2) {
        return false;
    }
    let pace = copied as f64 / elapsed.as_secs_f64();
    let left = length.saturating_sub(copied) as f64 / pace.max(1.0);
    started + elapsed + Duration::from_secs_f64(left.min(86400.0)) > deadline
}

/// An upload under way: its chunks, the verdict that completes it (dropped: aborted), and its end.
struct Upload {
    data: mpsc::Sender<Bytes>,
    verdict: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<Result<(), String>>,
}

/// A small object: gathered, then one `PUT` once the verdict is in.
async fn put_whole(
    s3: &AmazonS3,
    path: &Path,
    attributes: Attributes,
    mut chunks: mpsc::Receiver<Bytes>,
    accepted: oneshot::Receiver<()>,
) -> Result<(), String> {
    let mut whole = Vec::new();
    while let Some(chunk) = chunks.recv().await {
        whole.extend_from_slice(&chunk);
    }
    if accepted.await.is_err() {
        return Ok(());
    }
    let options = PutOptions {
        attributes,
        ..Default::default()
    };
    s3.put_opts(path, PutPayload::from(whole), options)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// A large object: a multipart upload, completed on the verdict, aborted without it.
async fn put_in_parts(
    s3: &AmazonS3,
    path: &Path,
    attributes: Attributes,
    mut chunks: mpsc::Receiver<Bytes>,
    accepted: oneshot::Receiver<()>,
) -> Result<(), String> {
    let options = PutMultipartOptions {
        attributes,
        ..Default::default()
    };
    let upload = s3
        .put_multipart_opts(path, options)
        .await
        .map_err(|e| e.to_string())?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    while let Some(chunk) = chunks.recv().await {
        if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
            let _ = writer.abort().await;
            return Err(e.to_string());
        }
        writer.put(chunk);
    }
    match accepted.await {
        Ok(()) => writer.finish().await.map(|_| ()).map_err(|e| e.to_string()),
        Err(_) => writer.abort().await.map_err(|e| e.to_string()),
    }
}

/// The relay's side of an upload: chunks go to the upload task, with backpressure for a while,
/// and dropped when the upload takes nothing for [`STALLED_UPLOAD`].
struct BucketSink {
    data: PollSender<Bytes>,
    verdict: Option<oneshot::Sender<()>>,
    claim: Option<oneshot::Sender<Option<Claim>>>,
    stall: Stall,
}

impl Sink for BucketSink {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.data.poll_reserve(cx) {
            Poll::Ready(Ok(())) => {
                self.stall.clear();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(_)) => Poll::Ready(Err(std::io::Error::other("the upload stopped"))),
            Poll::Pending => self.stall.poll_waiting(cx, "the bucket"),
        }
    }

    fn write(&mut self, chunk: &Bytes) -> std::io::Result<()> {
        self.data
            .send_item(chunk.clone())
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }

    fn commit(mut self: Box<Self>, claim: Option<Claim>) {
        if let Some(verdict) = self.verdict.take() {
            let _ = verdict.send(());
        }
        if let Some(hand_over) = self.claim.take() {
            let _ = hand_over.send(claim);
        }
    }
}

/// What the owner's commands need of a bucket beyond serving (see `store::tools`).
impl BucketStore {
    /// `s3://bucket/prefix`, for messages.
    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// Every object and record under the prefix.
    pub async fn list(&self) -> Result<Vec<crate::native::store::Listed>, String> {
        use futures_util::TryStreamExt;
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        let metas: Vec<_> = self
            .s3
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| format!("cannot list the bucket: {e}"))?;
        let skip = match self.prefix.is_empty() {
            true => 0,
            false => self.prefix.len() + 1,
        };
        Ok(metas
            .into_iter()
            .filter_map(|meta| {
                let key = meta.location.as_ref().get(skip..)?.to_string();
                Some(crate::native::store::Listed {
                    key,
                    bytes: meta.size,
                    last_used: meta.last_modified.into(),
                    stored_at: Some(meta.last_modified.into()),
                })
            })
            .collect())
    }

    /// Deletes the object at `key`.
    pub async fn remove(&self, key: &str) -> Result<(), String> {
        let path = self.path(key).ok_or("not a key the store takes")?;
        self.s3.delete(&path).await.map_err(|e| e.to_string())
    }
}

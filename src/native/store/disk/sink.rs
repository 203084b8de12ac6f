//! A relayed object on its way into the directory store, written off the async threads: the
//! relay's chunks are gathered and written [`WRITE_BATCH`] at a time by the object's own
//! low-priority thread ([`Writer`]), one write under way at once.
//! The relay runs up to [`LEAD`] ahead of the disk; past it the object's writer is left to catch
//! up on its own (`catch_up`). A write that has not finished after [`STALLED_WRITE`] (a stalled
//! network volume, a failing disk) drops the object, a failed one (a full disk) too, and the
//! client's relay goes on as without a store.

use super::writer::{Done, Writer};
use super::{DiskStore, Writing};
use crate::native::store::in_flight::Claim;
use crate::native::store::storing_body::{Sink, Stall};
use hyper::body::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// How much is gathered before one write.
const WRITE_BATCH: usize = 256 * 1024;

/// How far the relay may run ahead of the disk (gathered while a write is under way).
const LEAD: usize = 2 * 1024 * 1024;

/// The longest the relay waits for the disk to finish a write before it drops the object.
pub const STALLED_WRITE: Duration = Duration::from_secs(5);

/// The object's file with the chunks gathered for it; see the module's comment.
pub struct DiskSink {
    /// The thread that makes, writes and commits the file.
    writer: Option<Writer>,
    /// The file, when no write is under way.
    idle: Option<Writing>,
    /// The write under way (the first makes the file): the file back, or why not.
    busy: Option<Done<Writing>>,
    /// Chunks gathered for the next write, and their bytes.
    gathered: Vec<Bytes>,
    gathered_bytes: usize,
    stall: Stall,
}

impl DiskSink {
    /// A new object at `key`; its temporary file is made by the first write.
    pub fn new(store: &Arc<DiskStore>, key: &str, media_type: Option<&str>) -> DiskSink {
        let (store, key) = (store.clone(), key.to_string());
        let media_type = media_type.map(str::to_string);
        let writer = Writer::start()
            .inspect_err(|e| tracing::warn!(error = %e, "the store cannot start a writer"))
            .ok();
        let create = writer
            .as_ref()
            .map(|writer| writer.run(move || store.begin(&key, media_type.as_deref())));
        DiskSink {
            writer,
            idle: None,
            busy: create,
            gathered: Vec::new(),
            gathered_bytes: 0,
            stall: Stall::new(STALLED_WRITE),
        }
    }

    /// Hands what is gathered to the writer, when no write is under way.
    fn write_gathered(&mut self) {
        let (Some(writer), Some(mut writing)) = (&self.writer, self.idle.take()) else {
            return;
        };
        let chunks = std::mem::take(&mut self.gathered);
        self.gathered_bytes = 0;
        self.busy = Some(writer.run(move || {
            writing.write_chunks(&chunks)?;
            Ok(writing)
        }));
    }
}

impl Sink for DiskSink {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.writer.is_none() {
            return Poll::Ready(Err(std::io::Error::other("no writer")));
        }
        if let Some(busy) = self.busy.as_mut() {
            match Pin::new(busy).poll(cx) {
                Poll::Ready(Ok(writing)) => {
                    self.busy = None;
                    self.stall.clear();
                    self.idle = Some(writing);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // Room to gather more while the disk writes.
                Poll::Pending if self.gathered_bytes < LEAD => return Poll::Ready(Ok(())),
                Poll::Pending => return self.stall.poll_waiting(cx, "the disk"),
            }
        }
        if self.gathered_bytes >= WRITE_BATCH {
            self.write_gathered();
        }
        Poll::Ready(Ok(()))
    }

    fn write(&mut self, chunk: &Bytes) -> std::io::Result<()> {
        self.gathered_bytes += chunk.len();
        self.gathered.push(chunk.clone());
        if self.gathered_bytes >= WRITE_BATCH {
            self.write_gathered();
        }
        Ok(())
    }

    /// The rest written, then the disk's part (flush, `fsync`, rename, eviction), all off the
    /// async threads and off the client's path; those waiting for the object are released when
    /// it is visible (or when it could not be kept).
    fn commit(mut self: Box<Self>, claim: Option<Claim>) {
        let keep = async move {
            let writing = match (self.busy.take(), self.idle.take()) {
                (Some(busy), _) => busy.await.ok(),
                (None, idle) => idle,
            };
            let (Some(writer), Some(mut writing)) = (self.writer.take(), writing) else {
                return;
            };
            let chunks = std::mem::take(&mut self.gathered);
            let kept = writer.run(move || {
                writing.write_chunks(&chunks)?;
                writing.commit()
            });
            if let Err(e) = kept.await {
                crate::native::store::complaints::could_not_keep(&e);
            }
            drop(claim);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(keep)),
            Err(_) => tracing::warn!("no runtime to keep a blob on"),
        }
    }
}

//! One upstream transfer per cold blob, whatever its clients' speeds (a directory store): the
//! blob is filled from the upstream into its file at the upstream's pace, by a task of its own
//! that no client holds, and every client of it, the first included, reads what is already
//! written, each at its own pace: a streaming miss (Varnish), a read-while-writer (Apache Traffic
//! Server). A slow client holds nobody; a client that leaves stops nothing.
//!
//! Every byte a client gets was checked: the last bytes of the object are held back until the
//! whole object matched its digest, so a blob that does not is never received whole. When the
//! disk fails or stalls mid-way, the clients read what it holds and fetch the rest from the
//! upstream themselves (a `Range` request, checked from where the fill's check stood), so no
//! response is cut by the store.

use crate::native::store::disk::writer::{Done, Writer};
use crate::native::store::disk::{read_cached, read_chunk, Writing, READ_CHUNK};
use crate::native::store::resume::{ask_rest, Resume};
use crate::store::verify::Verifier;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How much the fill gathers before one write (and clients see at once).
const WRITE_BATCH: usize = 1024 * 1024;
/// A write that has not finished after this long breaks the fill: the clients go upstream.
pub const STALLED_WRITE: Duration = Duration::from_secs(5);

/// How far the fill is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// This many of the object's bytes are in its file.
    Growing(u64),
    /// Every byte is in the file and matched the digest.
    Whole,
    /// The disk failed or stalled: only the first `at` bytes are in the file.
    Broken { at: u64 },
    /// The upstream's bytes are not what the digest says, or it broke off: nobody gets it whole.
    Failed,
}

/// A blob being filled, as its clients see it: its file, its length, and how far the fill is.
pub struct Growing {
    file: Arc<std::fs::File>,
    /// Where the object's bytes begin in the file.
    header: u64,
    pub length: u64,
    pub media_type: Option<String>,
    written: watch::Receiver<Written>,
    /// How to ask the upstream for the rest, should the disk break.
    resume: Option<Resume>,
    /// The fill's check as it stood at the break, for the clients' own fetches of the rest.
    checked_at_break: Mutex<Option<Verifier>>,
}

/// Starts filling the object `writing` is the file of from `upstream`, checked by `verifier`;
/// the object is committed when whole and matching. The fill's end is `done` (for the claim to
/// be dropped then). When the file cannot be read back, `upstream` is given back, untouched, to
/// be relayed as without a store.
pub fn start(
    writing: Writing,
    upstream: reqwest::Body,
    verifier: Verifier,
    media_type: Option<String>,
    resume: Option<Resume>,
) -> Result<(Arc<Growing>, tokio::task::JoinHandle<()>), reqwest::Body> {
    let reader = writing.reader();
    let writer = Writer::start();
    let ((file, header), writer) = match (reader, writer) {
        (Ok(reader), Ok(writer)) => (reader, writer),
        (Err(e), _) | (_, Err(e)) => {
            crate::native::store::complaints::could_not_keep(&e);
            return Err(upstream);
        }
    };
    let (tell, written) = watch::channel(Written::Growing(0));
    let growing = Arc::new(Growing {
        file: Arc::new(file),
        header,
        length: verifier.length(),
        media_type,
        written,
        resume,
        checked_at_break: Mutex::new(None),
    });
    let fill = Fill {
        writer,
        tell,
        growing: growing.clone(),
    };
    let done = tokio::spawn(fill.run(writing, upstream, verifier));
    Ok((growing, done))
}

struct Fill {
    writer: Writer,
    tell: watch::Sender<Written>,
    growing: Arc<Growing>,
}

impl Fill {
    async fn run(self, writing: Writing, mut upstream: reqwest::Body, verifier: Verifier) {
        // The file and the check of what is in it, between two writes. The writer's thread hashes
        // each batch once it is written, beside the task that gathers the next.
        let mut file = Some((writing, verifier.clone()));
        let mut verifier = verifier;
        let mut in_flight: Option<Done<(Writing, Verifier)>> = None;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut gathered = 0;
        let mut ended = false;
        loop {
            // Gather the next batch while the last one is written.
            while !ended && gathered < WRITE_BATCH {
                match upstream.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(chunk) = frame.into_data() {
                            gathered += chunk.len();
                            batch.push(chunk);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "the upstream broke off a blob being stored");
                        return self.end(Written::Failed);
                    }
                    None => ended = true,
                }
            }
            if let Some(done) = in_flight.take() {
                match tokio::time::timeout(STALLED_WRITE, done).await {
                    Ok(Ok((back, checked))) => {
                        let _ = self.tell.send(Written::Growing(checked.seen()));
                        verifier = checked.clone();
                        file = Some((back, checked));
                    }
                    Ok(Err(e)) => return self.broken(&verifier, &e.to_string()),
                    Err(_) => return self.broken(&verifier, "a write stalled"),
                }
            }
            if batch.is_empty() {
                break;
            }
            let chunks = std::mem::take(&mut batch);
            gathered = 0;
            let (mut writing, mut checked) = file.take().expect("back from its last write");
            in_flight = Some(self.writer.run(move || {
                writing.write_chunks(&chunks)?;
                writing.flush()?;
                chunks.iter().for_each(|chunk| checked.update(chunk));
                Ok((writing, checked))
            }));
        }
        let (writing, verifier) = file.take().expect("back from its last write");
        if let Err(mismatch) = verifier.finish() {
            tracing::warn!(%mismatch, "an upstream blob was not what its digest says");
            return self.end(Written::Failed);
        }
        // Whole and checked: the clients may have the last bytes; then the object is made
        // visible (a failure there leaves the clients' reads whole all the same).
        let _ = self.tell.send(Written::Whole);
        if let Err(e) = self.writer.run(move || writing.commit()).await {
            crate::native::store::complaints::could_not_keep(&e);
        }
    }

    fn end(&self, how: Written) {
        let _ = self.tell.send(how);
    }

    /// The disk failed: the clients read what the file holds, then fetch the rest themselves.
    fn broken(&self, verifier: &Verifier, why: &str) {
        crate::native::store::complaints::could_not_keep(&why);
        let at = verifier.seen();
        *self
            .growing
            .checked_at_break
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(verifier.clone());
        self.end(Written::Broken { at });
    }
}

impl Growing {
    /// What the core needs of the object: its length and media type, known before its bytes.
    pub fn stored(&self) -> crate::store::Stored {
        crate::store::Stored {
            length: self.length,
            media_type: self.media_type.clone(),
        }
    }

    /// A client's body of the object, from its first byte.
    pub fn body(self: &Arc<Self>) -> reqwest::Body {
        let reader = Reader {
            growing: self.clone(),
            written: self.written.clone(),
            at: 0,
            rest: None,
        };
        let stream = futures_util::stream::unfold(reader, |mut reader| async move {
            reader.next().await.map(|chunk| (chunk, reader))
        });
        reqwest::Body::wrap_stream(stream)
    }
}

/// One client's read of a growing object.
struct Reader {
    growing: Arc<Growing>,
    written: watch::Receiver<Written>,
    /// The next byte this client gets.
    at: u64,
    /// After a break: the upstream's answer for the rest, the bytes of it to skip (an upstream
    /// that ignores ranges answers whole), and the check of what comes.
    rest: Option<(reqwest::Body, u64, Verifier)>,
}

impl Reader {
    async fn next(&mut self) -> Option<std::io::Result<Bytes>> {
        let length = self.growing.length;
        loop {
            if self.rest.is_some() {
                return self.next_from_upstream().await;
            }
            if self.at == length && *self.written.borrow() == Written::Whole {
                return None;
            }
            let state = *self.written.borrow_and_update();
            let readable = match state {
                // The last byte waits for the verdict on the whole.
                Written::Growing(n) => n.min(length.saturating_sub(1)),
                Written::Whole => length,
                Written::Broken { at } => at,
                Written::Failed => {
                    return Some(Err(std::io::Error::other(
                        "the blob was not what its digest says, or the upstream broke off",
                    )))
                }
            };
            if self.at < readable {
                let want = (readable - self.at).min(READ_CHUNK as u64) as usize;
                return Some(self.read(want).await);
            }
            if let Written::Broken { at } = state {
                return match self.ask_upstream(at).await {
                    Ok(()) => continue,
                    Err(e) => Some(Err(e)),
                };
            }
            if self.written.changed().await.is_err() {
                // The fill is gone without a last word (its task panicked or was dropped).
                if !matches!(*self.written.borrow(), Written::Whole) {
                    return Some(Err(std::io::Error::other("the store's fill ended")));
                }
            }
        }
    }

    /// At most `want` bytes of the file from where this client is: read on this thread when the
    /// page cache holds them (it does, just written, unless memory is short), else on the
    /// blocking pool (`file_body`'s reads). Bytes past `want` (a write under way) are not sent.
    async fn read(&mut self, want: usize) -> std::io::Result<Bytes> {
        let (file, offset) = (self.growing.file.clone(), self.growing.header + self.at);
        let chunk = match read_cached(&file, offset) {
            Some(chunk) => chunk?,
            None => tokio::task::spawn_blocking(move || read_chunk(&file, offset))
                .await
                .map_err(std::io::Error::other)??,
        };
        let mut chunk = chunk;
        chunk.truncate(want);
        if chunk.is_empty() {
            return Err(std::io::Error::other(
                "the store's file is shorter than written",
            ));
        }
        self.at += chunk.len() as u64;
        Ok(chunk)
    }

    /// The disk broke at `at`, where this client now is: the rest from the upstream.
    async fn ask_upstream(&mut self, at: u64) -> std::io::Result<()> {
        let checked = self
            .growing
            .checked_at_break
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (Some(resume), Some(checked)) = (&self.growing.resume, checked) else {
            return Err(std::io::Error::other(
                "the store broke and the rest cannot be asked for",
            ));
        };
        let (body, skip) = ask_rest(resume, at).await.map_err(std::io::Error::other)?;
        self.rest = Some((body, skip, checked));
        Ok(())
    }

    async fn next_from_upstream(&mut self) -> Option<std::io::Result<Bytes>> {
        let (body, skip, verifier) = self.rest.as_mut()?;
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    let Ok(mut chunk) = frame.into_data() else {
                        continue;
                    };
                    let passed = (*skip).min(chunk.len() as u64) as usize;
                    *skip -= passed as u64;
                    let chunk = chunk.split_off(passed);
                    if chunk.is_empty() {
                        continue;
                    }
                    verifier.update(&chunk);
                    self.at += chunk.len() as u64;
                    // The last bytes only once the whole matched.
                    if self.at == self.growing.length {
                        if let Err(mismatch) = verifier.clone().finish() {
                            return Some(Err(std::io::Error::other(mismatch.to_string())));
                        }
                    }
                    return Some(Ok(chunk));
                }
                Some(Err(e)) => return Some(Err(std::io::Error::other(e.to_string()))),
                None if self.at == self.growing.length => return None,
                None => {
                    return Some(Err(std::io::Error::other(
                        "the upstream's rest ended short",
                    )))
                }
            }
        }
    }
}

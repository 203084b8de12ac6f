//! A stored object as a response body, read the way fast static servers read: large reads
//! straight into the buffer that becomes the frame (no zeroing, no second copy), and no thread
//! hop when the bytes are already in memory.
//!
//! On Linux each chunk is first read with `preadv2(RWF_NOWAIT)` on the async thread itself: the
//! kernel copies what the page cache holds and answers `EAGAIN` instead of waiting for the disk.
//! Only then does the read go to the blocking pool (a thread per read, never per body, so a slow
//! client holds none). A hit of a recently served layer, the common case, never leaves the async
//! thread. Reads are positional, so the file is shared, never moved between threads.
//!
//! Memory-mapped reads were not taken: a disk error while a mapped page is read is a `SIGBUS`
//! that ends the whole server, where a read's error ends one response.

use hyper::body::{Body, Bytes, Frame};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// How much of a stored object one read takes (and one frame carries). With 64 bodies in flight
/// this keeps a server's buffers to about 16 MiB.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

/// The body of `file` from its current position to its end.
pub fn file_body(file: std::fs::File) -> reqwest::Body {
    use std::io::Seek;
    let mut file = file;
    let body = match file.stream_position() {
        Ok(offset) => FileBody {
            file: Arc::new(file),
            offset,
            waiting: None,
            done: false,
        },
        Err(e) => return failed(e),
    };
    reqwest::Body::wrap(body)
}

fn failed(e: io::Error) -> reqwest::Body {
    reqwest::Body::wrap_stream(futures_util::stream::iter([Err::<Bytes, _>(e)]))
}

struct FileBody {
    file: Arc<std::fs::File>,
    /// Where the next read starts.
    offset: u64,
    /// A read the page cache could not answer, under way on the blocking pool.
    waiting: Option<tokio::task::JoinHandle<io::Result<Bytes>>>,
    /// The end was reached or a read failed.
    done: bool,
}

impl FileBody {
    /// The next chunk, read at once when memory holds it; `None` when only the disk does.
    fn read_now(&self) -> Option<io::Result<Bytes>> {
        read_cached(&self.file, self.offset)
    }

    fn read_on_pool(&self) -> tokio::task::JoinHandle<io::Result<Bytes>> {
        let (file, offset) = (self.file.clone(), self.offset);
        tokio::task::spawn_blocking(move || read_chunk(&file, offset))
    }

    fn deliver(&mut self, chunk: io::Result<Bytes>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        match chunk {
            Ok(chunk) if chunk.is_empty() => {
                self.done = true;
                Poll::Ready(None)
            }
            Ok(chunk) => {
                self.offset += chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Err(e) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.waiting.is_none() {
            if let Some(chunk) = this.read_now() {
                return this.deliver(chunk);
            }
            this.waiting = Some(this.read_on_pool());
        }
        let waiting = this.waiting.as_mut().expect("a read under way");
        let chunk = match Pin::new(waiting).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(joined) => joined.unwrap_or_else(|e| Err(io::Error::other(e))),
        };
        this.waiting = None;
        this.deliver(chunk)
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// Up to `READ_CHUNK` bytes at `offset`, waiting for the disk; empty at the end.
pub(crate) fn read_chunk(file: &std::fs::File, offset: u64) -> io::Result<Bytes> {
    read_into_new_buffer(|spare| loop {
        match positional_read(file, spare, offset, 0) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    })
}

/// What the page cache holds of the chunk at `offset`: `None` when a read would wait for the
/// disk (or the kernel cannot say), so that the caller reads on the blocking pool instead.
#[cfg(target_os = "linux")]
pub(crate) fn read_cached(file: &std::fs::File, offset: u64) -> Option<io::Result<Bytes>> {
    let chunk =
        read_into_new_buffer(|spare| positional_read(file, spare, offset, libc::RWF_NOWAIT));
    match chunk {
        // EAGAIN: not in memory; EOPNOTSUPP (an old kernel, some file systems): cannot tell.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EOPNOTSUPP)) => None,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
        // An empty read may be the end or a page the kernel would not wait for: the pool's read
        // tells them apart.
        Ok(chunk) if chunk.is_empty() => None,
        chunk => Some(chunk),
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn read_cached(_: &std::fs::File, _: u64) -> Option<io::Result<Bytes>> {
    None
}

/// A fresh `READ_CHUNK` buffer, filled by `read` (given its uninitialised spare capacity) and
/// frozen at the length it reports.
fn read_into_new_buffer(
    read: impl FnOnce(&mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize>,
) -> io::Result<Bytes> {
    let mut buffer = bytes::BytesMut::with_capacity(READ_CHUNK);
    let spare = &mut buffer.spare_capacity_mut()[..READ_CHUNK];
    let filled = read(spare)?;
    assert!(filled <= READ_CHUNK, "a read past its buffer");
    // SAFETY: the kernel wrote `filled` bytes at the start of the spare capacity.
    unsafe { buffer.set_len(filled) };
    Ok(buffer.freeze())
}

/// One `preadv2` (Linux) or `pread` into `buffer`; `flags` are `preadv2`'s.
fn positional_read(
    file: &std::fs::File,
    buffer: &mut [std::mem::MaybeUninit<u8>],
    offset: u64,
    flags: i32,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    // SAFETY: the buffer is valid for writes of its length for the call's duration; the kernel
    // writes at most that many bytes and says how many.
    let read = unsafe {
        #[cfg(target_os = "linux")]
        {
            let vector = libc::iovec {
                iov_base: buffer.as_mut_ptr().cast(),
                iov_len: buffer.len(),
            };
            libc::preadv2(file.as_raw_fd(), &vector, 1, offset, flags)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = flags;
            libc::pread(
                file.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                offset,
            )
        }
    };
    usize::try_from(read).map_err(|_| io::Error::last_os_error())
}

#[cfg(test)]
mod tests;

//! An upstream body relayed to the client and written to a store as it passes, checked by the
//! core's verifier. The last chunk is held back until the verdict: on a mismatch the client gets
//! an error instead of it, so its response never ends cleanly, and nothing is stored. A store
//! that cannot keep up is left behind to catch up on its own ([`catch_up`]) rather than slow the
//! client down; the rest of the client's relay is then passed on as it comes, as without a store
//! (the bytes the store keeps are the ones its writer checks).

use crate::native::store::catch_up::catch_up;
use crate::native::store::in_flight::Claim;
use crate::native::store::resume::Resume;
use crate::store::verify::Verifier;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::sync::oneshot;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where a relayed body's bytes go while the verifier checks them (a file being written, an
/// upload). Dropped without [`Sink::commit`], it leaves nothing in the store.
pub trait Sink: Send + Sync + 'static {
    /// Ready for the next chunk. `Pending` when the store is behind: the relay leaves it to
    /// catch up on its own (or, when it cannot, waits rather than pile bytes up in memory). An
    /// error drops the sink (the client's relay goes on, nothing is stored).
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>>;
    fn write(&mut self, chunk: &Bytes) -> std::io::Result<()>;
    /// Every byte matched its digest: make the object visible, then drop `claim`, so that those
    /// waiting for the object find it when they look again.
    fn commit(self: Box<Self>, claim: Option<Claim>);
}

/// How long a sink's store may take nothing before the relay stops waiting for it: the store
/// must never hold a pull. Started when the store first makes the relay wait, cleared when it
/// takes bytes again.
pub struct Stall {
    limit: std::time::Duration,
    since: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stall {
    pub fn new(limit: std::time::Duration) -> Stall {
        Stall { limit, since: None }
    }

    /// The store took bytes: the wait is over.
    pub fn clear(&mut self) {
        self.since = None;
    }

    /// The store makes the relay wait: `Pending` while within the limit (woken at its end), then
    /// the error that drops the sink.
    pub fn poll_waiting(&mut self, cx: &mut Context<'_>, what: &str) -> Poll<std::io::Result<()>> {
        let limit = self.limit;
        let since = self
            .since
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match since.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::other(format!(
                "{what} took nothing for {} s; the object is not kept",
                limit.as_secs()
            )))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `upstream`'s body, written to `sink` as it passes; `resume` says how to fetch the rest again
/// should the sink fall behind.
pub fn storing_body(
    upstream: reqwest::Body,
    sink: Box<dyn Sink>,
    verifier: Verifier,
    claim: Option<Claim>,
    resume: Option<Resume>,
) -> reqwest::Body {
    reqwest::Body::wrap(StoringBody {
        upstream,
        sink: Some(sink),
        verifier: Some(verifier),
        held: None,
        claim,
        resume,
        left_behind: None,
    })
}

struct StoringBody {
    upstream: reqwest::Body,
    sink: Option<Box<dyn Sink>>,
    verifier: Option<Verifier>,
    held: Option<Bytes>,
    /// Handed to the commit, or released with the body when the relay ends another way.
    claim: Option<Claim>,
    resume: Option<Resume>,
    /// The store was left to catch up on its own (with the verifier): where the claim goes
    /// when the relay is over, for the writer to start.
    left_behind: Option<oneshot::Sender<Option<Claim>>>,
}

impl StoringBody {
    /// The relay is over (whole or not): the writer left behind may start, with the claim.
    fn hand_over(&mut self) {
        if let Some(handover) = self.left_behind.take() {
            let _ = handover.send(self.claim.take());
        }
    }
}

impl Drop for StoringBody {
    fn drop(&mut self) {
        self.hand_over();
    }
}

impl Body for StoringBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.left_behind.is_some() {
                // The store's writer has the verifier now: the rest goes as without a store.
                if let Some(chunk) = this.held.take() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                let frame = ready!(Pin::new(&mut this.upstream).poll_frame(cx));
                match &frame {
                    Some(Ok(frame)) => {
                        if let (Some(claim), Some(chunk)) = (&this.claim, frame.data_ref()) {
                            claim.relayed(chunk.len());
                        }
                    }
                    // The relay is over: the store's writer goes on.
                    _ => this.hand_over(),
                }
                return Poll::Ready(frame.map(|f| f.map_err(|e| e.into())));
            }
            let Some(verifier) = this.verifier.as_mut() else {
                // The verdict is in: the held chunk, then the end.
                return Poll::Ready(this.held.take().map(|chunk| Ok(Frame::data(chunk))));
            };
            if let Some(sink) = this.sink.as_mut() {
                match sink.poll_ready(cx) {
                    Poll::Pending => match this.resume.take() {
                        // Behind: the store goes on by itself from the bytes it has.
                        Some(resume) => {
                            let sink = this.sink.take().expect("present");
                            let verifier = this.verifier.take().expect("present");
                            let (handover, relay_over) = oneshot::channel();
                            catch_up(sink, verifier, relay_over, resume);
                            this.left_behind = Some(handover);
                            continue;
                        }
                        None => return Poll::Pending,
                    },
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => {
                        crate::native::store::complaints::could_not_keep(&e);
                        this.sink = None;
                    }
                }
            }
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.sink = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(chunk) = frame.into_data() else {
                        continue;
                    };
                    verifier.update(&chunk);
                    if let Some(claim) = &this.claim {
                        claim.relayed(chunk.len());
                    }
                    if let Some(sink) = this.sink.as_mut() {
                        if sink.write(&chunk).is_err() {
                            this.sink = None;
                        }
                    }
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(Frame::data(previous))));
                    }
                }
                Poll::Ready(None) => {
                    let verdict = this.verifier.take().expect("present").finish();
                    match verdict {
                        Ok(()) => {
                            if let Some(claim) = &this.claim {
                                claim.complete();
                            }
                            if let Some(sink) = this.sink.take() {
                                sink.commit(this.claim.take());
                            }
                        }
                        Err(mismatch) => {
                            this.sink = None;
                            this.held = None;
                            tracing::warn!(%mismatch, "an upstream blob was not what its digest says");
                            return Poll::Ready(Some(Err(mismatch.to_string().into())));
                        }
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.upstream.size_hint()
    }
}

//! A store that falls behind the relay catches up on its own: the client's relay goes on at the
//! wire's pace, and once it is over the object's writer fetches the rest of the object again
//! (`Range: bytes=N-`, the same request the relay made) and writes it at the store's pace. So a disk or a
//! bucket slower than the upstream never makes a pull slower than a relay alone, and the object is
//! kept all the same, checked as every stored object is: the writer's verifier goes on from where
//! the relay left it, over the bytes the writer fetched itself.

use crate::native::store::in_flight::Claim;
use crate::native::store::storing_body::Sink;
use crate::store::verify::Verifier;
use http::header::{CONTENT_RANGE, RANGE};
use http::{Request, StatusCode};
use hyper::body::{Body, Bytes};
use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::oneshot;

#[cfg(test)]
mod tests;

/// How to ask the upstream for the rest of a relayed object.
pub struct Resume {
    pub client: reqwest::Client,
    /// The request whose answer is relayed (a whole-object `GET`).
    pub request: Request<Vec<u8>>,
    /// The longest wait for the answer, and between two chunks of it.
    pub timeout: Duration,
}

impl Resume {
    /// `request` again, for the rest of its answer; `None` for a request that asks for part of
    /// an object already, or sends a body.
    pub fn of(
        client: &reqwest::Client,
        request: &Request<Vec<u8>>,
        timeout: Duration,
    ) -> Option<Resume> {
        if request.method() != http::Method::GET
            || request.headers().contains_key(RANGE)
            || !request.body().is_empty()
        {
            return None;
        }
        let mut copy = Request::new(Vec::new());
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        Some(Resume {
            client: client.clone(),
            request: copy,
            timeout,
        })
    }
}

/// Writes the rest of the object into `sink`, from where `verifier` stands, once the client's
/// relay is over (`relay_over` brings the claim then): the store's work never competes with the
/// client's. Commits the object if every byte matches, drops it otherwise. The claim goes with the
/// writer: those waiting for the object watch this fill now.
pub fn catch_up(
    sink: Box<dyn Sink>,
    verifier: Verifier,
    relay_over: oneshot::Receiver<Option<Claim>>,
    resume: Resume,
) {
    let from = verifier.seen();
    tracing::info!(
        from,
        "the store fell behind the relay; it fetches the rest itself"
    );
    let task = async move {
        let claim = relay_over.await.ok().flatten();
        if let Err(why) = fill(sink, verifier, claim, resume).await {
            tracing::warn!(from, %why, "the store could not catch up; the object is not kept");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn(task)),
        Err(_) => tracing::warn!("no runtime to keep a blob on"),
    }
}

async fn fill(
    mut sink: Box<dyn Sink>,
    mut verifier: Verifier,
    claim: Option<Claim>,
    resume: Resume,
) -> Result<(), String> {
    // The store may have fallen behind on the object's last bytes only, with all of them in
    // hand: nothing is left to ask for (a range past the end is a 416).
    if verifier.seen() < verifier.length() {
        fetch_rest(&mut sink, &mut verifier, claim.as_ref(), resume).await?;
    }
    poll_fn(|cx| sink.poll_ready(cx))
        .await
        .map_err(|e| e.to_string())?;
    verifier.finish().map_err(|mismatch| mismatch.to_string())?;
    if let Some(claim) = &claim {
        claim.complete();
    }
    sink.commit(claim);
    Ok(())
}

/// Asks the upstream for the object from where `verifier` stands, and writes what comes into
/// `sink`, checked.
async fn fetch_rest(
    sink: &mut Box<dyn Sink>,
    verifier: &mut Verifier,
    claim: Option<&Claim>,
    resume: Resume,
) -> Result<(), String> {
    let from = verifier.seen();
    let mut request = resume.request;
    let range = format!("bytes={from}-");
    request
        .headers_mut()
        .insert(RANGE, range.parse().expect("a valid header"));
    let request = reqwest::Request::try_from(request).map_err(|e| e.to_string())?;
    if let Some(claim) = claim {
        claim.restarted();
    }
    let answer = tokio::time::timeout(resume.timeout, resume.client.execute(request))
        .await
        .map_err(|_| "the upstream did not answer in time".to_string())?
        .map_err(|e| e.to_string())?;
    // The rest, or (from an upstream that ignores ranges) the whole object, its start skipped.
    let mut skip = match answer.status() {
        StatusCode::PARTIAL_CONTENT if starts_at(answer.headers().get(CONTENT_RANGE), from) => 0,
        StatusCode::OK => from,
        status => return Err(format!("the upstream answered {status} to {range}")),
    };
    let mut body: reqwest::Body = http::Response::<reqwest::Body>::from(answer).into_body();
    loop {
        poll_fn(|cx| sink.poll_ready(cx))
            .await
            .map_err(|e| e.to_string())?;
        let frame = tokio::time::timeout(
            resume.timeout,
            poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)),
        )
        .await
        .map_err(|_| "the upstream's answer stalled".to_string())?;
        let chunk = match frame {
            None => return Ok(()),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(chunk) => chunk,
                Err(_) => continue,
            },
        };
        let chunk = skip_start(chunk, &mut skip);
        if chunk.is_empty() {
            continue;
        }
        verifier.update(&chunk);
        if let Some(claim) = claim {
            claim.relayed(chunk.len());
        }
        sink.write(&chunk).map_err(|e| e.to_string())?;
    }
}

/// Whether a `Content-Range: bytes FROM-…/…` starts at `from`.
fn starts_at(content_range: Option<&http::HeaderValue>, from: u64) -> bool {
    content_range
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split_once('-'))
        .and_then(|(start, _)| start.parse::<u64>().ok())
        == Some(from)
}

/// `chunk` without what is left of the `skip` bytes to pass over.
fn skip_start(mut chunk: Bytes, skip: &mut u64) -> Bytes {
    let passed = (*skip).min(chunk.len() as u64) as usize;
    *skip -= passed as u64;
    chunk.split_off(passed)
}

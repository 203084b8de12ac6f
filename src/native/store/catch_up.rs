//! A store that falls behind the relay catches up on its own: the client's relay goes on at the
//! wire's pace, and once it is over the object's writer fetches the rest of the object again
//! (`Range: bytes=N-`, the same request the relay made) and writes it at the store's pace. So a
//! bucket slower than the upstream never makes a pull slower than a relay alone, and the object is
//! kept all the same, checked as every stored object is: the writer's verifier goes on from where
//! the relay left it, over the bytes the writer fetched itself.

use crate::native::store::in_flight::Claim;
use crate::native::store::resume::{ask_rest, Resume};
use crate::native::store::storing_body::Sink;
use crate::store::verify::Verifier;
use hyper::body::{Body, Bytes};
use std::future::poll_fn;
use std::pin::Pin;
use tokio::sync::oneshot;

#[cfg(test)]
mod tests;

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
    if let Some(claim) = claim {
        claim.restarted();
    }
    let (mut body, mut skip) = ask_rest(&resume, from).await?;
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

/// `chunk` without what is left of the `skip` bytes to pass over.
fn skip_start(mut chunk: Bytes, skip: &mut u64) -> Bytes {
    let passed = (*skip).min(chunk.len() as u64) as usize;
    *skip -= passed as u64;
    chunk.split_off(passed)
}

//! A store slower than the relay: the client gets the whole object without waiting for it, and
//! the store still keeps the object, checked, from a second request for the rest.

use crate::native::store::resume::Resume;
use crate::native::store::storing_body::{storing_body, Sink};
use crate::store::verify::Verifier;
use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHUNK: usize = 64 * 1024;
const CHUNKS: usize = 64;

/// What a slow sink ended with: the bytes it committed, or none.
#[derive(Default)]
struct Outcome {
    committed: Option<Vec<u8>>,
    dropped: bool,
}

/// A store that takes 5 ms for each chunk (four times slower than the relay's whole object).
struct SlowSink {
    bytes: Vec<u8>,
    busy: Option<Pin<Box<tokio::time::Sleep>>>,
    outcome: Arc<Mutex<Outcome>>,
}

impl Sink for SlowSink {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(busy) = self.busy.as_mut() {
            if busy.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.busy = None;
        }
        Poll::Ready(Ok(()))
    }

    fn write(&mut self, chunk: &Bytes) -> std::io::Result<()> {
        self.bytes.extend_from_slice(chunk);
        self.busy = Some(Box::pin(tokio::time::sleep(Duration::from_millis(5))));
        Ok(())
    }

    fn commit(mut self: Box<Self>, _claim: Option<crate::native::store::in_flight::Claim>) {
        self.outcome.lock().unwrap().committed = Some(std::mem::take(&mut self.bytes));
    }
}

impl Drop for SlowSink {
    fn drop(&mut self) {
        self.outcome.lock().unwrap().dropped = true;
    }
}

fn object() -> Vec<u8> {
    (0..CHUNK * CHUNKS).map(|i| (i * 7 % 251) as u8).collect()
}

/// An upstream on 127.0.0.1 that answers every request with `answer(range)` and records the
/// `Range` each asked for.
async fn upstream(
    answer: impl Fn(Option<u64>) -> Vec<u8> + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/blob", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let range = head
                .lines()
                .find_map(|l| l.strip_prefix("range: ").map(str::to_string));
            seen.lock().unwrap().extend(range.clone());
            let from =
                range.and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok());
            socket.write_all(&answer(from)).await.unwrap();
        }
    });
    (url, ranges)
}

/// A `206` with the object's bytes from the range's start (`rest` gives them), or a `200`.
fn ranged(rest: impl Fn(u64) -> Vec<u8>, from: Option<u64>) -> Vec<u8> {
    let whole = object().len();
    let (status, body, range) = match from {
        Some(from) => (
            "206 Partial Content",
            rest(from),
            format!("content-range: bytes {from}-{}/{whole}\r\n", whole - 1),
        ),
        None => ("200 OK", object(), String::new()),
    };
    let mut answer = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{range}connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend(body);
    answer
}

/// Relays the object (as fast as it comes) through a storing body with the slow sink; returns
/// what the client got, whether the store had finished when the client had, and the sink's
/// outcome once its work is over.
async fn relay(url: &str) -> (Vec<u8>, bool, Arc<Mutex<Outcome>>) {
    let bytes = object();
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    let verifier = Verifier::new(&digest, bytes.len() as u64).unwrap();
    let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = bytes
        .chunks(CHUNK)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let upstream = reqwest::Body::wrap(http_body_util::StreamBody::new(
        futures_util::stream::iter(chunks),
    ));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let sink = SlowSink {
        bytes: Vec::new(),
        busy: None,
        outcome: outcome.clone(),
    };
    let request = http::Request::get(url).body(Vec::new()).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resume = Resume::of(&reqwest::Client::new(), &request, Duration::from_secs(5));
    let body = storing_body(upstream, Box::new(sink), verifier, None, resume);
    let got = body.collect().await.unwrap().to_bytes().to_vec();
    let store_done = outcome.lock().unwrap().dropped;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !outcome.lock().unwrap().dropped && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (got, store_done, outcome)
}

#[tokio::test]
async fn a_slow_store_catches_up_without_holding_the_client() {
    let (url, ranges) =
        upstream(|from| ranged(|from| object()[from as usize..].to_vec(), from)).await;
    let (got, store_done, outcome) = relay(&url).await;
    assert!(got == object(), "the client got the whole object");
    // The store needs CHUNKS × 5 ms: a client that waited for it would find it done.
    assert!(!store_done, "the client's relay waited for the store");
    let ranges = ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 1, "one request for the rest: {ranges:?}");
    let outcome = outcome.lock().unwrap();
    assert!(
        outcome.committed.as_deref() == Some(&object()[..]),
        "the store kept the object"
    );
}

#[tokio::test]
async fn an_upstream_that_ignores_ranges_is_read_past_the_start() {
    let (url, ranges) = upstream(|_| ranged(|_| Vec::new(), None)).await;
    let (got, _, outcome) = relay(&url).await;
    assert!(got == object());
    assert_eq!(ranges.lock().unwrap().len(), 1);
    let outcome = outcome.lock().unwrap();
    assert!(
        outcome.committed.as_deref() == Some(&object()[..]),
        "the store kept the object"
    );
}

#[tokio::test]
async fn a_rest_that_does_not_match_the_digest_is_not_kept() {
    let wrong = |from: u64| vec![0u8; object().len() - from as usize];
    let (url, _) = upstream(move |from| ranged(wrong, from)).await;
    let (got, _, outcome) = relay(&url).await;
    assert!(got == object(), "the client's own bytes were right");
    let outcome = outcome.lock().unwrap();
    assert!(
        outcome.dropped && outcome.committed.is_none(),
        "nothing kept"
    );
}

#[tokio::test]
async fn a_range_answer_from_elsewhere_in_the_object_is_not_kept() {
    // A 206 for another start than the one asked for.
    let (url, _) = upstream(|from| {
        let mut answer = ranged(|from| object()[from as usize..].to_vec(), from);
        let text = String::from_utf8_lossy(&answer).to_string();
        if let Some(from) = from {
            let moved = text.replacen(
                &format!("bytes {from}-"),
                &format!("bytes {}-", from - 1),
                1,
            );
            answer = moved.into_bytes();
        }
        answer
    })
    .await;
    let (_, _, outcome) = relay(&url).await;
    let outcome = outcome.lock().unwrap();
    assert!(
        outcome.dropped && outcome.committed.is_none(),
        "nothing kept"
    );
}

/// A store that fell behind on the object's last write only, with every byte in hand: it keeps
/// the object without asking the upstream for a range past its end (which answers 416).
#[tokio::test]
async fn a_store_behind_on_the_last_write_only_asks_for_nothing() {
    let (url, ranges) = upstream(|_| {
        b"HTTP/1.1 416 Range Not Satisfiable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            .to_vec()
    })
    .await;
    // One chunk: the sink is busy after taking it, as a bucket's upload is at its start.
    let bytes = vec![7u8; 400];
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    let verifier = Verifier::new(&digest, bytes.len() as u64).unwrap();
    let upstream_body = reqwest::Body::wrap(http_body_util::StreamBody::new(
        futures_util::stream::iter([Ok::<_, std::io::Error>(Frame::data(Bytes::from(
            bytes.clone(),
        )))]),
    ));
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let sink = SlowSink {
        bytes: Vec::new(),
        busy: None,
        outcome: outcome.clone(),
    };
    let request = http::Request::get(&url).body(Vec::new()).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resume = Resume::of(&reqwest::Client::new(), &request, Duration::from_secs(5));
    let body = storing_body(upstream_body, Box::new(sink), verifier, None, resume);
    let got = body.collect().await.unwrap().to_bytes().to_vec();
    assert_eq!(got, bytes);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !outcome.lock().unwrap().dropped && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ranges.lock().unwrap().is_empty(), "asked for a range");
    assert_eq!(
        outcome.lock().unwrap().committed.as_deref(),
        Some(&bytes[..]),
        "the store did not keep the object"
    );
}

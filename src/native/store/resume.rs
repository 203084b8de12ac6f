//! How to ask the upstream again for the rest of an object whose answer was relayed: the same
//! request with `Range: bytes=N-`. A store that fell behind the relay uses it (`catch_up`), and
//! so do the readers of a growing object whose disk broke (`growing`).

use http::header::{CONTENT_RANGE, RANGE};
use http::{Request, StatusCode};
use std::time::Duration;

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

/// The upstream's answer for the object from byte `from` (`Range: bytes=FROM-`, the request that
/// was relayed), and how many of its bytes to skip: none for a `206` from `from`, `from` for an
/// upstream that ignores ranges and answers `200` whole.
pub async fn ask_rest(resume: &Resume, from: u64) -> Result<(reqwest::Body, u64), String> {
    let mut request = Request::new(Vec::new());
    *request.method_mut() = resume.request.method().clone();
    *request.uri_mut() = resume.request.uri().clone();
    *request.headers_mut() = resume.request.headers().clone();
    let range = format!("bytes={from}-");
    request
        .headers_mut()
        .insert(RANGE, range.parse().expect("a valid header"));
    let request = reqwest::Request::try_from(request).map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(resume.timeout, resume.client.execute(request))
        .await
        .map_err(|_| "the upstream did not answer in time".to_string())?
        .map_err(|e| e.to_string())?;
    let skip = match answer.status() {
        StatusCode::PARTIAL_CONTENT if starts_at(answer.headers().get(CONTENT_RANGE), from) => 0,
        StatusCode::OK => from,
        status => return Err(format!("the upstream answered {status} to {range}")),
    };
    Ok((
        http::Response::<reqwest::Body>::from(answer).into_body(),
        skip,
    ))
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

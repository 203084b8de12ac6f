//! The responses the mirror makes itself, and the heads it relays: the registry's headers, HEAD
//! without a body, JSON, HTML, and the 429 of an upstream's rate limit.

use super::*;

pub(super) fn relay_head(
    status: StatusCode,
    from: &HeaderMap,
    names: &[&'static str],
) -> response::Parts {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = status;
    upstream::copy_headers(from, &mut parts.headers, names);
    add_api_version(&mut parts.headers);
    parts
}

pub(super) fn add_api_version(headers: &mut HeaderMap) {
    headers.insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
}

/// A HEAD answer keeps the headers (and `Content-Length`) of the GET answer, without its body.
pub(super) fn for_method(method: &Method, mut response: Response<Vec<u8>>) -> Response<Vec<u8>> {
    if *method == Method::HEAD {
        response.body_mut().clear();
    }
    response
}

pub(super) fn answer_error(method: &Method, error: RegistryError, summary: Summary) -> Step {
    Step::Answer(for_method(method, error.into_response()), summary)
}

pub(super) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(super) fn answer_html(method: &Method, html: String, summary: Summary) -> Step {
    let mut response = Response::new(html.into_bytes());
    let length = response.body().len();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Step::Answer(for_method(method, response), summary)
}

pub(super) fn answer_json(
    method: &Method,
    status: StatusCode,
    body: Vec<u8>,
    summary: Summary,
) -> Step {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let length = response.body().len();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    add_api_version(headers);
    Step::Answer(for_method(method, response), summary)
}

/// An upstream 429 as the registry's `TOOMANYREQUESTS`, with `Retry-After` and the rate-limit
/// headers, whether the upstream sent JSON or a bare 429.
pub(super) fn answer_too_many(method: &Method, upstream: &HeaderMap, summary: Summary) -> Step {
    Step::Answer(too_many(method, upstream), summary)
}

/// The head of a `307` without a body: the caller adds `Location` (the core, or an adapter that
/// signs a URL of its store).
pub(super) fn redirect_head() -> response::Parts {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = StatusCode::TEMPORARY_REDIRECT;
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    add_api_version(&mut parts.headers);
    parts
}

/// The answer to an upstream 429: the mirror's own, with the upstream's rate-limit headers.
pub(super) fn too_many(method: &Method, upstream: &HeaderMap) -> Response<Vec<u8>> {
    let mut response = RegistryError::new(
        ErrorCode::TooManyRequests,
        "the upstream registry's rate limit was reached",
    )
    .into_response();
    let headers = response.headers_mut();
    upstream::copy_headers(
        upstream,
        headers,
        &[
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
            "docker-ratelimit-source",
        ],
    );
    let retry_after = upstream
        .get(header::RETRY_AFTER)
        .cloned()
        .unwrap_or(HeaderValue::from_static(DEFAULT_RETRY_AFTER));
    headers.insert(header::RETRY_AFTER, retry_after);
    for_method(method, response)
}

/// Too many wrong passwords from one address for one user: `429` with how long to wait.
pub(super) fn answer_too_many_logins(method: &Method, wait: u64, summary: Summary) -> Step {
    let mut response = RegistryError::new(
        ErrorCode::TooManyRequests,
        "too many failed logins from this address; try again later",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait.max(1)));
    Step::Answer(for_method(method, response), summary)
}

/// `GET /healthz`.
pub(super) fn answer_health(method: &Method, summary: Summary) -> Step {
    answer_json(
        method,
        StatusCode::OK,
        br#"{"status":"ok"}"#.to_vec(),
        summary,
    )
}

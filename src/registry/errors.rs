//! The registry's JSON errors.
//!
//! Every refusal the mirror makes, and every upstream failure it reports, is answered in the format
//! clients already understand: `{"errors":[{"code","message","detail"}]}` with the status that
//! distribution's `errcode` package gives the code. Clients print the message to the user, so it
//! says what went wrong in plain words.

use http::{header, HeaderValue, Response, StatusCode};

/// The error codes of the Docker Registry HTTP API v2 that this mirror answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthorized,
    Denied,
    NameUnknown,
    NameInvalid,
    TagInvalid,
    DigestInvalid,
    /// A `Range` the blob cannot satisfy (distribution's `RANGE_INVALID`, 416).
    RangeInvalid,
    Unsupported,
    TooManyRequests,
    Unavailable,
    /// A path that is no endpoint of the API.
    NotFound,
    /// A request the mirror will not read: URL, headers or body over their bounds, or a malformed
    /// header such as the `Host`.
    BadRequest,
}

impl ErrorCode {
    pub fn code(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::BadRequest => "BAD_REQUEST",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::NameUnknown | ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::NameInvalid
            | ErrorCode::TagInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// One registry error, ready to become a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    pub code: ErrorCode,
    pub status: StatusCode,
    pub message: String,
    pub detail: Option<String>,
}

impl RegistryError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RegistryError {
            code,
            status: code.status(),
            message: message.into(),
            detail: None,
        }
    }

    /// The same error with another status, where HTTP has a more precise one (414, 431, 413).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The JSON body: `{"errors":[{"code","message","detail"}]}`.
    pub fn body(&self) -> Vec<u8> {
        let detail = match &self.detail {
            Some(d) => serde_json::Value::String(d.clone()),
            None => serde_json::Value::Null,
        };
        serde_json::to_vec(&serde_json::json!({
            "errors": [{"code": self.code.code(), "message": self.message, "detail": detail}]
        }))
        .unwrap_or_default()
    }

    pub fn into_response(self) -> Response<Vec<u8>> {
        let body = self.body();
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
        let length = response.body().len();
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        response
    }
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.code(), self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_registry_json_format() {
        let err = RegistryError::new(ErrorCode::NameInvalid, "invalid repository name")
            .with_detail("Foo");
        let value: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(value["errors"][0]["code"], "NAME_INVALID");
        assert_eq!(value["errors"][0]["message"], "invalid repository name");
        assert_eq!(value["errors"][0]["detail"], "Foo");
        let response = err.into_response();
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.headers()[header::CONTENT_LENGTH],
            response.body().len().to_string().as_str()
        );
    }

    #[test]
    fn statuses_follow_distribution() {
        assert_eq!(ErrorCode::Unauthorized.status(), 401);
        assert_eq!(ErrorCode::Denied.status(), 403);
        assert_eq!(ErrorCode::NameUnknown.status(), 404);
        assert_eq!(ErrorCode::Unsupported.status(), 405);
        assert_eq!(ErrorCode::TooManyRequests.status(), 429);
        assert_eq!(ErrorCode::Unavailable.status(), 503);
    }
}

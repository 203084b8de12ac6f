//! The registry's JSON errors.
//!
//! Every refusal the mirror makes, and every upstream failure it reports, is answered in the format
//! clients already understand: `{"errors":[{"code","message","detail"}]}` with the status that
//! distribution's `errcode` package gives the code. Clients print the message to the user, so it
//! says what went wrong in plain words. Every 4xx answer's code is one of the OCI distribution
//! spec's list ("Error Codes": "the `code` field MUST be one of the following"), so a request the
//! spec has no code for takes the nearest one (`UNSUPPORTED`), its message saying the rest.

use http::{header, HeaderValue, Response, StatusCode};

/// The error codes of the Docker Registry HTTP API v2 that this mirror answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthorized,
    Denied,
    NameUnknown,
    NameInvalid,
    /// A manifest that does not exist, or whose reference cannot name one (the spec's pull
    /// section answers `404` for a manifest that does not exist, whatever its reference).
    ManifestUnknown,
    DigestInvalid,
    /// A `Range` the blob cannot satisfy (416; distribution says `RANGE_INVALID`, which the
    /// spec's list lacks: `SIZE_INVALID` is its code for lengths that do not fit).
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
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::RangeInvalid => "SIZE_INVALID",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            // A 5xx: the spec's list is for 4xx answers; distribution's code.
            ErrorCode::Unavailable => "UNAVAILABLE",
            // No endpoint, or a request the mirror will not read: the spec has no code of its
            // own for these; the message says which.
            ErrorCode::NotFound | ErrorCode::BadRequest => "UNSUPPORTED",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::NameUnknown | ErrorCode::NotFound | ErrorCode::ManifestUnknown => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::NameInvalid | ErrorCode::DigestInvalid | ErrorCode::BadRequest => {
                StatusCode::BAD_REQUEST
            }
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
    /// With a `405`, the methods the resource allows (RFC 9110 §15.5.6: the answer MUST carry
    /// `Allow`); `GET, HEAD` unless said otherwise.
    pub allow: Option<&'static str>,
}

impl RegistryError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RegistryError {
            code,
            status: code.status(),
            message: message.into(),
            detail: None,
            allow: None,
        }
    }

    /// The methods a `405` says the resource allows.
    pub fn with_allow(mut self, methods: &'static str) -> Self {
        self.allow = Some(methods);
        self
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
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            let allow = self.allow.unwrap_or("GET, HEAD");
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
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

    /// The OCI distribution spec's error codes ("Error Codes", v1.1): a 4xx body's code MUST be
    /// one of them.
    const SPEC_CODES: &[&str] = &[
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
    ];

    #[test]
    fn every_4xx_code_is_the_specs() {
        use ErrorCode::*;
        for code in [
            Unauthorized,
            Denied,
            NameUnknown,
            NameInvalid,
            ManifestUnknown,
            DigestInvalid,
            RangeInvalid,
            Unsupported,
            TooManyRequests,
            Unavailable,
            NotFound,
            BadRequest,
        ] {
            if code.status().is_client_error() {
                assert!(
                    SPEC_CODES.contains(&code.code()),
                    "{code:?}: {}",
                    code.code()
                );
            }
        }
    }

    #[test]
    fn a_405_says_what_is_allowed() {
        let refused = RegistryError::new(ErrorCode::Unsupported, "read-only").into_response();
        assert_eq!(refused.status(), 405);
        assert_eq!(refused.headers()[header::ALLOW], "GET, HEAD");
        let token = RegistryError::new(ErrorCode::Unsupported, "no")
            .with_allow("GET, POST")
            .into_response();
        assert_eq!(token.headers()[header::ALLOW], "GET, POST");
        let other = RegistryError::new(ErrorCode::NameUnknown, "x").into_response();
        assert!(other.headers().get(header::ALLOW).is_none());
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

//! What a request asks for: the registry API endpoint it names, checked against the grammar.
//!
//! Routing is the first step of every request; anything it does not recognise, or that this
//! read-only mirror does not serve, is refused here with the registry error for it.

use crate::registry::errors::{ErrorCode, RegistryError};
use crate::registry::reference::{is_valid_digest, is_valid_name, Reference, ReferenceError};
use http::Method;

/// The longest path and query the mirror reads (Fastly's own limit is 8 KiB).
pub const MAX_URL_LEN: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET`/`HEAD /v2/`: the API version check, where clients learn the challenge.
    Ping,
    /// `GET`/`POST /token`: the mirror's token service.
    Token,
    /// `GET`/`HEAD /v2/<name>/manifests/<reference>`.
    Manifest { name: String, reference: Reference },
    /// `GET`/`HEAD /v2/<name>/blobs/<digest>`.
    Blob { name: String, digest: String },
    /// `GET /v2/<name>/tags/list`.
    Tags { name: String },
    /// `GET /healthz`: for load balancers.
    Health,
    /// `GET /`: the page for people.
    Page,
    /// `GET /v1/search`: Docker Hub's search, as `docker search mirror/name` calls it.
    Search,
}

impl Route {
    /// A short label for logs.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Ping => "ping",
            Route::Token => "token",
            Route::Manifest { .. } => "manifest",
            Route::Blob { .. } => "blob",
            Route::Tags { .. } => "tags",
            Route::Health => "health",
            Route::Page => "page",
            Route::Search => "search",
        }
    }

    /// The digest of the immutable content a route names: a blob's, or a manifest's asked for
    /// by digest.
    pub fn content_digest(&self) -> Option<&str> {
        match self {
            Route::Blob { digest, .. } => Some(digest),
            Route::Manifest {
                reference: Reference::Digest(digest),
                ..
            } => Some(digest),
            _ => None,
        }
    }

    /// The tag a manifest route names, if it names one.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Route::Manifest {
                reference: Reference::Tag(tag),
                ..
            } => Some(tag),
            _ => None,
        }
    }

    /// The repository a route names, if any.
    pub fn repository(&self) -> Option<&str> {
        match self {
            Route::Manifest { name, .. } | Route::Blob { name, .. } | Route::Tags { name } => {
                Some(name)
            }
            _ => None,
        }
    }
}

/// Routes a request by its method and path (the query is not routing's concern).
pub fn route(method: &Method, path: &str) -> Result<Route, RegistryError> {
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| RegistryError::new(ErrorCode::BadRequest, "path is not UTF-8"))?;
    let path = path.as_ref();
    let read_only = || {
        RegistryError::new(
            ErrorCode::Unsupported,
            "this is a read-only mirror: push and delete are not supported",
        )
    };
    let method_allowed = |allowed: &[Method]| {
        if allowed.contains(method) {
            Ok(())
        } else if matches!(
            *method,
            Method::PUT | Method::POST | Method::PATCH | Method::DELETE
        ) {
            Err(read_only())
        } else {
            Err(RegistryError::new(
                ErrorCode::Unsupported,
                format!("method {method} is not supported here"),
            ))
        }
    };
    let get_head = [Method::GET, Method::HEAD];

    match path {
        "/v2" | "/v2/" => return method_allowed(&get_head).map(|_| Route::Ping),
        "/token" | "/v2/token" => {
            return method_allowed(&[Method::GET, Method::POST])
                .map(|_| Route::Token)
                .map_err(|e| e.with_allow("GET, POST"))
        }
        "/healthz" => return method_allowed(&get_head).map(|_| Route::Health),
        "/" | "/index.html" => return method_allowed(&get_head).map(|_| Route::Page),
        "/v1/search" => return method_allowed(&get_head).map(|_| Route::Search),
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Err(not_found());
    };

    if let Some((name, tail)) = split_at_last(rest, "/blobs/") {
        if tail == "uploads" || tail.starts_with("uploads/") {
            check_name(name)?;
            // Uploads take no method here (RFC 9110: an empty Allow says so).
            return Err(read_only().with_allow(""));
        }
        method_allowed(&get_head)?;
        check_name(name)?;
        if !is_valid_digest(tail) {
            return Err(
                RegistryError::new(ErrorCode::DigestInvalid, "invalid digest").with_detail(tail),
            );
        }
        return Ok(Route::Blob {
            name: name.to_string(),
            digest: tail.to_string(),
        });
    }
    if let Some((name, tail)) = split_at_last(rest, "/manifests/") {
        method_allowed(&get_head)?;
        check_name(name)?;
        // A tag that can name no manifest names one that does not exist: the spec's pull section
        // answers 404 for it (its conformance tests ask for `.INVALID_MANIFEST_NAME`). A digest
        // that is not one stays the spec's DIGEST_INVALID.
        let reference = Reference::parse(tail).map_err(|e| match e {
            ReferenceError::Tag => RegistryError::new(
                ErrorCode::ManifestUnknown,
                "manifest unknown: not a valid tag",
            )
            .with_detail(tail),
            ReferenceError::Digest => {
                RegistryError::new(ErrorCode::DigestInvalid, "invalid digest").with_detail(tail)
            }
        })?;
        return Ok(Route::Manifest {
            name: name.to_string(),
            reference,
        });
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        method_allowed(&get_head)?;
        check_name(name)?;
        return Ok(Route::Tags {
            name: name.to_string(),
        });
    }
    if rest == "_catalog" {
        return Err(RegistryError::new(
            ErrorCode::Unsupported,
            "the catalog is not served by this mirror",
        )
        .with_allow(""));
    }
    Err(not_found())
}

fn split_at_last<'a>(text: &'a str, marker: &str) -> Option<(&'a str, &'a str)> {
    let at = text.rfind(marker)?;
    Some((&text[..at], &text[at + marker.len()..]))
}

fn check_name(name: &str) -> Result<(), RegistryError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        let shown: String = name.chars().take(300).collect();
        Err(
            RegistryError::new(ErrorCode::NameInvalid, "invalid repository name")
                .with_detail(shown),
        )
    }
}

fn not_found() -> RegistryError {
    RegistryError::new(
        ErrorCode::NotFound,
        "no such endpoint in this registry mirror",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(method: Method, path: &str) -> &'static str {
        route(&method, path).unwrap_err().code.code()
    }

    #[test]
    fn endpoints() {
        assert_eq!(route(&Method::GET, "/v2/"), Ok(Route::Ping));
        assert_eq!(route(&Method::HEAD, "/v2"), Ok(Route::Ping));
        assert_eq!(route(&Method::POST, "/token"), Ok(Route::Token));
        assert_eq!(route(&Method::GET, "/"), Ok(Route::Page));
        assert_eq!(route(&Method::GET, "/v1/search"), Ok(Route::Search));
        assert_eq!(
            route(&Method::HEAD, "/v2/library/alpine/manifests/3.19"),
            Ok(Route::Manifest {
                name: "library/alpine".into(),
                reference: Reference::Tag("3.19".into())
            })
        );
        let digest = format!("sha256:{}", "c".repeat(64));
        assert_eq!(
            route(&Method::GET, &format!("/v2/alpine/blobs/{digest}")),
            Ok(Route::Blob {
                name: "alpine".into(),
                digest: digest.clone()
            })
        );
        assert_eq!(
            route(
                &Method::GET,
                &format!("/v2/a/manifests/sha256%3A{}", "c".repeat(64))
            ),
            Ok(Route::Manifest {
                name: "a".into(),
                reference: Reference::Digest(digest)
            })
        );
        assert_eq!(
            route(&Method::GET, "/v2/a/b/tags/list"),
            Ok(Route::Tags { name: "a/b".into() })
        );
        // A repository may itself be called "manifests" or "blobs".
        assert_eq!(
            route(&Method::GET, "/v2/manifests/manifests/latest"),
            Ok(Route::Manifest {
                name: "manifests".into(),
                reference: Reference::Tag("latest".into())
            })
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(code(Method::PUT, "/v2/a/manifests/latest"), "UNSUPPORTED");
        assert_eq!(
            code(Method::DELETE, "/v2/a/manifests/latest"),
            "UNSUPPORTED"
        );
        assert_eq!(code(Method::POST, "/v2/a/blobs/uploads/"), "UNSUPPORTED");
        assert_eq!(code(Method::PATCH, "/v2/a/blobs/uploads/x"), "UNSUPPORTED");
        assert_eq!(code(Method::OPTIONS, "/v2/"), "UNSUPPORTED");
        assert_eq!(code(Method::GET, "/v2/_catalog"), "UNSUPPORTED");
        assert_eq!(code(Method::GET, "/v2/A/manifests/latest"), "NAME_INVALID");
        assert_eq!(
            code(Method::GET, "/v2/../etc/manifests/latest"),
            "NAME_INVALID"
        );
        assert_eq!(
            code(Method::GET, "/v2/a%2F..%2Fb/manifests/x"),
            "NAME_INVALID"
        );
        assert_eq!(
            code(Method::GET, "/v2/a/manifests/-bad"),
            "MANIFEST_UNKNOWN"
        );
        assert_eq!(
            code(Method::GET, "/v2/a/manifests/sha256:xyz"),
            "DIGEST_INVALID"
        );
        assert_eq!(code(Method::GET, "/v2/a/blobs/latest"), "DIGEST_INVALID");
        assert_eq!(code(Method::GET, "/v2/a/blobs/"), "DIGEST_INVALID");
        assert_eq!(code(Method::GET, "/etc/passwd"), "UNSUPPORTED");
        assert_eq!(code(Method::GET, "/v2/a"), "UNSUPPORTED");
        assert_eq!(code(Method::GET, "/v2/a/%ff/tags/list"), "UNSUPPORTED");
        let long = format!("/v2/{}/tags/list", "a".repeat(256));
        assert_eq!(code(Method::GET, &long), "NAME_INVALID");
    }
}

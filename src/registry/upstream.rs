//! Upstream requests and responses: which headers cross the mirror in each direction, and where a
//! redirect may lead.
//!
//! Headers are allow-listed, never deny-listed: a client's cookies or credentials, or an upstream's
//! realm, cannot leak through by being forgotten. Object storage gets the fewest: a signed URL
//! refuses a request that also carries `Authorization`.

use http::header::{HeaderMap, HeaderName};

/// Client headers sent on to a registry.
pub const CLIENT_TO_REGISTRY: &[&str] = &[
    "accept",
    "accept-encoding",
    "range",
    "if-none-match",
    "if-modified-since",
    "if-range",
    "user-agent",
];

/// Client headers sent on to object storage: nothing that authenticates.
pub const CLIENT_TO_STORAGE: &[&str] = &["range", "accept-encoding", "user-agent"];

/// Registry headers relayed to the client. `Link` is rewritten separately; `WWW-Authenticate`
/// never passes (the mirror answers its own challenge).
pub const REGISTRY_TO_CLIENT: &[&str] = &[
    "content-type",
    "content-length",
    "content-range",
    "content-encoding",
    "accept-ranges",
    "docker-content-digest",
    "docker-distribution-api-version",
    "etag",
    "last-modified",
    "retry-after",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "docker-ratelimit-source",
];

/// Storage headers relayed to the client.
pub const STORAGE_TO_CLIENT: &[&str] = &[
    "content-type",
    "content-length",
    "content-range",
    "content-encoding",
    "accept-ranges",
    "etag",
    "last-modified",
];

/// Copies the headers named in `names` (every value of each) from `from` into `to`.
pub fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, names: &[&'static str]) {
    for &name in names {
        let name = HeaderName::from_static(name);
        for value in from.get_all(&name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Copies a client's headers named in `names` into an upstream request, each name on one line:
/// several lines of one name (dockerd sends one `Accept` a media type) are joined with commas, as
/// RFC 9110 §5.3 allows for list-valued fields. An HTTP proxy between the mirror and its upstream
/// may keep only one line of a name (tinyproxy does, in the tests): the registry then saw one
/// media type and answered a manifest in another form than the client asked for.
pub fn copy_request_headers(from: &HeaderMap, to: &mut HeaderMap, names: &[&'static str]) {
    for &name in names {
        let name = HeaderName::from_static(name);
        let values: Vec<&[u8]> = from.get_all(&name).iter().map(|v| v.as_bytes()).collect();
        let joined = match values.as_slice() {
            [] => continue,
            [one] => one.to_vec(),
            many => many.join(&b", "[..]),
        };
        if let Ok(value) = http::HeaderValue::from_bytes(&joined) {
            to.insert(name, value);
        }
    }
}

/// Where a redirect's `Location` leads, as an absolute `http(s)` URL. A relative location resolves
/// against `base` (the URL that answered). Anything else is refused.
pub fn resolve_location(base: &str, location: &str) -> Option<String> {
    let location = location.trim();
    if location.starts_with("http://") || location.starts_with("https://") {
        let uri: http::Uri = location.parse().ok()?;
        uri.authority()?;
        return Some(location.to_string());
    }
    if location.starts_with('/') && !location.starts_with("//") {
        let base: http::Uri = base.parse().ok()?;
        let absolute = format!("{}://{}{}", base.scheme_str()?, base.authority()?, location);
        absolute.parse::<http::Uri>().ok()?;
        return Some(absolute);
    }
    None
}

/// Rewrites a tags-list `Link: </v2/<upstream name>/tags/list?…>; rel="next"` to the client's name.
pub fn rewrite_link(
    link: &str,
    upstream_name: &str,
    client_name: &str,
    ns: Option<&str>,
) -> Option<String> {
    let upstream_path = format!("</v2/{upstream_name}/tags/list");
    let rest = link.trim().strip_prefix(&upstream_path)?;
    // The registry the client chose with `ns` must be the one the next page asks too.
    let rest = match ns {
        None => rest.to_string(),
        Some(ns) => {
            let ns: String = form_urlencoded::byte_serialize(ns.as_bytes()).collect();
            match rest.strip_prefix('?') {
                Some(query) => format!("?ns={ns}&{query}"),
                None => format!("?ns={ns}{rest}"),
            }
        }
    };
    Some(format!("</v2/{client_name}/tags/list{rest}"))
}

/// The name a runtime gives the route to `host:port` (a Fastly backend): the host, lowercase,
/// with every character but letters and digits as `_`, then the port:
/// `registry-1.docker.io`, 443 → `registry_1_docker_io_443`. `fastly.toml` declares Docker Hub's
/// backends under these names.
pub fn backend_name(host: &str, port: u16) -> String {
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{host}_{port}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{header, HeaderValue};

    #[test]
    fn only_listed_headers_cross() {
        let mut from = HeaderMap::new();
        from.append(header::ACCEPT, HeaderValue::from_static("a"));
        from.append(header::ACCEPT, HeaderValue::from_static("b"));
        from.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        from.insert(header::COOKIE, HeaderValue::from_static("c"));
        from.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        let mut to = HeaderMap::new();
        copy_request_headers(&from, &mut to, CLIENT_TO_STORAGE);
        assert_eq!(to.len(), 1);
        assert_eq!(to[header::RANGE], "bytes=0-1");
        let mut to = HeaderMap::new();
        copy_request_headers(&from, &mut to, CLIENT_TO_REGISTRY);
        assert_eq!(to.get_all(header::ACCEPT).iter().count(), 1);
        assert_eq!(to[header::ACCEPT], "a, b");
        assert!(to.get(header::AUTHORIZATION).is_none());
        assert!(to.get(header::COOKIE).is_none());

        let mut upstream = HeaderMap::new();
        upstream.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=x"),
        );
        upstream.insert(
            "docker-content-digest",
            HeaderValue::from_static("sha256:x"),
        );
        upstream.insert(header::SET_COOKIE, HeaderValue::from_static("s"));
        let mut to = HeaderMap::new();
        copy_headers(&upstream, &mut to, REGISTRY_TO_CLIENT);
        assert_eq!(to.len(), 1);
        assert_eq!(to["docker-content-digest"], "sha256:x");
    }

    #[test]
    fn locations() {
        assert_eq!(
            resolve_location("https://r.io/v2/x", "https://cdn.example/blob?sig=1").as_deref(),
            Some("https://cdn.example/blob?sig=1")
        );
        assert_eq!(
            resolve_location("http://127.0.0.1:9/v2/x", "/s3/blob").as_deref(),
            Some("http://127.0.0.1:9/s3/blob")
        );
        for bad in [
            "//evil/x",
            "file:///etc/passwd",
            "relative/x",
            "",
            "http://",
        ] {
            assert!(
                resolve_location("https://r.io/v2/x", bad).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn backend_names() {
        assert_eq!(
            backend_name("registry-1.docker.io", 443),
            "registry_1_docker_io_443"
        );
        assert_eq!(backend_name("127.0.0.1", 5000), "127_0_0_1_5000");
        assert_eq!(backend_name("Auth.Docker.IO", 443), "auth_docker_io_443");
    }

    #[test]
    fn links() {
        assert_eq!(
            rewrite_link(
                "</v2/library/alpine/tags/list?last=3&n=2>; rel=\"next\"",
                "library/alpine",
                "alpine",
                None
            )
            .as_deref(),
            Some("</v2/alpine/tags/list?last=3&n=2>; rel=\"next\"")
        );
        assert_eq!(
            rewrite_link(
                "</v2/owner/app/tags/list?last=3&n=2>; rel=\"next\"",
                "owner/app",
                "owner/app",
                Some("ghcr.io")
            )
            .as_deref(),
            Some("</v2/owner/app/tags/list?ns=ghcr.io&last=3&n=2>; rel=\"next\"")
        );
        assert!(rewrite_link("<https://evil/x>", "library/alpine", "alpine", None).is_none());
    }
}

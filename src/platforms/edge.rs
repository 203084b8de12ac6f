//! What the Fastly Compute adapter decides, kept here so that it is plain code with tests: where its
//! settings live, what its cache keeps, and its log line. The adapter (`src/bin/fastly/`)
//! only does the I/O.
//!
//! Settings: Fastly limits Config Store lookups per request (32 on its limits page, 16 in 2024)
//! and `ConfigStore::get` panics past the limit. One key a setting would cost about 26 lookups a
//! request, so every setting lives in one key, [`SETTINGS_KEY`], as a JSON object of strings.
//! A request makes 4 lookups: that key, `WHITE_LIST` (which must not be a key of its own: the
//! mirror refuses to run open when it is), and the [`SECRETS`] in the Secret Store.
//! [`MAX_LOOKUPS`] is the budget the adapter enforces and the tests assert.

use std::collections::BTreeMap;
use std::time::Duration;

/// The Config Store key holding every setting: `{"WHITE_LIST": "alice,bob", …}`.
pub const SETTINGS_KEY: &str = "SETTINGS";

/// The secrets read from the Secret Store, one lookup each: the token secret, and Docker Hub's
/// accounts (the registry that counts pulls; other registries' accounts would cost a lookup
/// each on every request).
pub const SECRETS: &[&str] = &["TOKEN_SECRET", "UPSTREAM_AUTH_DOCKER_IO"];

/// The most store lookups one request may make (a quarter of Fastly's current limit).
pub const MAX_LOOKUPS: u32 = 8;

/// The settings document: a JSON object whose values are strings.
pub fn parse_settings(text: &str) -> Result<BTreeMap<String, String>, String> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("{SETTINGS_KEY} is not a JSON object: {e}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| format!("{SETTINGS_KEY} is not a JSON object of settings"))?;
    let mut settings = BTreeMap::new();
    for (key, value) in object {
        let value = value
            .as_str()
            .ok_or_else(|| format!("{SETTINGS_KEY}: the value of {key} is not a string"))?;
        settings.insert(key.clone(), value.to_string());
    }
    Ok(settings)
}

/// The largest object kept in Fastly's cache: every byte is hashed in the guest before the insert
/// is finished, and Fastly allows 50 ms of CPU a request. SHA-256 in the guest, measured under
/// Viceroy on this kind of machine, runs at about 360 MB/s with `sha2` built at opt-level 3 (the
/// `fastly` profile does so), so 4 MiB costs some 12 ms. Larger blobs stream host-side, unstored.
pub const MAX_VERIFIED_OBJECT: u64 = 4 * 1024 * 1024;

/// How long immutable content may stay in the cache (Fastly may evict it sooner).
pub const CACHE_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The headers a cached object is served with.
pub const CACHED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "docker-content-digest",
    "etag",
];

/// The cached object's metadata: the [`CACHED_HEADERS`] the answer has.
pub fn cache_metadata(header: impl Fn(&str) -> Option<String>) -> Vec<u8> {
    let head: Vec<(String, String)> = CACHED_HEADERS
        .iter()
        .filter_map(|name| header(name).map(|v| (name.to_string(), v)))
        .collect();
    serde_json::to_vec(&head).unwrap_or_default()
}

/// The headers stored by [`cache_metadata`].
pub fn cached_headers(metadata: &[u8]) -> Option<Vec<(String, String)>> {
    serde_json::from_slice(metadata).ok()
}

/// How one request went, for its log line.
pub struct Outcome {
    pub status: u16,
    pub bytes: Option<u64>,
    pub summary: crate::Summary,
    /// `-` (no store involved), `hit`, `stale` or `miss`: the core's `Summary::store`.
    pub cache: &'static str,
    pub upstream_requests: u32,
}

impl Outcome {
    /// The local server's log fields, with the cache's and the count of store lookups.
    pub fn log_line(&self, method: &http::Method, elapsed: Duration, lookups: u32) -> String {
        let s = &self.summary;
        serde_json::json!({
            "msg": "request",
            "method": method.as_str(),
            "route": s.route,
            "repository": s.repository.as_deref().unwrap_or("-"),
            "upstream": s.upstream.as_deref().unwrap_or("-"),
            "status": self.status,
            "bytes": self.bytes.unwrap_or(0),
            "duration_ms": elapsed.as_secs_f64() * 1000.0,
            "user": s.user.as_deref().unwrap_or("-"),
            "cache": self.cache,
            "upstream_requests": self.upstream_requests,
            "config_lookups": lookups,
            "counted_get": s.counted_get,
            "ratelimit_remaining": s.ratelimit_remaining.as_deref().unwrap_or("-"),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_one_json_object_of_strings() {
        let s = parse_settings(r#"{"WHITE_LIST":"alice,bob","BLOB_REDIRECTS":"large"}"#).unwrap();
        assert_eq!(s["WHITE_LIST"], "alice,bob");
        assert_eq!(s.len(), 2);
        assert!(parse_settings(r#"{"LARGE_BLOB_BYTES":4}"#)
            .unwrap_err()
            .contains("LARGE_BLOB_BYTES"));
        assert!(parse_settings("WHITE_LIST=alice").is_err());
        assert!(parse_settings(r#"["WHITE_LIST"]"#).is_err());
    }

    #[test]
    fn cache_metadata_keeps_the_served_headers_only() {
        let metadata = cache_metadata(|name| match name {
            "content-type" => Some("application/octet-stream".into()),
            "content-length" => Some("3".into()),
            "set-cookie" => Some("no".into()),
            _ => None,
        });
        let headers = cached_headers(&metadata).unwrap();
        assert_eq!(headers.len(), 2);
    }
}

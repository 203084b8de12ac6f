//! Settings read, defaults, refusals, and no password in an error.

use super::*;

#[test]
fn no_start_up_error_shows_a_password_in_a_url() {
    let mut keys: Vec<String> = SETTINGS.iter().map(|k| k.to_string()).collect();
    keys.extend(
        registry::BUILTIN
            .iter()
            .map(|b| registry::upstream_setting(b.name)),
    );
    for key in keys {
        for value in [
            "https://bob:hunter2@registry.example",
            "https://bob:hunter2@registry.example/path?x",
            "x=https://bob:hunter2@relay.example/p",
            "s3://bob:hunter2@bucket/prefix",
        ] {
            if let Err(e) = Config::from_lookup(|k| (k == key).then(|| value.to_string())) {
                assert!(!e.contains("hunter2"), "{key}: {e}");
                assert!(!e.contains("bob"), "{key}: {e}");
            }
        }
    }
    let e = Config::from_lookup(|k| {
        (k == "UPSTREAM_DOCKER_IO").then(|| "https://bob:hunter2@hub.example".to_string())
    })
    .unwrap_err();
    assert!(
        e.contains("UPSTREAM_DOCKER_IO") && e.contains("…@hub.example"),
        "{e}"
    );
    assert!(Config::from_lookup(|k| {
        (k == "STORAGE_RELAY").then(|| "cdn.example=https://u:p@relay.example/p".to_string())
    })
    .is_err());
    assert_eq!(
        redact("\"http://a:b@h:1/x\", s3://k@b, https://plain/"),
        "\"http://…@h:1/x\", s3://…@b, https://plain/"
    );
}
use std::collections::HashMap;

fn config(pairs: &[(&str, &str)]) -> Result<Config, String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn defaults() {
    let c = config(&[]).unwrap();
    assert_eq!(
        c.registries.get(0).upstream.to_string(),
        "https://registry-1.docker.io"
    );
    assert!(c.whitelist.is_none());
    assert_eq!(c.blob_redirects, BlobRedirects::Follow);
    assert!(!c.trust_forwarded_headers);
}

#[test]
fn registries_are_chosen_and_overridden() {
    let c = config(&[]).unwrap();
    assert_eq!(c.registries.len(), 9);
    let c = config(&[
        ("REGISTRIES", "docker.io, ghcr.io"),
        ("UPSTREAM_GHCR_IO", "http://127.0.0.1:5001"),
        ("REGISTRY_GHCR", "GHCR.Mirror.Example"),
    ])
    .unwrap();
    let names: Vec<&str> = c.registries.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["docker.io", "ghcr.io"]);
    assert_eq!(
        c.registries.get(1).upstream.to_string(),
        "http://127.0.0.1:5001"
    );
    assert_eq!(
        c.registries.get(1).mirror_host.as_deref(),
        Some("ghcr.mirror.example")
    );
    assert!(config(&[("REGISTRIES", "evil.example")])
        .unwrap_err()
        .contains("REGISTRIES"));
    assert!(config(&[("REGISTRIES", " , ")]).is_err());
    assert!(config(&[("UPSTREAM_QUAY_IO", "nope")])
        .unwrap_err()
        .contains("UPSTREAM_QUAY_IO"));
}

#[test]
fn a_whitelist_that_names_nobody_is_refused() {
    for nobody in [",", " ", " , ,"] {
        let err =
            config(&[("WHITE_LIST", nobody), ("TOKEN_SECRET", "0123456789abcdef")]).unwrap_err();
        assert!(err.contains("names nobody"), "{nobody:?}: {err}");
    }
    assert!(config(&[("WHITE_LIST", "")]).unwrap().whitelist.is_none());
}

#[test]
fn whitelist_needs_a_secret() {
    let err = config(&[("WHITE_LIST", "alice")]).unwrap_err();
    assert!(err.contains("TOKEN_SECRET"), "{err}");
    let c = config(&[
        ("WHITE_LIST", "alice"),
        ("TOKEN_SECRET", "0123456789abcdef"),
    ])
    .unwrap();
    assert!(c.whitelist.unwrap().allows("alice"));
    assert!(config(&[("TOKEN_SECRET", "short")]).is_err());
}

#[test]
fn bad_values_are_named() {
    assert!(config(&[("UPSTREAM_DOCKER_IO", "ftp://x")])
        .unwrap_err()
        .contains("UPSTREAM_DOCKER_IO"));
    assert!(config(&[("BLOB_REDIRECTS", "sometimes")])
        .unwrap_err()
        .contains("BLOB_REDIRECTS"));
    assert!(config(&[("TRUST_FORWARDED_HEADERS", "maybe")])
        .unwrap_err()
        .contains("TRUST_FORWARDED_HEADERS"));
    let c = config(&[
        ("PUBLIC_URL", "https://mirror.example"),
        ("BLOB_REDIRECTS", "pass"),
        ("TRUST_FORWARDED_HEADERS", "true"),
    ])
    .unwrap();
    assert_eq!(c.public_url.unwrap().host, "mirror.example");
    assert_eq!(c.blob_redirects, BlobRedirects::Pass);
    assert!(c.trust_forwarded_headers);
}

#[test]
fn large_blobs_and_relays() {
    let c = config(&[("BLOB_REDIRECTS", "large")]).unwrap();
    assert_eq!(
        c.blob_redirects,
        BlobRedirects::Large(DEFAULT_LARGE_BLOB_BYTES)
    );
    let c = config(&[
        ("BLOB_REDIRECTS", "large"),
        ("LARGE_BLOB_BYTES", "1000"),
        (
            "STORAGE_RELAY",
            "production.cloudflare.docker.com=https://d1.cloudfront.net/_blobs/cf/",
        ),
    ])
    .unwrap();
    assert_eq!(c.blob_redirects, BlobRedirects::Large(1000));
    assert_eq!(
        c.storage_relays,
        vec![StorageRelay {
            host: "production.cloudflare.docker.com".into(),
            prefix: "https://d1.cloudfront.net/_blobs/cf".into()
        }]
    );
    assert!(config(&[("STORAGE_RELAY", "x=ftp://y")]).is_err());
    assert!(config(&[("STORAGE_RELAY", "x=//y/z")]).is_err());
    let c = config(&[("STORAGE_RELAY", "cdn.example=/_storage/cdn")]).unwrap();
    assert_eq!(c.storage_relays[0].prefix, "/_storage/cdn");
    assert!(config(&[("STORAGE_RELAY", "nohost")]).is_err());
    assert!(config(&[("BLOB_REDIRECTS", "large"), ("LARGE_BLOB_BYTES", "many")]).is_err());
}

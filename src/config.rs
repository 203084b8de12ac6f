//! The mirror's settings, read from any key/value source: the environment for the local server and
//! Lambda, a Fastly Config Store (and Secret Store) on Fastly. Each runtime passes a lookup function;
//! the names and meanings are the same everywhere.

use crate::auth::Whitelist;
use crate::registry::{Registries, Registry, UpstreamUrl};
use crate::token::TokenSecret;

/// What the mirror does with an upstream's redirect of a blob to object storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobRedirects {
    /// Fetch the storage URL and stream the blob (clients need reach only the mirror).
    Follow,
    /// Hand the redirect to the client (for clients that can reach the storage host themselves).
    Pass,
    /// Stream blobs up to this many bytes; hand larger ones to the client as a redirect to the
    /// storage URL (for runtimes that cap or slow long responses, such as AWS Lambda).
    Large(u64),
}

/// The default size above which `BLOB_REDIRECTS=large` redirects a blob: 4 MiB.
pub const DEFAULT_LARGE_BLOB_BYTES: u64 = 4 * 1024 * 1024;

/// `STORAGE_RELAY`: storage redirects to `host` are rewritten to `prefix` + the URL's path and
/// query, for a relay (such as a CloudFront origin) in front of that storage host. A prefix that
/// is only a path (`/_storage/cloudflare`) is on the mirror's own public address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRelay {
    pub host: String,
    pub prefix: String,
}

/// The public address of the mirror, when it sits behind something that changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    pub scheme: String,
    pub host: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub registries: Registries,
    /// `WHITE_LIST`: when set, only these users may pull, with mirror tokens.
    pub whitelist: Option<Whitelist>,
    /// `TOKEN_SECRET`: signs mirror tokens. Required with `WHITE_LIST`.
    pub token_secret: Option<TokenSecret>,
    /// `PUBLIC_URL`: the scheme and host clients use, for the challenge's realm.
    pub public_url: Option<PublicUrl>,
    /// `TRUST_FORWARDED_HEADERS`: take scheme and host from `X-Forwarded-Proto`/`-Host`.
    pub trust_forwarded_headers: bool,
    /// `BLOB_REDIRECTS`: `follow` (default), `pass` or `large` (with `LARGE_BLOB_BYTES`).
    pub blob_redirects: BlobRedirects,
    /// `STORAGE_RELAY`: `host=https://relay/prefix`, comma-separated.
    pub storage_relays: Vec<StorageRelay>,
}

/// Every setting the core reads, for documentation and for the runtimes' stores.
pub const SETTINGS: &[&str] = &[
    "UPSTREAM_DOCKER_IO",
    "WHITE_LIST",
    "TOKEN_SECRET",
    "PUBLIC_URL",
    "TRUST_FORWARDED_HEADERS",
    "BLOB_REDIRECTS",
    "LARGE_BLOB_BYTES",
    "STORAGE_RELAY",
];

impl Config {
    /// Reads every setting through `lookup`; an empty value counts as unset. The error says which
    /// setting is wrong and why, for a start-up message.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let docker_hub = match get("UPSTREAM_DOCKER_IO") {
            Some(url) => {
                UpstreamUrl::parse(&url).map_err(|e| format!("UPSTREAM_DOCKER_IO: {e}"))?
            }
            None => UpstreamUrl::parse(Registry::DOCKER_HUB_UPSTREAM).expect("a valid URL"),
        };
        let registries = Registries::new(vec![Registry::docker_hub(docker_hub)]);

        let whitelist = get("WHITE_LIST").and_then(|v| Whitelist::parse(&v));
        // The secret keeps its exact bytes: no trimming.
        let token_secret = match lookup("TOKEN_SECRET").filter(|v| !v.is_empty()) {
            Some(secret) => Some(TokenSecret::new(&secret)?),
            None => None,
        };
        if whitelist.is_some() && token_secret.is_none() {
            return Err(
                "WHITE_LIST is set but TOKEN_SECRET is not: the mirror signs its tokens with \
                 TOKEN_SECRET (at least 16 random characters, e.g. `openssl rand -hex 32`)"
                    .to_string(),
            );
        }

        let public_url = match get("PUBLIC_URL") {
            Some(url) => {
                let parsed = UpstreamUrl::parse(&url).map_err(|e| format!("PUBLIC_URL: {e}"))?;
                Some(PublicUrl {
                    scheme: parsed.scheme().to_string(),
                    host: parsed.authority().to_string(),
                })
            }
            None => None,
        };

        let trust_forwarded_headers = match get("TRUST_FORWARDED_HEADERS").as_deref() {
            None => false,
            Some(v) => parse_bool(v)
                .ok_or_else(|| format!("TRUST_FORWARDED_HEADERS: {v:?} is not true or false"))?,
        };

        let blob_redirects = match get("BLOB_REDIRECTS").as_deref() {
            None | Some("follow") => BlobRedirects::Follow,
            Some("pass") => BlobRedirects::Pass,
            Some("large") => BlobRedirects::Large(match get("LARGE_BLOB_BYTES") {
                None => DEFAULT_LARGE_BLOB_BYTES,
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("LARGE_BLOB_BYTES: {v:?} is not a number of bytes"))?,
            }),
            Some(v) => {
                return Err(format!(
                    "BLOB_REDIRECTS: {v:?} is not follow, pass or large"
                ))
            }
        };

        let mut storage_relays = Vec::new();
        for entry in get("STORAGE_RELAY").unwrap_or_default().split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let bad = || {
                format!("STORAGE_RELAY: {entry:?} is not host=https://relay/prefix or host=/prefix")
            };
            let (host, prefix) = entry.split_once('=').ok_or_else(bad)?;
            let uri: http::Uri = prefix.parse().map_err(|_| bad())?;
            let absolute =
                matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some();
            let path_only = prefix.starts_with('/') && !prefix.starts_with("//");
            if !(absolute || path_only) || uri.query().is_some() || host.trim().is_empty() {
                return Err(bad());
            }
            storage_relays.push(StorageRelay {
                host: host.trim().to_ascii_lowercase(),
                prefix: prefix.trim_end_matches('/').to_string(),
            });
        }

        Ok(Config {
            registries,
            whitelist,
            token_secret,
            public_url,
            trust_forwarded_headers,
            blob_redirects,
            storage_relays,
        })
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}

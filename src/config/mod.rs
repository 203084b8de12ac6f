//! The mirror's settings, read from any key/value source: the environment for the local server and
//! Lambda, a Fastly Config Store (and Secret Store) on Fastly. Each runtime passes a lookup function;
//! the names and meanings are the same everywhere.

use crate::auth::token::TokenSecret;
use crate::auth::Whitelist;
use crate::registry::{self, Registries, Registry, UpstreamUrl};
use crate::store::{self, StoreSetting};

pub mod table;

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
    /// `UPSTREAM_SEARCH`: where `/v1/search` goes (Docker Hub's index).
    pub search_upstream: UpstreamUrl,
    /// Not a setting: whether the front before the mirror keeps the `Content-Length` of an answer
    /// to `HEAD`. Where it may not (a Lambda function URL, see `lambda`), manifest `HEAD` answers
    /// carry no `Docker-Content-Digest`, so that clients take the manifest by `GET` instead.
    pub head_lengths_kept: bool,
    /// `CACHE`: the content store (see `store`).
    pub store: StoreSetting,
    /// `CACHE_MAX_BYTES`: the most the store holds; the least recently used goes first.
    pub store_max_bytes: u64,
    /// Not a setting: stored blobs are answered with a redirect to a signed URL of the store, and
    /// blobs too large to stream (`BLOB_REDIRECTS=large`) are copied into the store first (Lambda
    /// with a bucket, see `lambda`).
    pub store_redirects: bool,
    /// Not a setting: the largest body an answer can carry in this runtime (a Lambda function
    /// URL's buffered response, see `lambda`); `None`: any. A larger blob the registry serves
    /// itself (no redirect to storage) is copied into the store and redirected to, or refused
    /// before its body is read.
    pub largest_answer: Option<u64>,
    /// Not a setting: the largest object the runtime's store keeps (Fastly's, where the guest
    /// hashes every byte within its CPU limit); `None`: any.
    pub store_max_object: Option<u64>,
    /// `ALLOW_NETWORKS`: clients from these networks pull without credentials, `WHITE_LIST` or
    /// not (cluster nodes send no credentials to a mirror).
    pub allow_networks: Vec<ipnet::IpNet>,
    /// `TAG_STALE_MAX_SECS`: how old the last digest seen for a tag may be and still be served
    /// when the upstream fails (0: never).
    pub tag_stale_max_secs: u64,
    /// `TAG_TTL_SECS`: for how long the last digest seen for a tag is served without asking the
    /// upstream again (0, the default: always ask, with a `HEAD`).
    pub tag_ttl_secs: u64,
}

/// Whether a setting holds a secret: runtimes with a secret store read it from there
/// (`TOKEN_SECRET`, and the mirror's own accounts, `UPSTREAM_AUTH_<NAME>`).
pub fn is_secret(key: &str) -> bool {
    key == "TOKEN_SECRET" || key.starts_with("UPSTREAM_AUTH_")
}

/// Docker Hub's search API (the v1 index).
pub const DOCKER_HUB_SEARCH: &str = "https://index.docker.io";

/// Every setting the core reads, for documentation and for the runtimes' stores.
pub const SETTINGS: &[&str] = &[
    "REGISTRIES",
    "UPSTREAM_<NAME>",
    "UPSTREAM_AUTH_<NAME>",
    "REGISTRY_<NAME>",
    "WHITE_LIST",
    "TOKEN_SECRET",
    "PUBLIC_URL",
    "TRUST_FORWARDED_HEADERS",
    "BLOB_REDIRECTS",
    "LARGE_BLOB_BYTES",
    "STORAGE_RELAY",
    "UPSTREAM_SEARCH",
    "CACHE",
    "CACHE_MAX_BYTES",
    "TAG_STALE_MAX_SECS",
    "TAG_TTL_SECS",
    "ALLOW_NETWORKS",
];

impl Config {
    /// Reads every setting through `lookup`; an empty value counts as unset. The error says which
    /// setting is wrong and why, for a start-up message.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        Config::read(lookup).map_err(|e| redact(&e))
    }

    fn read(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let registries = registries(&get)?;

        // Fail closed: a WHITE_LIST that is set but names nobody must not open the mirror.
        let whitelist = match lookup("WHITE_LIST").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(Whitelist::parse(&v).ok_or_else(|| {
                format!(
                    "WHITE_LIST: {v:?} names nobody; list Docker Hub users (alice,bob), or leave \
                     it empty for an open mirror"
                )
            })?),
        };
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

        // ALLOW_NETWORKS opens a private mirror to some networks; on an open mirror it would do
        // nothing, while reading as if only those networks were let in.
        if whitelist.is_none() && get("ALLOW_NETWORKS").is_some_and(|v| !v.trim().is_empty()) {
            return Err(
                "ALLOW_NETWORKS is set but WHITE_LIST is not: ALLOW_NETWORKS lets those networks \
                 pull without credentials past a WHITE_LIST, and without one every client may \
                 pull already, from anywhere. Set WHITE_LIST (and TOKEN_SECRET) to keep the \
                 mirror private, or remove ALLOW_NETWORKS; to keep other networks out, use a \
                 firewall or the listener's address"
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
            let user_info = uri.authority().is_some_and(|a| a.as_str().contains('@'));
            if !(absolute || path_only)
                || user_info
                || uri.query().is_some()
                || host.trim().is_empty()
            {
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
            search_upstream: match get("UPSTREAM_SEARCH") {
                Some(url) => {
                    UpstreamUrl::parse(&url).map_err(|e| format!("UPSTREAM_SEARCH: {e}"))?
                }
                None => UpstreamUrl::parse(DOCKER_HUB_SEARCH).expect("a valid URL"),
            },
            head_lengths_kept: true,
            store: StoreSetting::parse(get("CACHE").as_deref())?,
            store_max_bytes: positive_number(&get, "CACHE_MAX_BYTES", store::DEFAULT_MAX_BYTES)?,
            allow_networks: networks(get("ALLOW_NETWORKS"))?,
            store_redirects: false,
            largest_answer: None,
            store_max_object: None,
            tag_stale_max_secs: whole_number(
                &get,
                "TAG_STALE_MAX_SECS",
                store::DEFAULT_STALE_SECS,
            )?,
            tag_ttl_secs: whole_number(&get, "TAG_TTL_SECS", 0)?,
        })
    }
}

/// The built-in registries that `REGISTRIES` keeps (default: all), each with its upstream
/// (`UPSTREAM_<NAME>`) and its own mirror host (`REGISTRY_<...>`), if set.
fn registries(get: &dyn Fn(&str) -> Option<String>) -> Result<Registries, String> {
    let wanted: Option<Vec<String>> = get("REGISTRIES").map(|v| {
        v.split(',')
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect()
    });
    if let Some(wanted) = &wanted {
        for name in wanted {
            if !registry::BUILTIN.iter().any(|b| b.name == name) {
                let known: Vec<&str> = registry::BUILTIN.iter().map(|b| b.name).collect();
                return Err(format!(
                    "REGISTRIES: {name:?} is not one of {}",
                    known.join(", ")
                ));
            }
        }
    }
    let mut entries = Vec::new();
    for builtin in registry::BUILTIN {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.iter().any(|n| n == builtin.name))
        {
            continue;
        }
        let setting = registry::upstream_setting(builtin.name);
        let upstream = match get(&setting) {
            Some(url) => UpstreamUrl::parse(&url).map_err(|e| format!("{setting}: {e}"))?,
            None => UpstreamUrl::parse(builtin.upstream).expect("built-in URLs are valid"),
        };
        let auth_setting = setting.replacen("UPSTREAM_", "UPSTREAM_AUTH_", 1);
        let accounts = match get(&auth_setting) {
            Some(value) => crate::auth::accounts::parse(&auth_setting, &value)?,
            None => Vec::new(),
        };
        entries.push(Registry {
            name: builtin.name.to_string(),
            upstream,
            official_namespace: builtin.official_namespace.map(str::to_string),
            mirror_host: get(builtin.host_setting).map(|h| h.to_ascii_lowercase()),
            accounts,
        });
    }
    if entries.is_empty() {
        return Err("REGISTRIES: no registry is left to serve".to_string());
    }
    Ok(Registries::new(entries))
}

/// `message` with the user info of every URL in it hidden (`https://bob:secret@host` becomes
/// `https://…@host`): start-up errors quote settings, and reach journald, CloudWatch and Lambda's
/// init-error report.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| "/?#\"',; \t\n\\".contains(c))
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(i) => {
                out.push('…');
                out.push_str(&authority[i..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A positive whole number setting (seconds, a count), or `default` when unset.
pub fn positive_number(
    lookup: &dyn Fn(&str) -> Option<String>,
    key: &str,
    default: u64,
) -> Result<u64, String> {
    match lookup(key).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{key}: {v:?} is not a positive whole number")),
        },
    }
}

/// `ALLOW_NETWORKS`: CIDRs (`10.0.0.0/8`) or single addresses, comma-separated.
fn networks(value: Option<String>) -> Result<Vec<ipnet::IpNet>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<ipnet::IpNet>()
                .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| {
                    format!("ALLOW_NETWORKS: {n:?} is not a network (10.0.0.0/8) or an address")
                })
        })
        .collect()
}

/// A whole number setting where 0 means "off", or `default` when unset.
pub fn whole_number(
    lookup: &dyn Fn(&str) -> Option<String>,
    key: &str,
    default: u64,
) -> Result<u64, String> {
    match lookup(key).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{key}: {v:?} is not a whole number")),
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
mod tests;

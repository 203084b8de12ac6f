//! The content store: what the mirror keeps, under which key, when it serves it, and how its bytes
//! are checked. Decided here; the reads and writes are the adapters' (a directory for the local
//! server, in `disk_store`).
//!
//! What is kept: blobs, addressed by digest, whole. What is served from the store: a blob that a
//! client could pull from the upstream itself: every hit is first authorised by the upstream with
//! a `HEAD` of that blob under the repository asked for, with the client's own credentials (free
//! in Docker Hub's accounting), so a private layer is served only to those the upstream lets read
//! it, and only under a repository the upstream shows it in. What is stored: a blob whose bytes,
//! hashed while they are relayed, match its digest and length; anything else is dropped, and the
//! client's response is cut short so that even a client that checks nothing sees the failure.

pub mod keys;
pub mod verify;

/// `CACHE`: where the store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSetting {
    /// Not set: each runtime has its default (a directory for the local server, none elsewhere).
    Unset,
    /// `CACHE=none`.
    None,
    /// `CACHE=file:///path`: a directory.
    Directory(String),
}

impl StoreSetting {
    pub fn parse(value: Option<&str>) -> Result<StoreSetting, String> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(StoreSetting::Unset),
            Some("none") => Ok(StoreSetting::None),
            Some(v) => match v.strip_prefix("file://") {
                Some(path) if path.starts_with('/') => Ok(StoreSetting::Directory(path.into())),
                _ => Err(format!("CACHE: {v:?} is not file:///absolute/path or none")),
            },
        }
    }
}

/// What a lookup found: the object's length, and its media type (kept with manifests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub length: u64,
    pub media_type: Option<String>,
}

/// `CACHE_MAX_BYTES` by default: 10 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting() {
        assert_eq!(StoreSetting::parse(None).unwrap(), StoreSetting::Unset);
        assert_eq!(
            StoreSetting::parse(Some("none")).unwrap(),
            StoreSetting::None
        );
        assert_eq!(
            StoreSetting::parse(Some("file:///var/cache/m")).unwrap(),
            StoreSetting::Directory("/var/cache/m".into())
        );
        for bad in ["file://relative", "/var/cache", "s3://bucket"] {
            assert!(StoreSetting::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}

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
    /// `CACHE=s3://bucket/prefix`: S3-compatible object storage.
    Bucket { bucket: String, prefix: String },
    /// Not a setting: Fastly's cache, at each POP (the Fastly adapter's store).
    Edge,
}

impl StoreSetting {
    pub fn parse(value: Option<&str>) -> Result<StoreSetting, String> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(StoreSetting::Unset),
            Some("none") => Ok(StoreSetting::None),
            Some(v) => {
                if let Some(path) = v.strip_prefix("file://").filter(|p| p.starts_with('/')) {
                    return Ok(StoreSetting::Directory(path.into()));
                }
                let bucket = v
                    .strip_prefix("s3://")
                    .map(|rest| match rest.split_once('/') {
                        Some((bucket, prefix)) => (bucket, prefix.trim_matches('/')),
                        None => (rest, ""),
                    });
                match bucket {
                    Some((bucket, prefix)) if is_bucket_name(bucket) && is_prefix(prefix) => {
                        Ok(StoreSetting::Bucket {
                            bucket: bucket.into(),
                            prefix: prefix.into(),
                        })
                    }
                    _ => Err(format!(
                        "CACHE: {v:?} is not file:///absolute/path, s3://bucket/prefix or none"
                    )),
                }
            }
        }
    }
}

/// S3's bucket names: 3 to 63 lowercase letters, digits, dots and hyphens.
fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// A key prefix: path segments of letters, digits and `._-`.
fn is_prefix(prefix: &str) -> bool {
    prefix.is_empty()
        || prefix.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

/// What a lookup found: the object's length, and its media type (kept with manifests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub length: u64,
    pub media_type: Option<String>,
}

/// A small record the core asks an adapter to keep (after the answer, whatever becomes of it):
/// a tag's last digest, or that a digest was public under a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: Vec<u8>,
}

/// The most bytes of a record an adapter reads back.
pub const MAX_RECORD: usize = 1024;

/// What a tag record holds: the digest a client without credentials was shown for the tag, when,
/// and whose access stood behind it (`{digest} {unix seconds}[ account={user}]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    pub digest: String,
    pub seen_at: u64,
    pub access: Access,
}

/// Whose access a record stands for. What the upstream showed anyone may answer anyone; what it
/// showed the mirror's own account (`UPSTREAM_AUTH_<NAME>`, or `warm --user`) answers only
/// clients who pull with that account again, never a client the upstream would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Anyone,
    /// The account's user name, lowercased.
    Account(String),
}

impl Access {
    fn suffix(&self) -> String {
        match self {
            Access::Anyone => String::new(),
            Access::Account(user) => format!(" account={user}"),
        }
    }

    /// The access a record's remaining words name (none: anyone, as records always were).
    fn parse(rest: &[&str]) -> Option<Access> {
        match rest {
            [] => Some(Access::Anyone),
            [account] => {
                let user = account.strip_prefix("account=")?;
                (!user.is_empty()).then(|| Access::Account(user.to_string()))
            }
            _ => None,
        }
    }
}

impl TagRecord {
    pub fn to_bytes(&self) -> Vec<u8> {
        format!("{} {}{}", self.digest, self.seen_at, self.access.suffix()).into_bytes()
    }

    pub fn parse(bytes: &[u8]) -> Option<TagRecord> {
        let text = std::str::from_utf8(bytes).ok()?;
        let words: Vec<&str> = text.split_whitespace().collect();
        let [digest, seen_at, rest @ ..] = words.as_slice() else {
            return None;
        };
        crate::registry::reference::is_valid_digest(digest).then_some(())?;
        Some(TagRecord {
            digest: digest.to_string(),
            seen_at: seen_at.parse().ok()?,
            access: Access::parse(rest)?,
        })
    }
}

/// What a public record holds: when the upstream last showed the digest under the repository,
/// and to whose access (`{unix seconds}[ account={user}]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownRecord {
    pub seen_at: u64,
    pub access: Access,
}

impl ShownRecord {
    pub fn to_bytes(&self) -> Vec<u8> {
        format!("{}{}", self.seen_at, self.access.suffix()).into_bytes()
    }

    pub fn parse(bytes: &[u8]) -> Option<ShownRecord> {
        let text = std::str::from_utf8(bytes).ok()?;
        let words: Vec<&str> = text.split_whitespace().collect();
        let [seen_at, rest @ ..] = words.as_slice() else {
            return None;
        };
        Some(ShownRecord {
            seen_at: seen_at.parse().ok()?,
            access: Access::parse(rest)?,
        })
    }
}

/// `TAG_STALE_MAX_SECS` by default: 7 days.
pub const DEFAULT_STALE_SECS: u64 = 7 * 24 * 3600;

/// `CACHE_MAX_BYTES` by default: 10 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_records_read_back_and_refuse_garbage() {
        let record = TagRecord {
            digest: format!("sha256:{}", "a".repeat(64)),
            seen_at: 42,
            access: Access::Anyone,
        };
        assert_eq!(TagRecord::parse(&record.to_bytes()), Some(record.clone()));
        let alices = TagRecord {
            access: Access::Account("alice".into()),
            ..record
        };
        assert!(String::from_utf8(alices.to_bytes())
            .unwrap()
            .ends_with(" account=alice"));
        assert_eq!(TagRecord::parse(&alices.to_bytes()), Some(alices));
        for bad in [
            &b""[..],
            b"sha256:zz 1",
            b"x",
            b"sha256:aa",
            b"sha256:aa 1 bob",
        ] {
            assert_eq!(TagRecord::parse(bad), None);
        }
        let shown = |bytes: &[u8]| ShownRecord::parse(bytes);
        assert_eq!(shown(b"7").map(|r| r.access), Some(Access::Anyone));
        assert_eq!(
            shown(b"7 account=alice").map(|r| r.access),
            Some(Access::Account("alice".into()))
        );
        for bad in [&b"x"[..], b"7 alice", b"7 account=", b""] {
            assert_eq!(shown(bad), None);
        }
    }

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
        assert_eq!(
            StoreSetting::parse(Some("s3://mirror-store/eu/one")).unwrap(),
            StoreSetting::Bucket {
                bucket: "mirror-store".into(),
                prefix: "eu/one".into()
            }
        );
        assert_eq!(
            StoreSetting::parse(Some("s3://mirror-store")).unwrap(),
            StoreSetting::Bucket {
                bucket: "mirror-store".into(),
                prefix: "".into()
            }
        );
        for bad in [
            "file://relative",
            "/var/cache",
            "s3://",
            "s3://B",
            "s3://bucket/../x",
            "gs://bucket",
        ] {
            assert!(StoreSetting::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}

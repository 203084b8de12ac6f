//! The store's keys, on every runtime. Every key names the registry (a digest means
//! the same bytes everywhere, but a hit must never cross registries); keys leave the repository
//! out, so a layer shared by many images is kept once (the store checks the repository with the
//! upstream on every hit instead).

/// The key of a blob: `v1/{registry}/blobs/{algorithm}/{hex}`. `None` for a digest that is not
/// `algorithm:hex` (the route's grammar has checked it already).
pub fn blob(registry: &str, digest: &str) -> Option<String> {
    let (algorithm, hex) = digest.split_once(':')?;
    Some(format!("v1/{registry}/blobs/{algorithm}/{hex}"))
}

/// The key of a manifest: `v1/{registry}/manifests/{algorithm}/{hex}` (kept with its media type).
pub fn manifest(registry: &str, digest: &str) -> Option<String> {
    let (algorithm, hex) = digest.split_once(':')?;
    Some(format!("v1/{registry}/manifests/{algorithm}/{hex}"))
}

/// The record of a tag's last digest seen by an anonymous client:
/// `v1/{registry}/tags/{repository}/_tag/{tag}` (see `store::TagRecord`). No repository
/// component begins with `_`, so `_tag` keeps a repository's records apart from a deeper one's.
pub fn tag(registry: &str, repository: &str, tag: &str) -> String {
    format!("v1/{registry}/tags/{repository}/_tag/{tag}")
}

/// The record that the upstream showed an anonymous client this digest under this repository:
/// `v1/{registry}/public/{repository}/_digest/{algorithm}/{hex}`. `None` for a digest that is not
/// `algorithm:hex`.
pub fn public(registry: &str, repository: &str, digest: &str) -> Option<String> {
    let (algorithm, hex) = digest.split_once(':')?;
    Some(format!(
        "v1/{registry}/public/{repository}/_digest/{algorithm}/{hex}"
    ))
}

/// What a key names, read back from the key (the owner's commands walk the store by key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Blob {
        registry: String,
        digest: String,
    },
    Manifest {
        registry: String,
        digest: String,
    },
    Tag {
        registry: String,
        repository: String,
        tag: String,
    },
    Public {
        registry: String,
        repository: String,
        digest: String,
    },
}

impl Key {
    /// The key's parts; `None` for a key of no kind above (a future version's, say).
    pub fn parse(key: &str) -> Option<Key> {
        let rest = key.strip_prefix("v1/")?;
        let (registry, rest) = rest.split_once('/')?;
        let registry = registry.to_string();
        let (kind, rest) = rest.split_once('/')?;
        let digest = |rest: &str| {
            let (algorithm, hex) = rest.split_once('/')?;
            (!hex.contains('/')).then(|| format!("{algorithm}:{hex}"))
        };
        match kind {
            "blobs" => Some(Key::Blob {
                registry,
                digest: digest(rest)?,
            }),
            "manifests" => Some(Key::Manifest {
                registry,
                digest: digest(rest)?,
            }),
            "tags" => {
                let (repository, tag) = rest.rsplit_once("/_tag/")?;
                Some(Key::Tag {
                    registry,
                    repository: repository.to_string(),
                    tag: tag.to_string(),
                })
            }
            "public" => {
                let (repository, rest) = rest.rsplit_once("/_digest/")?;
                Some(Key::Public {
                    registry,
                    repository: repository.to_string(),
                    digest: digest(rest)?,
                })
            }
            _ => None,
        }
    }

    /// The registry the key is in.
    pub fn registry(&self) -> &str {
        match self {
            Key::Blob { registry, .. }
            | Key::Manifest { registry, .. }
            | Key::Tag { registry, .. }
            | Key::Public { registry, .. } => registry,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn blob_keys_name_the_registry_and_the_digest() {
        assert_eq!(
            super::blob("docker.io", "sha256:abc").as_deref(),
            Some("v1/docker.io/blobs/sha256/abc")
        );
        assert!(super::blob("docker.io", "abc").is_none());
    }

    #[test]
    fn records_of_a_repository_stay_apart_from_a_deeper_ones() {
        // A file for repository `a`'s tag `b` must not be where repository `a/b` keeps its own.
        assert_eq!(super::tag("r", "a", "b"), "v1/r/tags/a/_tag/b");
        assert_eq!(super::tag("r", "a/b", "c"), "v1/r/tags/a/b/_tag/c");
        assert_eq!(
            super::public("r", "a", "sha256:ff").as_deref(),
            Some("v1/r/public/a/_digest/sha256/ff")
        );
    }

    #[test]
    fn every_key_reads_back_as_what_it_names() {
        use super::Key;
        let d = "sha256:ff";
        for (key, expected) in [
            (
                super::blob("r", d),
                Key::Blob {
                    registry: "r".into(),
                    digest: d.into(),
                },
            ),
            (
                super::manifest("r", d),
                Key::Manifest {
                    registry: "r".into(),
                    digest: d.into(),
                },
            ),
            (
                Some(super::tag("r", "a/b", "c")),
                Key::Tag {
                    registry: "r".into(),
                    repository: "a/b".into(),
                    tag: "c".into(),
                },
            ),
            (
                super::public("r", "a/b", d),
                Key::Public {
                    registry: "r".into(),
                    repository: "a/b".into(),
                    digest: d.into(),
                },
            ),
        ] {
            assert_eq!(Key::parse(&key.unwrap()), Some(expected));
        }
        assert_eq!(Key::parse("v1/r/other/x"), None);
        assert_eq!(Key::parse("v2/r/blobs/sha256/ff"), None);
        assert_eq!(Key::parse("v1/r/blobs/sha256/ff/more"), None);
    }
}

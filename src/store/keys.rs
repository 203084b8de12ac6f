//! The store's keys. Every key names the registry (a digest means the same bytes everywhere, but a
//! hit must never cross registries); blob keys leave the repository out, so a layer shared by many
//! images is kept once, and the repository is checked with the upstream on every hit instead.

/// The key of a blob: `v1/{registry}/blobs/{algorithm}/{hex}`. `None` for a digest that is not
/// `algorithm:hex` (the route's grammar has checked it already).
pub fn blob(registry: &str, digest: &str) -> Option<String> {
    let (algorithm, hex) = digest.split_once(':')?;
    Some(format!("v1/{registry}/blobs/{algorithm}/{hex}"))
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
}

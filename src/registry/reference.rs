//! The grammar of repository names, tags and digests, as distribution's `reference` package has it.
//!
//! Everything a client puts in a path is checked here before it reaches an upstream URL, so that a
//! name can never smuggle a `..`, a query or another host into the request the mirror makes.

/// The longest repository name distribution accepts.
pub const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;
const MAX_DIGEST_LEN: usize = 256;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`, at most 255 characters.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(is_valid_component)
}

fn is_valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    // Walk the runs of separators between alphanumeric runs; each must be ".", "_", "__" or "-+".
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let allowed = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !allowed {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex` with an algorithm a registry verifies (`sha256`, `sha384`, `sha512`, those
/// go-digest registers) and its lowercase hex of the exact length. The reference grammar allows
/// other algorithms (`[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*`), but no registry can
/// check them: such a digest is refused here, before anything is asked upstream.
pub fn is_valid_digest(digest: &str) -> bool {
    if digest.len() > MAX_DIGEST_LEN {
        return false;
    }
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let lower_hex = |h: &str| {
        h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match algorithm {
        "sha256" => hex.len() == 64 && lower_hex(hex),
        "sha384" => hex.len() == 96 && lower_hex(hex),
        "sha512" => hex.len() == 128 && lower_hex(hex),
        _ => false,
    }
}

/// What a manifest request names: a tag, or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(String),
}

impl Reference {
    /// A digest if it contains `:`, a tag otherwise; `None` if it is neither valid.
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        if text.contains(':') {
            if is_valid_digest(text) {
                Ok(Reference::Digest(text.to_string()))
            } else {
                Err(ReferenceError::Digest)
            }
        } else if is_valid_tag(text) {
            Ok(Reference::Tag(text.to_string()))
        } else {
            Err(ReferenceError::Tag)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Reference::Tag(t) | Reference::Digest(t) => t,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceError {
    Tag,
    Digest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "alpine",
            "library/alpine",
            "a/b/c",
            "my-org/my_app",
            "a__b",
            "a---b",
            "x.y/z",
            "ghcr.io/owner/image",
            "0",
        ] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "",
            "Alpine",
            "/alpine",
            "alpine/",
            "a//b",
            "..",
            "../etc",
            "a/../b",
            "a___b",
            "a._b",
            "-a",
            "a-",
            "a b",
            "a%2fb",
            "a?b",
            "a:b",
            "127.0.0.1:5000/x",
            "é",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        assert!(is_valid_name(&"a".repeat(255)));
        assert!(!is_valid_name(&"a".repeat(256)));
    }

    #[test]
    fn tags() {
        for good in ["latest", "3.19", "v1.0-rc_1", "_x", "A"] {
            assert!(is_valid_tag(good), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a b", "ä"] {
            assert!(!is_valid_tag(bad), "{bad}");
        }
        assert!(is_valid_tag(&"a".repeat(128)));
        assert!(!is_valid_tag(&"a".repeat(129)));
    }

    #[test]
    fn digests() {
        let hex64 = "a".repeat(64);
        assert!(is_valid_digest(&format!("sha256:{hex64}")));
        assert!(is_valid_digest(&format!("sha512:{}", "0".repeat(128))));
        for bad in [
            // Well formed, but of algorithms no registry verifies.
            format!("md5:{}", "a".repeat(32)),
            format!("multihash+base58:{}", "F".repeat(32)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}g", "a".repeat(63)),
            format!("sha256{hex64}"),
            format!(":{hex64}"),
            format!("1sha:{}", "a".repeat(32)),
            format!("sha-:{}", "a".repeat(32)),
            format!("x:{}", "a".repeat(31)),
            format!("x:{}", "a".repeat(300)),
        ] {
            assert!(!is_valid_digest(&bad), "{bad}");
        }
    }

    #[test]
    fn references() {
        assert_eq!(
            Reference::parse("latest"),
            Ok(Reference::Tag("latest".into()))
        );
        let d = format!("sha256:{}", "b".repeat(64));
        assert_eq!(Reference::parse(&d), Ok(Reference::Digest(d.clone())));
        assert_eq!(Reference::parse("sha256:zz"), Err(ReferenceError::Digest));
        assert_eq!(Reference::parse("../x"), Err(ReferenceError::Tag));
    }
}

//! Checking relayed bytes against the digest and length they were asked for, as they pass.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// Hashes a body as it streams; [`Verifier::finish`] says whether it is the content asked for.
/// A clone goes on from the same point (a store catching up on bytes the relay has passed).
#[derive(Clone)]
pub struct Verifier {
    hasher: Hasher,
    expected_hex: String,
    expected_len: u64,
    seen: u64,
}

#[derive(Clone)]
enum Hasher {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

/// The bytes were not the content asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch(pub String);

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Verifier({}, {} bytes)",
            self.expected_hex, self.expected_len
        )
    }
}

impl Verifier {
    /// The length the bytes must have.
    pub fn length(&self) -> u64 {
        self.expected_len
    }

    /// For `digest` (`sha256:…`, `sha384:…` or `sha512:…`) and `length` bytes; `None` for another
    /// algorithm.
    pub fn new(digest: &str, length: u64) -> Option<Verifier> {
        let (algorithm, hex) = digest.split_once(':')?;
        let hasher = match algorithm {
            "sha256" => Hasher::Sha256(Sha256::new()),
            "sha384" => Hasher::Sha384(Sha384::new()),
            "sha512" => Hasher::Sha512(Sha512::new()),
            _ => return None,
        };
        Some(Verifier {
            hasher,
            expected_hex: hex.to_ascii_lowercase(),
            expected_len: length,
            seen: 0,
        })
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.seen += chunk.len() as u64;
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(chunk),
            Hasher::Sha384(h) => h.update(chunk),
            Hasher::Sha512(h) => h.update(chunk),
        }
    }

    /// How many bytes have passed.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// `Ok` only when the bytes were exactly the content asked for.
    pub fn finish(self) -> Result<(), Mismatch> {
        if self.seen != self.expected_len {
            return Err(Mismatch(format!(
                "{} bytes where {} were announced",
                self.seen, self.expected_len
            )));
        }
        let hex: String = match self.hasher {
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sha384(h) => hex(&h.finalize()),
            Hasher::Sha512(h) => hex(&h.finalize()),
        };
        if hex != self.expected_hex {
            return Err(Mismatch(format!(
                "the bytes hash to {hex}, not to the digest asked for"
            )));
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn the_right_bytes_pass_in_any_chunks() {
        let mut v = Verifier::new(HELLO, 5).unwrap();
        v.update(b"he");
        v.update(b"llo");
        assert_eq!(v.seen(), 5);
        assert!(v.finish().is_ok());
    }

    #[test]
    fn other_bytes_or_lengths_fail() {
        let mut v = Verifier::new(HELLO, 5).unwrap();
        v.update(b"hellO");
        assert!(v.finish().unwrap_err().0.contains("hash"));
        let mut v = Verifier::new(HELLO, 5).unwrap();
        v.update(b"hell");
        assert!(v.finish().unwrap_err().0.contains("4 bytes"));
        assert!(Verifier::new("md5:abc", 1).is_none());
    }
}

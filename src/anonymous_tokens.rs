//! The upstream tokens this process fetched for clients that sent no credentials.
//!
//! Without `WHITE_LIST` a client holds the upstream's own token, and nothing in it says whether a
//! password stood behind it. The store needs to know: only what an anonymous client pulled may be
//! served when the upstream cannot be asked (stale answers, `TAG_TTL_SECS`), since anyone may pull
//! it. So the mirror remembers a hash of each token it handed out for an anonymous login, until
//! the token expires. A token it does not know (another instance's, one from before a restart, a
//! user's) counts as not anonymous: the safe side, where only freshness is lost.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// The most tokens remembered; past it, the expired go, then the oldest half.
const MAX_TOKENS: usize = 10_000;

#[derive(Default)]
pub struct AnonymousTokens {
    /// SHA-256 of the token → when it expires (unix seconds).
    tokens: Mutex<HashMap<[u8; 32], u64>>,
}

impl AnonymousTokens {
    /// A token fetched without credentials, valid until `expires_at`.
    pub fn remember(&self, token: &str, expires_at: u64, now: u64) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= MAX_TOKENS {
            tokens.retain(|_, expires| *expires > now);
        }
        if tokens.len() >= MAX_TOKENS {
            let mut by_expiry: Vec<u64> = tokens.values().copied().collect();
            by_expiry.sort_unstable();
            let cut = by_expiry[by_expiry.len() / 2];
            tokens.retain(|_, expires| *expires > cut);
        }
        tokens.insert(hash(token), expires_at);
    }

    /// Whether this process handed `token` out for an anonymous login, and it has not expired.
    pub fn is_anonymous(&self, token: &str, now: u64) -> bool {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(&hash(token))
            .is_some_and(|expires| *expires > now)
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_remembered_unexpired_tokens_are_anonymous() {
        let tokens = AnonymousTokens::default();
        tokens.remember("a", 100, 0);
        assert!(tokens.is_anonymous("a", 99));
        assert!(!tokens.is_anonymous("a", 100));
        assert!(!tokens.is_anonymous("b", 0));
    }

    #[test]
    fn memory_is_bounded() {
        let tokens = AnonymousTokens::default();
        for i in 0..3 * MAX_TOKENS as u64 {
            tokens.remember(&i.to_string(), 1_000 + i, 0);
        }
        assert!(tokens.tokens.lock().unwrap().len() <= MAX_TOKENS);
        let last = (3 * MAX_TOKENS - 1).to_string();
        assert!(tokens.is_anonymous(&last, 0), "the newest is kept");
    }
}

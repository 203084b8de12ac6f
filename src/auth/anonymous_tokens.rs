//! The upstream tokens this process fetched for clients that sent no credentials.
//!
//! Without `WHITE_LIST` a client holds the upstream's own token, and nothing in it says whether a
//! password stood behind it. The store needs to know: only what an anonymous client pulled may be
//! served when the upstream cannot be asked (stale answers, `TAG_TTL_SECS`), since anyone may pull
//! it. With `TOKEN_SECRET`, the mirror hands anonymous clients a signed mirror token naming nobody
//! (`mirror/token_route`), which every instance can check. Without one, the mirror remembers here
//! a hash of each token it handed out for an anonymous login, until the token expires. A token it does not know (another instance's, one from before a restart, a
//! user's) counts as not anonymous: the safe side, where only freshness is lost. A token fetched
//! with one of the mirror's own accounts (`accounts`) is remembered with it, so that the pulls it
//! makes are counted to that account.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// The most tokens remembered; past it, the expired go, then the older half.
const MAX_TOKENS: usize = 10_000;

#[derive(Default)]
pub struct AnonymousTokens {
    /// SHA-256 of the token → what the mirror knows of it.
    tokens: Mutex<HashMap<[u8; 32], Handout>>,
}

/// A token handed out for an anonymous login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handout {
    /// When it expires (unix seconds).
    pub expires_at: u64,
    /// The mirror's own account it was fetched with (an index into the registry's accounts).
    pub account: Option<usize>,
}

impl AnonymousTokens {
    /// A token fetched for a client without credentials.
    pub fn remember(&self, token: &str, handout: Handout, now: u64) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= MAX_TOKENS {
            tokens.retain(|_, h| h.expires_at > now);
        }
        if tokens.len() >= MAX_TOKENS {
            let mut by_expiry: Vec<u64> = tokens.values().map(|h| h.expires_at).collect();
            by_expiry.sort_unstable();
            let cut = by_expiry[by_expiry.len() / 2];
            tokens.retain(|_, h| h.expires_at > cut);
        }
        tokens.insert(hash(token), handout);
    }

    /// The handout of `token`, if this process gave it to an anonymous client and it has not
    /// expired.
    pub fn find(&self, token: &str, now: u64) -> Option<Handout> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(&hash(token))
            .filter(|h| h.expires_at > now)
            .copied()
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
        let handout = Handout {
            expires_at: 100,
            account: Some(1),
        };
        tokens.remember("a", handout, 0);
        assert_eq!(tokens.find("a", 99), Some(handout));
        assert_eq!(tokens.find("a", 100), None);
        assert_eq!(tokens.find("b", 0), None);
    }

    #[test]
    fn memory_is_bounded() {
        let tokens = AnonymousTokens::default();
        for i in 0..3 * MAX_TOKENS as u64 {
            let handout = Handout {
                expires_at: 1_000 + i,
                account: None,
            };
            tokens.remember(&i.to_string(), handout, 0);
        }
        assert!(tokens.tokens.lock().unwrap().len() <= MAX_TOKENS);
        let last = (3 * MAX_TOKENS - 1).to_string();
        assert!(tokens.find(&last, 0).is_some(), "the newest is kept");
    }
}

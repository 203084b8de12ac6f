//! The mirror's own upstream accounts (`UPSTREAM_AUTH_<NAME>=user:token,…`), used for clients
//! that send no credentials, so that an open mirror's pulls count against its accounts instead of
//! against a shared address (Docker Hub allows 100 anonymous pulls per 6 hours per address, 200
//! per free account, more on paid plans; docker/docs, "usage/pulls").
//!
//! With several accounts, the one whose last `ratelimit-remaining` was the highest goes first; an
//! account not seen yet counts as having all its pulls left.

use crate::auth::BasicCredentials;
use std::collections::HashMap;
use std::sync::Mutex;

/// `UPSTREAM_AUTH_<NAME>`: `user:token` pairs, comma-separated. The error never repeats the value
/// (it holds secrets).
pub fn parse(setting: &str, value: &str) -> Result<Vec<BasicCredentials>, String> {
    let mut accounts = Vec::new();
    for (n, pair) in value.split(',').map(str::trim).enumerate() {
        match pair.split_once(':') {
            Some((user, password)) if !user.trim().is_empty() && !password.is_empty() => accounts
                .push(BasicCredentials {
                    user: user.trim().to_string(),
                    password: password.to_string(),
                }),
            _ => {
                return Err(format!(
                    "{setting}: entry {} is not user:token (entries are comma-separated)",
                    n + 1
                ))
            }
        }
    }
    Ok(accounts)
}

/// The pulls each account has left, as the registry last announced them.
#[derive(Default)]
pub struct Remaining {
    /// (registry index, account index) → the last `ratelimit-remaining`.
    left: Mutex<HashMap<(usize, usize), u64>>,
}

impl Remaining {
    /// The account to use next among `count` accounts of `registry`: the most pulls left first.
    pub fn pick(&self, registry: usize, count: usize) -> Option<usize> {
        let left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        (0..count).max_by_key(|account| {
            let pulls = left.get(&(registry, *account)).copied().unwrap_or(u64::MAX);
            // Ties go to the first account.
            (pulls, std::cmp::Reverse(*account))
        })
    }

    /// The registry's `ratelimit-remaining` (`99;w=21600`) for an account's pull.
    pub fn note(&self, registry: usize, account: usize, header: &str) {
        if let Some(pulls) = pulls_left(header) {
            let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
            left.insert((registry, account), pulls);
        }
    }
}

/// The pulls a `ratelimit-remaining` header (`99;w=21600`) says are left.
pub fn pulls_left(header: &str) -> Option<u64> {
    header.split(';').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_parse_without_leaking_tokens() {
        let accounts = parse(
            "UPSTREAM_AUTH_DOCKER_IO",
            "alice:dckr_pat_1, bob:dckr_pat_2",
        )
        .unwrap();
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[1].user, "bob");
        assert_eq!(accounts[1].password, "dckr_pat_2");
        for bad in ["alice", "alice:", ":x", "alice:dckr_pat_1,,"] {
            let e = parse("UPSTREAM_AUTH_DOCKER_IO", bad).unwrap_err();
            assert!(!e.contains("dckr_pat"), "{e}");
        }
    }

    #[test]
    fn the_account_with_the_most_pulls_left_goes_first() {
        let remaining = Remaining::default();
        assert_eq!(remaining.pick(0, 0), None);
        assert_eq!(remaining.pick(0, 3), Some(0));
        remaining.note(0, 0, "10;w=21600");
        assert_eq!(
            remaining.pick(0, 3),
            Some(1),
            "one not seen yet has all left"
        );
        remaining.note(0, 1, "5");
        remaining.note(0, 2, "50;w=21600");
        assert_eq!(remaining.pick(0, 3), Some(2));
        remaining.note(0, 2, "0");
        assert_eq!(remaining.pick(0, 3), Some(0));
        // Another registry's accounts are counted apart.
        assert_eq!(remaining.pick(1, 2), Some(0));
        remaining.note(0, 0, "garbage");
        assert_eq!(remaining.pick(0, 3), Some(0));
    }
}

//! The upstream's challenge, for the `/token` route: fetched from its `/v2/` once, kept for
//! `CHALLENGE_TTL_SECS`, and only an absolute http(s) realm is a place the mirror will go.

use super::answers::*;
use super::*;

impl Mirror {
    pub(super) fn cached_challenge(&self, registry: usize, now: u64) -> Option<Challenge> {
        let cache = self.challenges.lock().unwrap_or_else(|e| e.into_inner());
        cache[registry]
            .as_ref()
            .filter(|c| now.saturating_sub(c.learnt_at) < CHALLENGE_TTL_SECS)
            .map(|c| c.challenge.clone())
    }

    pub(super) fn remember_challenge(
        &self,
        registry: usize,
        headers: &HeaderMap,
        now: u64,
    ) -> Option<Challenge> {
        let challenge = headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(auth::parse_challenge)?;
        // Only an absolute http(s) realm is a place the mirror will go.
        let realm: http::Uri = challenge.realm.parse().ok()?;
        if !matches!(realm.scheme_str(), Some("http" | "https")) || realm.authority().is_none() {
            return None;
        }
        let challenge = Challenge {
            scope: None,
            ..challenge
        };
        let mut cache = self.challenges.lock().unwrap_or_else(|e| e.into_inner());
        cache[registry] = Some(CachedChallenge {
            challenge: challenge.clone(),
            learnt_at: now,
        });
        Some(challenge)
    }

    pub(super) fn fetch_challenge(&self, request: TokenRequest, summary: Summary) -> Step {
        let url = self
            .config
            .registries
            .get(request.registry)
            .upstream
            .url("/v2/");
        fetch_step(
            build_request(Method::GET, &url, HeaderMap::new()),
            Some(MAX_UPSTREAM_BODY),
            State::LearnChallenge(request),
            summary,
        )
    }

    pub(super) fn challenge_learnt(
        &self,
        request: TokenRequest,
        head: response::Parts,
        now: u64,
        summary: Summary,
    ) -> Step {
        if head.status.is_success() {
            // An upstream without a token service: anonymous pulls need no token; the whitelist
            // has nobody to check passwords with.
            if self.config.whitelist.is_some() && request.credentials.is_some() {
                return answer_error(
                    &Method::GET,
                    RegistryError::new(
                        ErrorCode::Unavailable,
                        "the upstream has no token service to check credentials with",
                    ),
                    summary,
                );
            }
            return self.answer_token(None, 300, &request, now, summary);
        }
        match self.remember_challenge(request.registry, &head.headers, now) {
            Some(challenge) => self.fetch_upstream_token(request, &challenge, summary),
            None => {
                let status = head.status;
                let e = RegistryError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "the upstream registry answered {} without a token challenge",
                        status.as_u16()
                    ),
                );
                let fallback = for_method(&Method::GET, e.into_response());
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    self.offline_token(request, fallback, now, summary)
                } else {
                    Step::Answer(fallback, summary)
                }
            }
        }
    }
}

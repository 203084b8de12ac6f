//! When the upstream cannot answer: the store keeps pulls going with what anyone may pull.
//!
//! Stored content is normally served only after the upstream authorises the request (see
//! `stored`). When the upstream fails instead (a 5xx, a 429, a timeout, no connection), the last
//! digest an anonymous client was shown for a tag, and content the upstream showed an anonymous
//! client under that repository, are served as `stale`, for up to `TAG_STALE_MAX_SECS`. Only
//! anonymous clients' pulls are recorded (see `anonymous_tokens`). With `TAG_TTL_SECS`, an
//! anonymous client's tag is served from its record for that long without asking the upstream at
//! all.
//!
//! A client without credentials of its own may still pull with the mirror's own account
//! (`UPSTREAM_AUTH_<NAME>`; `warm --user`), which may read private repositories. Each record
//! therefore names the access behind it ([`Access`]): what the account was shown answers only a
//! client pulling with that same account, never one the upstream would refuse, whatever wrote
//! the store (a server, another server on the bucket, a command).
//!
//! Records are small objects in the store: `keys::tag` (`{digest} {seen at}`) and
//! `keys::public` (`{seen at}`); the core asks the adapter to write them after the answer
//! ([`Summary::remember`]) and reads them with [`Step::Recall`].

use super::answers::*;
use super::*;
use crate::store::{keys, Access, Record, ShownRecord, Stored, TagRecord};

/// How long the token the mirror hands out when the upstream token service fails is good for.
const OFFLINE_TOKEN_SECS: u64 = 60;

impl Mirror {
    fn keeps_records(&self, resource: &ResourceRequest) -> bool {
        self.has_store() && resource.anonymous
    }

    /// Whose access this request's upstream answers stand for: anyone's, or the mirror's own
    /// account's that fetched the client's token.
    fn access(&self, resource: &ResourceRequest) -> Access {
        let registry = self.config.registries.get(resource.resolved.registry);
        match resource.account.and_then(|i| registry.accounts.get(i)) {
            Some(account) => Access::Account(account.user.to_ascii_lowercase()),
            None => Access::Anyone,
        }
    }

    /// The tag's digest, as an anonymous client was shown it now.
    pub(super) fn remember_tag(
        &self,
        resource: &ResourceRequest,
        digest: &str,
        summary: &mut Summary,
    ) {
        let Some(tag) = resource.route.tag().map(str::to_string) else {
            return;
        };
        if self.keeps_records(resource) {
            summary.remember.push(Record {
                key: self.tag_key(resource, &tag),
                value: TagRecord {
                    digest: digest.to_string(),
                    seen_at: resource.now,
                    access: self.access(resource),
                }
                .to_bytes(),
            });
        }
    }

    /// The upstream has shown an anonymous client this content under this repository now.
    pub(super) fn remember_public(&self, resource: &ResourceRequest, summary: &mut Summary) {
        if !self.keeps_records(resource) {
            return;
        }
        if let Some(key) = self.public_key(resource) {
            summary.remember.push(Record {
                key,
                value: ShownRecord {
                    seen_at: resource.now,
                    access: self.access(resource),
                }
                .to_bytes(),
            });
        }
    }

    /// A manifest by tag: with `TAG_TTL_SECS`, its record first; else its digest asked with
    /// `HEAD`.
    pub(super) fn tag_from_record_or_head(
        &self,
        resource: ResourceRequest,
        get: Request<Vec<u8>>,
        summary: Summary,
    ) -> Step {
        let Some(tag) = resource.route.tag().map(str::to_string) else {
            return self.ask_tag(resource, get, summary);
        };
        if self.config.tag_ttl_secs == 0 || !self.keeps_records(&resource) {
            return self.ask_tag(resource, get, summary);
        }
        let key = self.tag_key(&resource, &tag);
        let state = State::TagRecall { resource, get };
        Step::Recall(Box::new(store_step(key, state, summary)))
    }

    /// The upstream failed on a tag: its record, if the client is anonymous; else `fallback`.
    pub(super) fn stale_tag(
        &self,
        resource: ResourceRequest,
        get: Request<Vec<u8>>,
        fallback: Response<Vec<u8>>,
        summary: Summary,
    ) -> Step {
        let Some(tag) = resource.route.tag().map(str::to_string) else {
            return Step::Answer(fallback, summary);
        };
        if !self.serves_stale(&resource) {
            return Step::Answer(fallback, summary);
        }
        let key = self.tag_key(&resource, &tag);
        let fallback = Box::new(fallback);
        let state = State::StaleTag {
            resource,
            get,
            fallback,
        };
        Step::Recall(Box::new(store_step(key, state, summary)))
    }

    /// The upstream failed to authorise stored content: its public record, if the client is
    /// anonymous; else `fallback`.
    pub(super) fn stale_content(
        &self,
        resource: ResourceRequest,
        key: String,
        stored: Stored,
        fallback: Response<Vec<u8>>,
        summary: Summary,
    ) -> Step {
        let public = self.public_key(&resource);
        match public {
            Some(public) if self.serves_stale(&resource) => {
                let fallback = Box::new(fallback);
                let state = State::StaleContent {
                    resource,
                    key,
                    stored,
                    fallback,
                };
                Step::Recall(Box::new(store_step(public, state, summary)))
            }
            _ => Step::Answer(fallback, summary),
        }
    }

    /// The upstream token service failed for a client without credentials: with a store, a
    /// short anonymous token, so that the pull reaches what the store may serve stale.
    pub(super) fn offline_token(
        &self,
        request: TokenRequest,
        fallback: Response<Vec<u8>>,
        now: u64,
        mut summary: Summary,
    ) -> Step {
        let offline = self.has_store()
            && self.config.tag_stale_max_secs > 0
            && self.config.whitelist.is_none()
            && request.credentials.is_none();
        if !offline {
            return Step::Answer(fallback, summary);
        }
        summary.store = Some("stale");
        self.answer_token(None, OFFLINE_TOKEN_SECS, &request, now, summary)
    }

    /// After a recall: the record read, or `None`.
    pub fn resume_recall(&self, pending: Pending, record: Option<Vec<u8>>) -> Step {
        let Pending { state, summary, .. } = pending;
        let stale_max = self.config.tag_stale_max_secs;
        match state {
            State::TagRecall { resource, get } => {
                let ttl = self.config.tag_ttl_secs;
                let fresh = record
                    .as_deref()
                    .and_then(TagRecord::parse)
                    .filter(|r| r.access == self.access(&resource))
                    .filter(|r| resource.now.saturating_sub(r.seen_at) < ttl);
                match fresh {
                    Some(r) => {
                        self.lookup_by_digest(resource, get, r.digest, OnLookup::Serve, summary)
                    }
                    None => self.ask_tag(resource, get, summary),
                }
            }
            State::StaleTag {
                resource,
                get,
                fallback,
            } => {
                let usable = record
                    .as_deref()
                    .and_then(TagRecord::parse)
                    .filter(|r| r.access == self.access(&resource))
                    .filter(|r| resource.now.saturating_sub(r.seen_at) <= stale_max);
                match usable {
                    Some(r) => {
                        let then = OnLookup::ServeStale(fallback);
                        self.lookup_by_digest(resource, get, r.digest, then, summary)
                    }
                    None => Step::Answer(*fallback, summary),
                }
            }
            State::StaleContent {
                resource,
                key,
                stored,
                fallback,
            } => {
                let seen = record
                    .as_deref()
                    .and_then(ShownRecord::parse)
                    .filter(|r| r.access == self.access(&resource))
                    .filter(|r| resource.now.saturating_sub(r.seen_at) <= stale_max);
                match seen {
                    Some(_) => self.serve(&resource, key, stored, "stale", summary),
                    None => Step::Answer(*fallback, summary),
                }
            }
            _ => answer_error(&Method::GET, unexpected("a record"), summary),
        }
    }

    fn serves_stale(&self, resource: &ResourceRequest) -> bool {
        self.keeps_records(resource) && self.config.tag_stale_max_secs > 0
    }

    fn tag_key(&self, resource: &ResourceRequest, tag: &str) -> String {
        let registry = self.config.registries.get(resource.resolved.registry);
        keys::tag(&registry.name, &resource.resolved.upstream_name, tag)
    }

    fn public_key(&self, resource: &ResourceRequest) -> Option<String> {
        let digest = resource.route.content_digest()?;
        let registry = self.config.registries.get(resource.resolved.registry);
        keys::public(&registry.name, &resource.resolved.upstream_name, digest)
    }
}

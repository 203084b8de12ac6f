//! `registry-mirror purge IMAGE[:TAG]…`: forgets tags at once (a tag moved upstream that must not
//! be served from its record, with `TAG_TTL_SECS` or while the upstream fails), so that the next
//! pull resolves it upstream. A name without a tag forgets every tag of that repository.
//!
//! With `--blobs` it also deletes the manifests those tags named (an index's children with it)
//! and the blobs they refer to, except what anything still stored refers to: another tag's
//! manifest, a manifest of any repository (blobs are kept once per registry, whatever the
//! repository), so that no other image loses a layer.

use super::manifests::{refers, Image, Platforms};
use super::{refuse, report};
use crate::native::store::ContentStore;
use crate::store::keys::{self, Key};
use crate::store::TagRecord;
use http_body_util::BodyExt;
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

/// Forget tags, so that the next pull resolves them upstream
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    registry-mirror purge nginx:latest        (the next pull of nginx:latest asks Docker Hub)\n  \
    registry-mirror purge --blobs myorg/app    (every tag of myorg/app, and what only they used)")]
pub struct Args {
    /// Images: NAME:TAG, or NAME for every tag of that repository
    #[arg(value_name = "IMAGE[:TAG]", required = true)]
    images: Vec<String>,
    /// Also delete the manifests and blobs that only these tags referred to
    #[arg(long)]
    blobs: bool,
    /// Say what would be forgotten and deleted, change nothing
    #[arg(long)]
    dry_run: bool,
}

/// A repository's tags to forget: the registry, the name upstream, and a tag or every tag.
struct Forget {
    registry: String,
    repository: String,
    tag: Option<String>,
}

pub fn run(args: Args) -> ExitCode {
    let mut config = match super::config_with(&[]) {
        Ok(config) => config,
        Err(e) => return refuse("purge", &e),
    };
    let mut forget = Vec::new();
    for text in &args.images {
        let image = match Image::parse(text) {
            Ok(image) => image,
            Err(e) => return refuse("purge", &e),
        };
        if image.reference.contains(':') {
            return refuse("purge", &format!("{text}: purge forgets tags; name a tag"));
        }
        let registries = &config.registries;
        let resolved = match registries.select("127.0.0.1", None, &image.name) {
            Ok(resolved) => resolved,
            Err(e) => return refuse("purge", &format!("{text}: {e}")),
        };
        let tagged = text
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'));
        forget.push(Forget {
            registry: registries.get(resolved.registry).name.clone(),
            repository: resolved.upstream_name,
            tag: tagged.then_some(image.reference),
        });
    }
    let store = match ContentStore::open_for_command(&mut config, false) {
        Ok(store) => store,
        Err(e) => return refuse("purge", &e),
    };
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(e) => return refuse("purge", &e),
    };
    runtime.block_on(purge(&store, &forget, &args))
}

async fn purge(store: &ContentStore, forget: &[Forget], args: &Args) -> ExitCode {
    let listed = match store.list().await {
        Ok(listed) => listed,
        Err(e) => return refuse("purge", &e),
    };
    let keys: Vec<(String, Key)> = listed
        .into_iter()
        .filter_map(|l| Key::parse(&l.key).map(|k| (l.key, k)))
        .collect();
    let forgotten = |key: &Key| match key {
        Key::Tag {
            registry,
            repository,
            tag,
        } => forget.iter().any(|f| {
            &f.registry == registry
                && &f.repository == repository
                && f.tag.as_ref().is_none_or(|t| t == tag)
        }),
        _ => false,
    };
    let bar = super::progress("steps");
    let mut failed = 0;
    let mut deleted = Vec::new();
    // The tags, with the digests they named (read before they go).
    let mut named = BTreeSet::new();
    for (key, parsed) in keys.iter().filter(|(_, k)| forgotten(k)) {
        if let Some(record) = store
            .read_record(key)
            .await
            .and_then(|r| TagRecord::parse(&r))
        {
            named.insert((parsed.registry().to_string(), record.digest));
        }
        deleted.push(key.clone());
    }
    if deleted.is_empty() {
        report(&bar, "purge: no stored tag matched".into());
    }
    if args.blobs {
        let kept_tags = keys
            .iter()
            .filter(|(_, k)| matches!(k, Key::Tag { .. }) && !forgotten(k));
        let mut roots_kept = BTreeSet::new();
        for (key, parsed) in kept_tags {
            if let Some(record) = store
                .read_record(key)
                .await
                .and_then(|r| TagRecord::parse(&r))
            {
                roots_kept.insert((parsed.registry().to_string(), record.digest));
            }
        }
        let graph = Graph::read(store, &keys).await;
        let candidates = graph.closure(named);
        let candidate_manifests: BTreeSet<_> = candidates
            .iter()
            .filter(|d| graph.refers.contains_key(*d))
            .cloned()
            .collect();
        roots_kept.extend(
            graph
                .refers
                .keys()
                .filter(|d| !candidate_manifests.contains(*d))
                .cloned(),
        );
        let kept = graph.closure(roots_kept);
        for (registry, digest) in candidates.difference(&kept) {
            let key = match graph
                .refers
                .contains_key(&(registry.clone(), digest.clone()))
            {
                true => keys::manifest(registry, digest),
                false => keys::blob(registry, digest),
            };
            let stored = key.filter(|k| keys.iter().any(|(stored, _)| stored == k));
            deleted.extend(stored);
        }
    }
    for key in &deleted {
        let done = match args.dry_run {
            true => Ok("would delete"),
            false => store.remove(key).await.map(|()| "deleted"),
        };
        match done {
            Ok(done) => report(&bar, format!("{done:<12} {key}")),
            Err(e) => {
                failed += 1;
                report(&bar, format!("failed       {key}: {e}"));
            }
        }
    }
    bar.finish_and_clear();
    println!(
        "purge: {} key(s) {} in {}, {failed} failed",
        deleted.len() - failed,
        if args.dry_run { "to delete" } else { "deleted" },
        store.describe()
    );
    match failed {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// What each stored manifest refers to, by (registry, digest).
struct Graph {
    refers: BTreeMap<(String, String), Vec<String>>,
}

impl Graph {
    async fn read(store: &ContentStore, keys: &[(String, Key)]) -> Graph {
        let mut refers_to = BTreeMap::new();
        for (key, parsed) in keys {
            let Key::Manifest { registry, digest } = parsed else {
                continue;
            };
            let Some((body, _)) = store.read_unmarked(key).await else {
                continue;
            };
            let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
                continue;
            };
            let found = refers(&bytes, &Platforms::All).unwrap_or_default();
            let digests = found
                .manifests
                .into_iter()
                .chain(found.blobs.into_iter().map(|(d, _)| d));
            refers_to.insert((registry.clone(), digest.clone()), digests.collect());
        }
        Graph { refers: refers_to }
    }

    /// `roots` and everything they refer to, through stored manifests.
    fn closure(&self, roots: BTreeSet<(String, String)>) -> BTreeSet<(String, String)> {
        let mut seen = BTreeSet::new();
        let mut pending: Vec<_> = roots.into_iter().collect();
        while let Some(node) = pending.pop() {
            if let Some(children) = self.refers.get(&node) {
                pending.extend(children.iter().map(|c| (node.0.clone(), c.clone())));
            }
            seen.insert(node);
        }
        seen
    }
}

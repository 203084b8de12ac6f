//! `registry-mirror warm IMAGE…`: fetches images into the store before clients ask for them (a
//! cluster's rollout, a CI fleet's first build), so that hundreds of nodes pulling at once find
//! them stored, and a Docker Hub that throttles or fails does not stop them.
//!
//! Each image is pulled as an anonymous client would pull it through the server: the same core,
//! in-process (`client`), resolves the tag upstream (a `HEAD`, then the manifest by digest),
//! checks every byte against its digest as it is stored, and writes the records an anonymous pull
//! writes, so that the tags are served as stale answers when the upstream fails (public images
//! only: the upstream was asked without a client's credentials, with the mirror's own account
//! where `UPSTREAM_AUTH_*` or `--user` gives one; records of an account's pulls name it, and answer
//! only clients pulling with that account: `store::Access`). What is stored already is not
//! fetched again.
//!
//! An upstream may be hostile: an index is followed at most [`MAX_DEPTH`] levels deep, each
//! manifest once, and an image of more than [`MAX_MANIFESTS`] manifests fails (alone).

mod client;

use super::manifests::{refers, Image, Platforms};
use super::{bytes, progress, refuse, report};
use crate::native::drive::{Driver, DriverSettings};
use crate::native::store::ContentStore;
use crate::store::keys;
use crate::Mirror;
use client::{Answer, Client};
use futures_util::StreamExt;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Fetch images into the store CACHE names, checked as the server stores them
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    registry-mirror warm alpine:3.20 nginx:1.27 ghcr.io/owner/image:v1\n  \
    registry-mirror warm --file images.txt --platform linux/amd64,linux/arm64\n  \
    CACHE=s3://BUCKET/mirror registry-mirror warm alpine   (the Lambda stack's bucket: its \
    StoreBucketName output, prefix mirror)\n\n\
    A bucket's credentials: the AWS_* variables, else the AWS CLI's (AWS_PROFILE, aws configure, \
    aws sso login); docs/operations.md names the permissions each command needs.")]
pub struct Args {
    /// Images: NAME[:TAG] or NAME@DIGEST (alpine, library/alpine:3.20, ghcr.io/owner/image:v1)
    #[arg(value_name = "IMAGE")]
    images: Vec<String>,
    /// A file of images, one a line (# starts a comment)
    #[arg(long, short, value_name = "FILE")]
    file: Option<std::path::PathBuf>,
    /// Platforms to take from a multi-platform image: os/arch[/variant], comma-separated, or all
    #[arg(long, default_value = "linux/amd64", value_name = "PLATFORMS")]
    platform: String,
    /// A Docker Hub account (USER:TOKEN) to pull with, as UPSTREAM_AUTH_DOCKER_IO would
    #[arg(long, value_name = "USER:TOKEN")]
    user: Option<String>,
    /// How many objects to fetch at once
    #[arg(long, default_value_t = 4, value_name = "N")]
    jobs: usize,
}

/// How deep indexes are followed: an image's manifest, the index's children, and below that only
/// what no real registry serves (an index of indexes of indexes).
const MAX_DEPTH: usize = 4;
/// The most manifests one image may have (its index and every child).
const MAX_MANIFESTS: usize = 1024;

/// What the run did, counted.
#[derive(Default)]
struct Tally {
    stored: AtomicU64,
    stored_bytes: AtomicU64,
    skipped: AtomicU64,
    failed: AtomicU64,
}

/// One run: the driver, the store, what to take, the progress and the counts.
struct Warm {
    driver: Driver,
    store: Arc<ContentStore>,
    platforms: Platforms,
    jobs: tokio::sync::Semaphore,
    bar: indicatif::ProgressBar,
    tally: Tally,
}

pub fn run(args: Args) -> ExitCode {
    let mut images = Vec::new();
    if let Some(file) = &args.file {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => return refuse("warm", &format!("{}: {e}", file.display())),
        };
        match Image::parse_list(&text) {
            Ok(list) => images.extend(list),
            Err(e) => return refuse("warm", &format!("{}: {e}", file.display())),
        }
    }
    for text in &args.images {
        match Image::parse(text) {
            Ok(image) => images.push(image),
            Err(e) => return refuse("warm", &e),
        }
    }
    if images.is_empty() {
        return refuse("warm", "no image named (IMAGE… or --file FILE)");
    }
    let platforms = match Platforms::parse(&args.platform) {
        Ok(platforms) => platforms,
        Err(e) => return refuse("warm", &e),
    };
    if args.user.as_deref().is_some_and(|u| !u.contains(':')) {
        return refuse("warm", "--user takes USER:TOKEN");
    }
    let warm = match Warm::new(&args, platforms) {
        Ok(warm) => warm,
        Err(e) => return refuse("warm", &e),
    };
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(e) => return refuse("warm", &e),
    };
    runtime.block_on(warm.all(images))
}

impl Warm {
    fn new(args: &Args, platforms: Platforms) -> Result<Warm, String> {
        // An anonymous client of a mirror open to it: no whitelist, no network rule; every tag
        // asked upstream (not answered from its record); every blob streamed, whatever its size.
        let mut overrides = vec![
            ("WHITE_LIST", None),
            ("ALLOW_NETWORKS", None),
            ("TAG_TTL_SECS", Some("0".to_string())),
            ("BLOB_REDIRECTS", Some("follow".to_string())),
            ("STORAGE_RELAY", None),
            ("PUBLIC_URL", None),
        ];
        if let Some(user) = &args.user {
            overrides.push(("UPSTREAM_AUTH_DOCKER_IO", Some(user.clone())));
        }
        let mut config = super::config_with(&overrides)?;
        let store = ContentStore::open_for_command(&mut config, true)?;
        let env = |key: &str| std::env::var(key).ok();
        let driver = Driver::new(Mirror::new(config), DriverSettings::from_lookup(env)?)?
            .with_store(store.clone());
        Ok(Warm {
            driver,
            store,
            platforms,
            jobs: tokio::sync::Semaphore::new(args.jobs.max(1)),
            bar: progress("objects"),
            tally: Tally::default(),
        })
    }

    async fn all(self, images: Vec<Image>) -> ExitCode {
        let count = images.len();
        eprintln!("warming {count} image(s) into {}", self.store.describe());
        remove_partial_objects_when_stopped(self.store.clone());
        let jobs = self.jobs.available_permits();
        futures_util::stream::iter(images)
            .map(|image| self.image(image))
            .buffer_unordered(jobs)
            .collect::<Vec<()>>()
            .await;
        self.store.settle().await;
        self.bar.finish_and_clear();
        let t = &self.tally;
        let failed = t.failed.load(Ordering::Relaxed);
        println!(
            "warm: {count} image(s): stored {} object(s) ({}), skipped {} already stored, {failed} failed",
            t.stored.load(Ordering::Relaxed),
            bytes(t.stored_bytes.load(Ordering::Relaxed)),
            t.skipped.load(Ordering::Relaxed),
        );
        match failed {
            0 => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        }
    }

    /// One image: its manifest (and an index's children for the platforms asked), then every
    /// blob they refer to.
    async fn image(&self, image: Image) {
        let failed = |why: String| self.failed(&image.to_string(), why);
        let Some(registry) = self.registry_of(&image.name) else {
            return failed("no configured registry serves this name".into());
        };
        let mut client = Client::new(&self.driver, &image.name);
        self.bar.inc_length(1);
        let mut pending = vec![(image.reference.clone(), 0)];
        let mut seen = std::collections::HashSet::new();
        let mut blobs = Vec::new();
        while let Some((reference, depth)) = pending.pop() {
            if !seen.insert(reference.clone()) {
                continue;
            }
            if depth > MAX_DEPTH {
                return failed(format!("indexes nested more than {MAX_DEPTH} deep"));
            }
            let answer = match self
                .manifest(&mut client, &registry, &image, &reference)
                .await
            {
                Ok(answer) => answer,
                Err(e) => return failed(e),
            };
            match refers(&answer.body, &self.platforms) {
                Ok(found) if found.manifests.is_empty() && found.blobs.is_empty() => {
                    return failed(format!("no manifest for the platforms {}", self.platforms))
                }
                Ok(found) => {
                    let mut children: Vec<String> = found
                        .manifests
                        .into_iter()
                        .filter(|child| !seen.contains(child))
                        .collect();
                    children.sort();
                    children.dedup();
                    if seen.len() + pending.len() + children.len() > MAX_MANIFESTS {
                        let most = MAX_MANIFESTS;
                        return failed(format!("more than {most} manifests in one image"));
                    }
                    self.bar.inc_length(children.len() as u64);
                    pending.extend(children.into_iter().map(|child| (child, depth + 1)));
                    blobs.extend(found.blobs);
                }
                Err(e) => return failed(e),
            }
        }
        blobs.sort();
        blobs.dedup();
        self.bar.inc_length(blobs.len() as u64);
        let name = image.name.clone();
        futures_util::stream::iter(blobs)
            .map(|(digest, size)| {
                let (registry, name) = (registry.clone(), name.clone());
                async move {
                    let mut client = Client::new(&self.driver, &name);
                    self.blob(&mut client, &registry, &name, &digest, size)
                        .await
                }
            })
            .buffer_unordered(self.jobs.available_permits().max(1))
            .collect::<Vec<()>>()
            .await;
    }

    /// The registry a name is in, as the server chooses it for `client`'s requests.
    fn registry_of(&self, name: &str) -> Option<String> {
        let registries = &self.driver.mirror().config().registries;
        let resolved = registries.select(client::HOST, None, name).ok()?;
        Some(registries.get(resolved.registry).name.clone())
    }

    /// A manifest, fetched through the mirror and then looked for in the store.
    async fn manifest(
        &self,
        client: &mut Client<'_>,
        registry: &str,
        image: &Image,
        reference: &str,
    ) -> Result<Answer, String> {
        let _job = self.jobs.acquire().await.map_err(|e| e.to_string())?;
        let answer = client.manifest(reference).await?;
        if !answer.status.is_success() {
            return Err(answer.error());
        }
        let digest = answer
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .ok_or("the manifest came without its digest")?
            .to_string();
        let key = keys::manifest(registry, &digest).ok_or("a manifest with a bad digest")?;
        self.confirm(&answer, &key, &format!("{}@{digest}", image.name))
            .await;
        Ok(answer)
    }

    /// A blob, fetched through the mirror (a stored one is not read) and then looked for in the
    /// store.
    async fn blob(
        &self,
        client: &mut Client<'_>,
        registry: &str,
        name: &str,
        digest: &str,
        size: u64,
    ) {
        let Ok(_job) = self.jobs.acquire().await else {
            return;
        };
        let what = format!("{name}@{digest}");
        let answer = match client.blob(digest).await {
            Ok(answer) if answer.status.is_success() || answer.status.is_redirection() => answer,
            Ok(answer) => return self.failed(&what, answer.error()),
            Err(e) => return self.failed(&what, e),
        };
        match keys::blob(registry, digest) {
            Some(key) => self.confirm(&answer, &key, &what).await,
            None => self.failed(&what, format!("a bad digest ({size} bytes)")),
        }
    }

    /// Says what became of an object the mirror answered: skipped when the store served it,
    /// stored when the store holds it now, failed otherwise.
    async fn confirm(&self, answer: &Answer, key: &str, what: &str) {
        // Served from the store: fresh (`hit`), or while the upstream fails (`stale`).
        if matches!(answer.summary.store, Some("hit" | "stale")) {
            self.bar.inc(1);
            self.tally.skipped.fetch_add(1, Ordering::Relaxed);
            return report(&self.bar, format!("skipped  {what} (stored already)"));
        }
        match self.stored(key).await {
            Some(stored) => {
                self.bar.inc(1);
                self.tally.stored.fetch_add(1, Ordering::Relaxed);
                self.tally
                    .stored_bytes
                    .fetch_add(stored.length, Ordering::Relaxed);
                self.bar
                    .set_message(bytes(self.tally.stored_bytes.load(Ordering::Relaxed)));
                report(
                    &self.bar,
                    format!("stored   {what} ({})", bytes(stored.length)),
                );
            }
            None => {
                let too_large = self
                    .driver
                    .mirror()
                    .config()
                    .store_max_object
                    .is_some_and(|max| answer.length > max);
                let why = match too_large {
                    true => "relayed but not kept: larger than a quarter of CACHE_MAX_BYTES",
                    false => "the store did not keep it (see the warning above)",
                };
                self.failed(what, why.to_string());
            }
        }
    }

    /// The object at `key`, once the store has made it visible. The store commits after the
    /// client's last byte (its `fsync` and rename are off the client's path), so a write in
    /// flight is waited for, and the object is looked for again a few times after.
    async fn stored(&self, key: &str) -> Option<crate::store::Stored> {
        let wait = std::time::Duration::from_secs(60);
        for _ in 0..VISIBLE_TRIES {
            let (found, claim) = self.store.look_up(key, wait, false).await;
            drop(claim);
            if let Some((_, stored)) = found {
                return Some(stored);
            }
            tokio::time::sleep(VISIBLE_PAUSE).await;
        }
        None
    }

    fn failed(&self, what: &str, why: String) {
        self.bar.inc(1);
        self.tally.failed.fetch_add(1, Ordering::Relaxed);
        report(&self.bar, format!("failed   {what}: {why}"));
    }
}

/// How many times, and how far apart, an object just relayed is looked for in the store.
const VISIBLE_TRIES: u32 = 20;
const VISIBLE_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// On `SIGINT` or `SIGTERM`, deletes this run's partial objects from a directory store and exits
/// (130, as a shell reports an interrupted command): an interrupted warm leaves nothing behind.
fn remove_partial_objects_when_stopped(store: Arc<ContentStore>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        store.remove_own_temporary_files();
        eprintln!("warm: stopped; its partial objects are deleted");
        std::process::exit(130);
    });
}

//! `registry-mirror usage`: what the store holds, for the owner deciding what to keep: objects and
//! bytes by registry and by repository, the oldest (a file's birth time, where the file system
//! keeps one) and the least recently served (a directory keeps each object's last use as its
//! file's time; a bucket's time is when the object was written). The
//! pulls of a running server, by user and repository, are on its `/usage` page instead
//! (`METRICS_LISTEN`).
//!
//! A blob is kept once per registry, whatever the repository: it is counted under every
//! repository an anonymous pull recorded it in (`keys::public`), so a shared layer counts in each,
//! and content no anonymous pull recorded (a private image's) is counted as `(unrecorded)`.

use super::{bytes, refuse};
use crate::native::store::ContentStore;
use crate::store::keys::Key;
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::SystemTime;

/// Show what the store holds, by registry and repository, the oldest and least recently served
#[derive(clap::Args)]
#[command(
    after_help = "The pulls by user and repository, the store's hit ratio and the pulls \
    Docker Hub says are left are on the running server's /usage page (METRICS_LISTEN)."
)]
pub struct Args {
    /// How many of the oldest and of the least recently served objects to list
    #[arg(long, default_value_t = 10, value_name = "N")]
    oldest: usize,
}

/// Objects and bytes.
#[derive(Default, Clone, Copy)]
struct Count {
    objects: u64,
    bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: u64) {
        self.objects += 1;
        self.bytes += bytes;
    }
}

pub fn run(args: Args) -> ExitCode {
    let store =
        super::config_with(&[]).and_then(|mut c| ContentStore::open_for_command(&mut c, false));
    let store = match store {
        Ok(store) => store,
        Err(e) => return refuse("usage", &e),
    };
    let listed = match super::runtime().and_then(|r| r.block_on(store.list())) {
        Ok(listed) => listed,
        Err(e) => return refuse("usage", &e),
    };
    // Content by (registry, digest), and the repositories that recorded it.
    let mut content = BTreeMap::new();
    let mut recorded: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let (mut records, mut registries) = (Count::default(), BTreeMap::<String, Count>::new());
    let (mut by_use, mut by_age) = (Vec::new(), Vec::new());
    for object in &listed {
        match Key::parse(&object.key) {
            Some(Key::Blob { registry, digest } | Key::Manifest { registry, digest }) => {
                registries
                    .entry(registry.clone())
                    .or_default()
                    .add(object.bytes);
                content.insert((registry, digest), object.bytes);
                by_use.push((object.last_used, &object.key, object.bytes));
                if let Some(stored_at) = object.stored_at {
                    by_age.push((stored_at, &object.key, object.bytes));
                }
            }
            Some(Key::Public {
                registry,
                repository,
                digest,
            }) => {
                records.add(object.bytes);
                recorded
                    .entry((registry, digest))
                    .or_default()
                    .insert(repository);
            }
            _ => records.add(object.bytes),
        }
    }
    let mut repositories: BTreeMap<String, Count> = BTreeMap::new();
    for ((registry, digest), size) in &content {
        match recorded.get(&(registry.clone(), digest.clone())) {
            Some(names) => {
                for name in names {
                    repositories
                        .entry(format!("{registry}/{name}"))
                        .or_default()
                        .add(*size);
                }
            }
            None => repositories
                .entry(format!("{registry}/(unrecorded)"))
                .or_default()
                .add(*size),
        }
    }
    let total = registries.values().fold(Count::default(), |mut t, c| {
        t.objects += c.objects;
        t.bytes += c.bytes;
        t
    });
    println!("store: {}", store.describe());
    println!(
        "holds {} object(s), {}; and {} record(s), {}",
        total.objects,
        bytes(total.bytes),
        records.objects,
        bytes(records.bytes)
    );
    println!("\nby registry:");
    for (name, count) in &registries {
        println!(
            "  {name:<40} {:>8} object(s) {:>12}",
            count.objects,
            bytes(count.bytes)
        );
    }
    println!("\nby repository (a layer shared by several counts in each):");
    let mut repositories: Vec<_> = repositories.into_iter().collect();
    repositories.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(&b.0)));
    for (name, count) in &repositories {
        println!(
            "  {name:<40} {:>8} object(s) {:>12}",
            count.objects,
            bytes(count.bytes)
        );
    }
    by_age.sort();
    println!("\noldest (stored first):");
    if by_age.is_empty() {
        println!("  (this file system keeps no time of creation)");
    }
    for (stored_at, key, size) in by_age.iter().take(args.oldest) {
        println!("  {}  {key} ({})", age(*stored_at), bytes(*size));
    }
    by_use.sort();
    println!("\nleast recently served (first the longest unused):");
    for (last_used, key, size) in by_use.iter().take(args.oldest) {
        println!("  {}  {key} ({})", age(*last_used), bytes(*size));
    }
    ExitCode::SUCCESS
}

/// How long ago `time` was, for people.
fn age(time: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(time)
        .map_or(0, |d| d.as_secs());
    match secs {
        s if s < 3600 => format!("{:>3} min ago", s / 60),
        s if s < 2 * 86400 => format!("{:>3} h ago  ", s / 3600),
        s => format!("{:>3} days ago", s / 86400),
    }
}

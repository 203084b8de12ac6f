//! Load, bounded in count and time: 64 concurrent pulls of a mixed set of images, 10 rounds,
//! through the local server (without a store, on a directory store and on a bucket store) and
//! through the Fastly binary under Viceroy. Every pull checks every digest; no pull may fail; the
//! mirror's memory stays bounded.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::{Duration, Instant};
use support::fixture::{fixture, run_dir};
use support::images::*;
use support::measure::peak_rss_mib;
use support::mirrors::{LocalServer, Mirror, Mirrors, Runtime, Viceroy};
use support::pull_client;

const CONCURRENT: usize = 64;
const ROUNDS: usize = 10;
/// The longest a round may take before the test fails (a bound, not a speed check).
const ROUND_LIMIT: Duration = Duration::from_secs(120);

static LOCAL: Mirrors = Mirrors::new(&LocalServer);
static FASTLY: Mirrors = Mirrors::new(&Viceroy);
static ON_DIRECTORY: Mirrors = Mirrors::new(&LocalWithStore::Directory);
static ON_BUCKET: Mirrors = Mirrors::new(&LocalWithStore::Bucket);

/// The local server with a store of its own: a directory, or a prefix of a bucket on moto.
enum LocalWithStore {
    Directory,
    Bucket,
}

impl Runtime for LocalWithStore {
    fn name(&self) -> &'static str {
        "local"
    }

    fn start(&self, label: &str, settings: &[(String, String)]) -> Mirror {
        let mut settings: Vec<(String, String)> = settings
            .iter()
            .filter(|(k, _)| k != "CACHE")
            .cloned()
            .collect();
        match self {
            LocalWithStore::Directory => {
                let dir = run_dir().join(format!("load-store-{label}"));
                settings.push(("CACHE".into(), format!("file://{}", dir.display())));
            }
            LocalWithStore::Bucket => {
                let bucket = fixture().create_bucket("load-store");
                settings.extend(fixture().bucket_settings(&bucket, label));
            }
        }
        LocalServer.start(&format!("load-{label}"), &settings)
    }
}

fn mixed_set() -> Vec<(String, String)> {
    // (the name a client pulls, the fixture's key for its expected digests)
    let mut set: Vec<(String, String)> = [OCI, V2S2, NAMESPACED, OCI_INDEX, DOCKER_LIST]
        .iter()
        .map(|r| (r.trim_start_matches("library/").to_string(), r.to_string()))
        .collect();
    set.push((format!("ghcr.io/{GHCR_APP}"), format!("ghcr.io/{GHCR_APP}")));
    set
}

/// Runs the rounds; returns the mirror's peak RSS after the second round and after the last.
fn load(mirrors: &Mirrors) -> (f64, f64) {
    let mirror = mirrors.open();
    let pid = mirror._processes[0].pid;
    let set = mixed_set();
    let runtime = pull_client::runtime();
    let mut after_second = 0.0;
    for round in 0..ROUNDS {
        let started = Instant::now();
        let mirrors = [mirror.addr.clone()];
        let errors = pull_client::pull_at_once(&runtime, &mirrors, CONCURRENT, ROUND_LIMIT, |i| {
            let (name, key) = set[(i + round) % set.len()].clone();
            (name, key, None)
        });
        assert!(
            errors.is_empty(),
            "round {round}: {} of {CONCURRENT} pulls failed: {errors:?}",
            errors.len()
        );
        assert!(
            started.elapsed() < ROUND_LIMIT,
            "round {round} took {:?}",
            started.elapsed()
        );
        if round == 1 {
            after_second = peak_rss_mib(pid);
        }
    }
    (after_second, peak_rss_mib(pid))
}

#[test]
fn the_local_server_holds_64_concurrent_pulls() {
    let (_, peak) = load(&LOCAL);
    eprintln!("local server: peak RSS {peak:.1} MiB after {ROUNDS} rounds of {CONCURRENT} pulls");
    assert!(
        peak > 0.0 && peak < 64.0,
        "the local server's peak RSS was {peak:.1} MiB"
    );
}

/// The same load on a directory store: the first round fills it (64 clients missing the same
/// blobs at once), the others are served from it.
#[test]
fn the_local_server_on_a_directory_store_holds_64_concurrent_pulls() {
    let (_, peak) = load(&ON_DIRECTORY);
    eprintln!("on a directory: peak RSS {peak:.1} MiB after {ROUNDS} rounds of {CONCURRENT} pulls");
    assert!(peak > 0.0 && peak < 64.0, "peak RSS {peak:.1} MiB");
}

/// The same load on a bucket store (moto): misses at once, then hits read from the bucket.
#[test]
fn the_local_server_on_a_bucket_store_holds_64_concurrent_pulls() {
    let (_, peak) = load(&ON_BUCKET);
    eprintln!("on a bucket: peak RSS {peak:.1} MiB after {ROUNDS} rounds of {CONCURRENT} pulls");
    assert!(peak > 0.0 && peak < 96.0, "peak RSS {peak:.1} MiB");
}

#[test]
fn viceroy_holds_64_concurrent_pulls() {
    let (second, last) = load(&FASTLY);
    eprintln!(
        "viceroy: peak RSS {second:.1} MiB after round 2, {last:.1} MiB after round {ROUNDS}"
    );
    // Viceroy's own engine is most of its memory; what is bounded is the growth.
    assert!(
        last - second < 64.0,
        "Viceroy's peak RSS grew from {second:.1} to {last:.1} MiB over the rounds"
    );
}

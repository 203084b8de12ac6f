//! The content store of the local server (`CACHE=file://…`), with real clients against the
//! fixture: a second pull fetches no blob upstream; a stored private layer is served only to
//! those the upstream lets read it, and only under its own repository; the store survives a
//! restart, keeps within `CACHE_MAX_BYTES`, and never keeps bytes that are not what their digest
//! says.
#![cfg(not(target_arch = "wasm32"))]

mod support;

/// One test at a time: each counts the fixture's storage requests, which the others would move.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

use support::faults::{Fault, FaultFront};
use support::fixture::{fixture, run_dir};
use support::images::{BIG, NAMESPACED, V2S2};
use support::mirrors::{with, LocalServer, Mirror, Runtime};
use support::suite::{assert_same_as_direct, curl, curl_blob, mirror_token};

/// A local server with a store in a directory of its own (kept when `dir` is given again).
fn mirror_with_store(label: &str, dir: &str, extra: &[(&str, &str)]) -> Mirror {
    let store = run_dir().join(dir);
    let cache = format!("file://{}", store.display());
    let mut settings: Vec<(&str, &str)> = vec![("CACHE", &cache)];
    settings.extend_from_slice(extra);
    LocalServer.start(label, &with(&settings))
}

/// A local server with a store of its own, whose Docker Hub is the fixture behind a fault front.
fn behind_a_front(label: &str) -> (FaultFront, Mirror, std::path::PathBuf) {
    let f = fixture();
    let front = FaultFront::start(&f.registry, f.token_port, f.storage_port);
    let store = run_dir().join(label);
    let cache = format!("file://{}", store.display());
    let upstream = format!("http://{}", front.addr);
    let mirror = LocalServer.start(
        label,
        &with(&[("CACHE", &cache), ("UPSTREAM_DOCKER_IO", &upstream)]),
    );
    (front, mirror, store)
}

fn blobs_of(reference: &str) -> Vec<String> {
    fixture().images.get(reference).blob_digests.clone()
}

fn hits(mirror: &Mirror) -> usize {
    mirror
        .requests()
        .iter()
        .filter(|r| r["cache"] == "hit" && r["status"] == 200)
        .count()
}

#[test]
fn a_second_pull_fetches_no_blob_upstream_and_survives_a_restart() {
    let _serial = serial();
    let blobs = blobs_of(NAMESPACED);
    let first = mirror_with_store("store-first", "store-restart", &[]);
    assert_same_as_direct(&first, NAMESPACED, &[], None);
    let after_first = fixture().storage_gets_of(&blobs);
    assert!(after_first > 0, "the first pull did not reach storage");
    assert_same_as_direct(&first, NAMESPACED, &[], None);
    assert_eq!(
        fixture().storage_gets_of(&blobs),
        after_first,
        "the second pull fetched blobs upstream"
    );
    assert!(hits(&first) >= blobs.len(), "{}", first.log_text());
    drop(first);
    // Another process on the same directory serves what the first one stored.
    let second = mirror_with_store("store-second", "store-restart", &[]);
    assert_same_as_direct(&second, NAMESPACED, &[], None);
    assert_eq!(fixture().storage_gets_of(&blobs), after_first);
    assert!(hits(&second) >= blobs.len(), "{}", second.log_text());
}

#[test]
fn a_stored_private_layer_is_served_only_to_whom_the_upstream_lets_read_it() {
    let _serial = serial();
    let mirror = mirror_with_store("store-private", "store-private", &[]);
    support::suite::stored_private_layers_stay_private(&mirror);
}

#[test]
fn the_store_keeps_within_its_bound() {
    let _serial = serial();
    const MAX: u64 = 200 * 1024;
    let mirror = mirror_with_store(
        "store-bounded",
        "store-bounded",
        &[("CACHE_MAX_BYTES", &MAX.to_string())],
    );
    for reference in [V2S2, NAMESPACED, BIG] {
        assert_same_as_direct(&mirror, reference, &[], None);
    }
    let objects = run_dir().join("store-bounded/objects");
    let held: u64 = walk(&objects).iter().sum();
    assert!(held <= MAX, "{held} bytes held, the bound is {MAX}");
    assert!(held > 0, "nothing was kept");
}

fn walk(dir: &std::path::Path) -> Vec<u64> {
    let mut sizes = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            sizes.extend(walk(&entry.path()));
        } else {
            sizes.push(meta.len());
        }
    }
    sizes
}

/// Storage that answers with other bytes than the digest says: the client's pull fails (its
/// response is cut short), nothing is stored, and once storage is right again the pull is whole.
#[test]
fn a_corrupted_upstream_blob_is_never_stored() {
    let _serial = serial();
    let (front, mirror, store) = behind_a_front("store-corrupt");
    front.set(Fault::CorruptBody);
    let corrupted = support::clients::skopeo_copy(&format!("{}/{V2S2}", mirror.addr), None, &[]);
    assert!(corrupted.is_err(), "a corrupted pull succeeded");
    // Even a client that checks nothing sees the failure: the response ends short of its length.
    let layer = blobs_of(V2S2).last().unwrap().clone();
    let token = mirror_token(&mirror, "/token?scope=repository:library/alpine:pull", &[]);
    let (whole, _) = curl_blob(&mirror, "library/alpine", &layer, &token, 30);
    assert!(!whole, "curl took corrupted bytes as a whole blob");
    // Manifests come from the registry, whole; the blobs came from storage, corrupted.
    let blobs = store.join("objects/v1/docker.io/blobs");
    assert!(walk(&blobs).is_empty(), "corrupted bytes were stored");
    front.set(Fault::None);
    assert_same_as_direct(&mirror, V2S2, &[], None);
    assert!(!walk(&blobs).is_empty());
}

/// Two clients missing the same blob at once: it is fetched from storage once, and both get it
/// whole (the second waits for the first, then is served from the store). Storage is made slow
/// so that the second arrives while the first is fetching. (Should the disk fall behind the
/// first relay, the store fetches the rest once more itself, as a range: not a second fetch.)
#[test]
fn concurrent_misses_fetch_a_blob_once() {
    let _serial = serial();
    let f = fixture();
    let (front, mirror, _) = behind_a_front("store-concurrent");
    let layer = blobs_of(BIG).last().unwrap().clone();
    let name = BIG.split(':').next().unwrap();
    let token = mirror_token(
        &mirror,
        &format!("/token?scope=repository:{name}:pull"),
        &[],
    );
    front.set(Fault::SlowHead(std::time::Duration::from_secs(1)));
    let before = f.storage_whole_gets_of(std::slice::from_ref(&layer));
    let fetch = || curl_blob(&mirror, name, &layer, &token, 60).1;
    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(fetch);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let second = s.spawn(fetch);
        (first.join().unwrap(), second.join().unwrap())
    });
    front.set(Fault::None);
    // Both whole: the same status and size.
    assert!(first.starts_with("200 "), "{first}");
    assert_eq!(first, second);
    assert_eq!(
        f.storage_whole_gets_of(std::slice::from_ref(&layer)) - before,
        1,
        "the blob was fetched more than once ({first}; {second})"
    );
}

/// The local server with a store of its own, for the client suite's cases.
struct LocalWithStore;

impl Runtime for LocalWithStore {
    fn name(&self) -> &'static str {
        "local"
    }

    fn start(&self, label: &str, settings: &[(String, String)]) -> Mirror {
        let cache = format!("file://{}", run_dir().join("store-clients").display());
        let mut settings: Vec<(String, String)> = settings
            .iter()
            .filter(|(k, _)| k != "CACHE")
            .cloned()
            .collect();
        settings.push(("CACHE".into(), cache));
        LocalServer.start(label, &settings)
    }
}

static STORED: support::mirrors::Mirrors = support::mirrors::Mirrors::new(&LocalWithStore);

/// dockerd, containerd and skopeo pull through the store; pulled again by fresh clients, the same
/// images cost Docker Hub no counted manifest `GET` (tags are asked with `HEAD`) and storage no
/// blob.
#[test]
fn pulled_again_images_cost_no_counted_get() {
    use support::suite::{
        ctr_fetches_full_and_short_names, dockerd_pulls_short_names_through_registry_mirrors,
        skopeo_pulls_short_names,
    };
    let _serial = serial();
    let pull_all = || {
        dockerd_pulls_short_names_through_registry_mirrors(&STORED);
        ctr_fetches_full_and_short_names(&STORED);
        skopeo_pulls_short_names(&STORED);
    };
    pull_all();
    let (gets, blobs) = (fixture().all_manifest_gets(), fixture().storage_blob_gets());
    let hits_before = hits(STORED.open());
    let counted =
        |lines: &[serde_json::Value]| lines.iter().filter(|r| r["counted_get"] == true).count();
    let logged = STORED.open().requests().len();
    assert!(
        counted(&STORED.open().requests()) > 0,
        "the log shows no counted GET"
    );
    pull_all();
    let again = STORED.open().requests();
    assert_eq!(counted(&again[logged..]), 0, "the log shows counted GETs");
    assert_eq!(
        fixture().all_manifest_gets(),
        gets,
        "the second pulls made counted manifest GETs"
    );
    assert_eq!(
        fixture().storage_blob_gets(),
        blobs,
        "the second pulls fetched blobs"
    );
    assert!(hits(STORED.open()) > hits_before);
}

/// Behind an upstream that counts pulls as Docker Hub does and allows only a few, an image pulled
/// once keeps pulling through the store: tags go by `HEAD`, which is free, and the stored
/// manifests and blobs are served. The mirror's log shows the pulls left.
#[test]
fn pulls_keep_working_past_docker_hubs_limit() {
    let _serial = serial();
    let (front, mirror, _) = behind_a_front("store-limited");
    let upstream = format!("http://{}", front.addr);
    front.set(Fault::PullLimit { left: 2 });
    for round in 0..6 {
        let pulled = support::clients::skopeo_copy(&format!("{}/{V2S2}", mirror.addr), None, &[]);
        let dir = pulled.unwrap_or_else(|e| panic!("pull {round} past the limit: {e}"));
        std::fs::remove_dir_all(dir).ok();
    }
    // With no pull left at all, the store still serves; a mirror without one is refused.
    front.set(Fault::PullLimit { left: 0 });
    let pulled = support::clients::skopeo_copy(&format!("{}/{V2S2}", mirror.addr), None, &[]);
    std::fs::remove_dir_all(pulled.expect("a pull with no pulls left")).ok();
    let plain = LocalServer.start(
        "store-limited-none",
        &with(&[("CACHE", "none"), ("UPSTREAM_DOCKER_IO", &upstream)]),
    );
    let token = mirror_token(&plain, "/token?scope=repository:library/alpine:pull", &[]);
    let (status, out) = curl(
        &plain,
        "/v2/library/alpine/manifests/v2s2",
        &[
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
        ],
    );
    assert_eq!(
        status, 429,
        "the limit did not hold without the store: {out}"
    );
    front.set(Fault::None);
    let remaining: Vec<_> = mirror
        .requests()
        .iter()
        .filter_map(|r| r["ratelimit_remaining"].as_str().map(str::to_string))
        .filter(|r| r != "-")
        .collect();
    assert!(
        !remaining.is_empty(),
        "the log shows no ratelimit-remaining"
    );
}

/// The local server with a store of its own, whose Docker Hub is the fixture behind a front.
static LOCAL_BEHIND_FRONT: support::mirrors::BehindFront =
    support::mirrors::BehindFront::new(&LocalServer, || {
        let cache = format!("file://{}", run_dir().join("store-stale").display());
        vec![("CACHE".into(), cache)]
    });

static BEHIND_FRONT: support::mirrors::Mirrors =
    support::mirrors::Mirrors::new(&LOCAL_BEHIND_FRONT);

#[test]
fn stored_images_pull_while_docker_hub_throttles_or_is_down() {
    let _serial = serial();
    support::suite::stored_images_pull_while_docker_hub_fails(
        &BEHIND_FRONT,
        LOCAL_BEHIND_FRONT.front(),
    );
}

/// A local server whose store is `prefix` in `bucket` (moto's S3).
fn mirror_on_bucket(label: &str, bucket: &str, prefix: &str) -> Mirror {
    let mut settings: Vec<(String, String)> = with(&[])
        .into_iter()
        .filter(|(k, _)| k != "CACHE")
        .collect();
    settings.extend(fixture().bucket_settings(bucket, prefix));
    LocalServer.start(label, &settings)
}

/// Two servers on one bucket share it: what one pulled (a 64 MiB layer among it, uploaded in
/// parts) the other serves without fetching a blob upstream; the objects are in the bucket under
/// the prefix.
#[test]
fn two_servers_share_one_bucket() {
    let _serial = serial();
    let f = fixture();
    let bucket = f.create_bucket("shared-store");
    let first = mirror_on_bucket("bucket-one", &bucket, "mirror");
    for reference in [V2S2, BIG] {
        assert_same_as_direct(&first, reference, &[], None);
    }
    // Uploads finish in the background, after the client's response: wait for them (at most
    // a few seconds) before looking.
    let stored = |keys: &[String]| {
        blobs_of(V2S2).iter().chain(&blobs_of(BIG)).all(|blob| {
            let hex = blob.split_once(':').unwrap().1;
            keys.iter().any(|k| k.ends_with(hex))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut keys = f.bucket_keys(&bucket, "mirror/v1/docker.io/blobs/");
    while !stored(&keys) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        keys = f.bucket_keys(&bucket, "mirror/v1/docker.io/blobs/");
    }
    assert!(stored(&keys), "not every blob is in the bucket: {keys:?}");
    let second = mirror_on_bucket("bucket-two", &bucket, "mirror");
    let blobs = f.storage_blob_gets();
    for reference in [V2S2, BIG] {
        assert_same_as_direct(&second, reference, &[], None);
    }
    assert_eq!(
        f.storage_blob_gets(),
        blobs,
        "the second server fetched blobs upstream"
    );
    assert!(hits(&second) >= blobs_of(V2S2).len() + blobs_of(BIG).len());
}

/// Bytes that are not what their digest says never reach the bucket.
#[test]
fn a_corrupted_blob_never_reaches_the_bucket() {
    let _serial = serial();
    let f = fixture();
    let bucket = f.create_bucket("corrupt-store");
    let front = FaultFront::start(&f.registry, f.token_port, f.storage_port);
    let mut settings: Vec<(String, String)> = with(&[])
        .into_iter()
        .filter(|(k, _)| k != "CACHE" && k != "UPSTREAM_DOCKER_IO")
        .collect();
    settings.extend(f.bucket_settings(&bucket, "c"));
    settings.push((
        "UPSTREAM_DOCKER_IO".into(),
        format!("http://{}", front.addr),
    ));
    let mirror = LocalServer.start("bucket-corrupt", &settings);
    front.set(Fault::CorruptBody);
    let pulled = support::clients::skopeo_copy(&format!("{}/{V2S2}", mirror.addr), None, &[]);
    front.set(Fault::None);
    assert!(pulled.is_err(), "a corrupted pull succeeded");
    // Uploads finish in the background: give them a moment before looking.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let keys = f.bucket_keys(&bucket, "c/v1/docker.io/blobs/");
    for blob in blobs_of(V2S2) {
        let hex = blob.split_once(':').unwrap().1;
        assert!(
            !keys.iter().any(|k| k.ends_with(hex)),
            "the corrupted {blob} is in the bucket"
        );
    }
    assert_same_as_direct(&mirror, V2S2, &[], None);
}

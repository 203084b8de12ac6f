//! The store as clients on real networks use it: clients that read slowly (a few MB/s, as on an
//! ordinary office or home line), and many clients at once, cold and warm, on a directory store
//! and on a bucket store alike, one server and several on one bucket. Every pull is whole and
//! every digest checked (`pull_client`); what is stored is served without the upstream.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::{Duration, Instant};
use support::fixture::{fixture, run_dir};
use support::images::BIG;
use support::mirrors::{with, LocalServer, Mirror, Runtime};
use support::pull_client::{pull_at_once, runtime};

/// One test at a time: each counts the fixture's storage requests, which the others would move.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A slow client: 16 MB/s, so that the 64 MiB layer takes about 4 s (a 100 Mbit/s line is
/// 12 MB/s).
const SLOW: u64 = 16_000_000;
/// The longest a set of pulls may take before the test fails (a bound, not a speed check).
const LIMIT: Duration = Duration::from_secs(240);

/// Where a test's server keeps its store.
enum Store {
    Directory(std::path::PathBuf),
    Bucket { bucket: String, prefix: String },
}

impl Store {
    fn directory(label: &str) -> Store {
        let dir = run_dir().join(label);
        let _ = std::fs::remove_dir_all(&dir);
        Store::Directory(dir)
    }

    fn bucket(label: &str) -> Store {
        let bucket = fixture().create_bucket("store-load");
        Store::Bucket {
            bucket,
            prefix: label.to_string(),
        }
    }

    fn settings(&self) -> Vec<(String, String)> {
        let mut settings: Vec<(String, String)> = with(&[])
            .into_iter()
            .filter(|(k, _)| k != "CACHE")
            .collect();
        match self {
            Store::Directory(dir) => {
                settings.push(("CACHE".into(), format!("file://{}", dir.display())));
            }
            Store::Bucket { bucket, prefix } => {
                settings.extend(fixture().bucket_settings(bucket, prefix));
            }
        }
        settings
    }

    fn start(&self, label: &str) -> Mirror {
        LocalServer.start(label, &self.settings())
    }

    /// Whether every blob of `digests` is stored (a bucket's uploads finish after the answer).
    fn holds(&self, digests: &[String]) -> bool {
        let hexes = digests.iter().map(|d| d.split_once(':').unwrap().1);
        match self {
            Store::Directory(dir) => {
                let blobs = dir.join("objects/v1/docker.io/blobs/sha256");
                hexes.into_iter().all(|hex| blobs.join(hex).exists())
            }
            Store::Bucket { bucket, prefix } => {
                let keys =
                    fixture().bucket_keys(bucket, &format!("{prefix}/v1/docker.io/blobs/sha256/"));
                hexes
                    .into_iter()
                    .all(|hex| keys.iter().any(|k| k.ends_with(hex)))
            }
        }
    }

    /// Waits (at most 30 s) until every blob of `digests` is stored.
    fn wait_for(&self, digests: &[String]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.holds(digests) {
            assert!(Instant::now() < deadline, "the blobs were never stored");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn big_blobs() -> Vec<String> {
    fixture().images.get(BIG).blob_digests.clone()
}

/// The blob GETs the server answered from its store.
fn hits(mirror: &Mirror) -> usize {
    mirror
        .requests()
        .iter()
        .filter(|r| r["route"] == "blob" && r["cache"] == "hit" && r["status"] == 200)
        .count()
}

/// `clients` pulls of the big image at once through `mirrors`, every other one read slowly; the
/// failures, named.
fn pull_big(mirrors: &[&Mirror], clients: usize) -> Vec<String> {
    let addrs: Vec<String> = mirrors.iter().map(|m| m.addr.clone()).collect();
    let name = BIG.trim_start_matches("library/").to_string();
    pull_at_once(&runtime(), &addrs, clients, LIMIT, |i| {
        let rate = (i % 2 == 1).then_some(SLOW);
        (name.clone(), BIG.to_string(), rate)
    })
}

/// One client reading at 16 MB/s gets the 64 MiB layer whole, from the upstream (a miss, stored
/// on the way) and then from the store (a hit), on a directory and on a bucket. A bucket's body
/// once ended after one second whatever its length: a slow client's layer was cut.
#[test]
fn a_slow_client_gets_whole_blobs_hit_and_miss_on_every_store() {
    let _serial = serial();
    for (label, store) in [
        ("slow-directory", Store::directory("slow-directory")),
        ("slow-bucket", Store::bucket("slow-bucket")),
    ] {
        let mirror = store.start(label);
        let one_slow = |mirror: &Mirror| {
            let addrs = [mirror.addr.clone()];
            let name = BIG.trim_start_matches("library/").to_string();
            pull_at_once(&runtime(), &addrs, 1, LIMIT, |_| {
                (name.clone(), BIG.to_string(), Some(SLOW))
            })
        };
        let errors = one_slow(&mirror);
        assert!(errors.is_empty(), "{label}, a miss read slowly: {errors:?}");
        store.wait_for(&big_blobs());
        let errors = one_slow(&mirror);
        assert!(errors.is_empty(), "{label}, a hit read slowly: {errors:?}");
        assert!(
            hits(&mirror) >= big_blobs().len(),
            "{label}: the second pull was not served from the store"
        );
    }
}

/// Twelve clients pull the big image at once, half of them slowly: cold (all missing the same
/// layer; on a directory, each blob fetched upstream once), then warm (all served from the
/// store, nothing fetched upstream), on a directory and on a bucket. All twenty-four pulls are
/// whole.
#[test]
fn twelve_clients_at_once_pull_whole_cold_and_warm_on_every_store() {
    let _serial = serial();
    let f = fixture();
    for (label, store) in [
        ("twelve-directory", Store::directory("twelve-directory")),
        ("twelve-bucket", Store::bucket("twelve-bucket")),
    ] {
        let mirror = store.start(label);
        let before = f.storage_gets_of(&big_blobs());
        let errors = pull_big(&[&mirror], 12);
        assert!(errors.is_empty(), "{label}, cold: {errors:?}");
        // A directory's fill is no client's: each blob crossed from the upstream once.
        if let Store::Directory(_) = store {
            let transfers = f.storage_gets_of(&big_blobs()) - before;
            assert_eq!(
                transfers,
                big_blobs().len(),
                "{label}: blobs fetched more than once"
            );
        }
        store.wait_for(&big_blobs());
        let fetched = f.storage_gets_of(&big_blobs());
        let errors = pull_big(&[&mirror], 12);
        assert!(errors.is_empty(), "{label}, warm: {errors:?}");
        assert_eq!(
            f.storage_gets_of(&big_blobs()),
            fetched,
            "{label}: a warm pull fetched a blob upstream"
        );
    }
}

/// Three servers on one bucket, twelve clients spread over them (half reading slowly): cold,
/// then warm with nothing fetched upstream.
#[test]
fn three_servers_on_one_bucket_serve_twelve_clients_whole() {
    let _serial = serial();
    let f = fixture();
    let store = Store::bucket("three-servers");
    let servers: Vec<Mirror> = (0..3)
        .map(|i| store.start(&format!("three-servers-{i}")))
        .collect();
    let servers: Vec<&Mirror> = servers.iter().collect();
    let errors = pull_big(&servers, 12);
    assert!(errors.is_empty(), "cold: {errors:?}");
    store.wait_for(&big_blobs());
    let fetched = f.storage_gets_of(&big_blobs());
    let errors = pull_big(&servers, 12);
    assert!(errors.is_empty(), "warm: {errors:?}");
    assert_eq!(
        f.storage_gets_of(&big_blobs()),
        fetched,
        "a warm pull fetched a blob upstream"
    );
}

/// One client of the 64 MiB layer through the mirror, as a test client reads it: reading at
/// `slow_rate` for its first `slow_for` bytes (then at full speed); the time to its first byte,
/// or why it failed. Whole, and of the right digest, or an error.
async fn read_layer(
    mirror: String,
    token: String,
    slow_rate: u64,
    slow_for: u64,
) -> Result<Duration, String> {
    use http_body_util::BodyExt;
    use sha2::Digest;
    let layer = big_blobs().last().unwrap().clone();
    let url = format!("http://{mirror}/v2/big/blobs/{layer}");
    let started = Instant::now();
    let answer = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if answer.status() != 200 {
        return Err(format!("{}", answer.status()));
    }
    let mut body = http::Response::from(answer).into_body();
    let (mut first_byte, mut read, mut hash) = (None, 0u64, sha2::Sha256::new());
    let paced = Instant::now();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("cut after {read} bytes: {e}"))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        first_byte.get_or_insert_with(|| started.elapsed());
        hash.update(&chunk);
        read += chunk.len() as u64;
        if read < slow_for {
            let due = Duration::from_secs_f64(read as f64 / slow_rate as f64);
            if let Some(wait) = due.checked_sub(paced.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    let digest = format!("sha256:{:x}", hash.finalize());
    if digest != layer {
        return Err(format!("{read} bytes, digest {digest}"));
    }
    first_byte.ok_or_else(|| "no byte".to_string())
}

/// A cold layer, one client reading it slowly (512 KB/s for its first 8 MiB) and twelve fast
/// ones arriving just after: the upstream sends it once, every client gets it whole, each its
/// first byte within 2 s. (The store once released the others from a slow first client to fetch
/// it themselves: seven transfers for seven clients.) A directory store: a bucket's fill is still
/// its first client's.
#[test]
fn mixed_speed_clients_of_a_cold_layer_cost_one_upstream_transfer() {
    let _serial = serial();
    let f = fixture();
    let store = Store::directory("mixed-speeds");
    let mirror = store.start("mixed-speeds");
    let layer = vec![big_blobs().last().unwrap().clone()];
    let runtime = runtime();
    let addr = mirror.addr.clone();
    let token = runtime
        .block_on(support::pull_client::token(
            &reqwest::Client::new(),
            &addr,
            "big",
        ))
        .unwrap();
    let before = f.storage_gets_of(&layer);
    let results: Vec<Result<Duration, String>> = runtime.block_on(async {
        let slow = tokio::spawn(read_layer(addr.clone(), token.clone(), 512_000, 8 << 20));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let fast: Vec<_> = (0..12)
            .map(|_| tokio::spawn(read_layer(addr.clone(), token.clone(), u64::MAX, 0)))
            .collect();
        let mut results = vec![slow.await.unwrap()];
        for client in fast {
            results.push(client.await.unwrap());
        }
        results
    });
    for (n, result) in results.iter().enumerate() {
        match result {
            Ok(first_byte) => assert!(
                *first_byte < Duration::from_secs(2),
                "client {n}: first byte after {first_byte:?}"
            ),
            Err(e) => panic!("client {n}: {e}"),
        }
    }
    assert_eq!(
        f.storage_gets_of(&layer) - before,
        1,
        "the layer was fetched upstream more than once"
    );
    store.wait_for(&layer);
}

/// A front before moto's S3 that passes everything, but, when told, holds the next large object
/// GET after its first MiB: a bucket that stalls in the middle of a body. The count of ranged
/// GETs it passed (a read resumed from where it stopped).
fn stalling_bucket() -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let (listener, addr) = support::http_front::bind();
    let moto = format!("127.0.0.1:{}", fixture().moto_port);
    let (stall, ranged) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (stall_next, ranges) = (stall.clone(), ranged.clone());
    let client = reqwest::Client::new();
    support::http_front::serve(
        listener,
        move |request: http::Request<hyper::body::Incoming>| {
            let (client, moto) = (client.clone(), moto.clone());
            let (stall_next, ranges) = (stall_next.clone(), ranges.clone());
            async move {
                let (head, body) = request.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                if head.headers.contains_key("range") {
                    ranges.fetch_add(1, Ordering::SeqCst);
                }
                let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
                let url = format!("http://{moto}{path}");
                let answer = support::http_front::forward(&client, &head, url, body).await?;
                let large = answer.content_length().unwrap_or(0) > 2 << 20;
                let hold = head.method == http::Method::GET
                    && large
                    && stall_next.swap(false, Ordering::SeqCst);
                let mut out = http::Response::builder().status(answer.status());
                for (name, value) in answer.headers() {
                    out = out.header(name, value);
                }
                let stream = Box::pin(answer.bytes_stream());
                let body =
                    futures_util::stream::unfold((stream, 0usize), move |(mut stream, sent)| {
                        use futures_util::StreamExt;
                        async move {
                            if hold && sent >= 1 << 20 {
                                // Holds the connection open, sending nothing.
                                std::future::pending::<()>().await;
                            }
                            let chunk = stream.next().await?.map_err(std::io::Error::other);
                            let n = chunk.as_ref().map_or(0, |c| c.len());
                            Some((chunk.map(hyper::body::Frame::data), (stream, sent + n)))
                        }
                    });
                let body: support::http_front::Body = http_body_util::StreamBody::new(body).boxed();
                Ok::<_, std::io::Error>(out.body(body).unwrap())
            }
        },
    );
    (addr, stall, ranged)
}

/// A bucket that stops sending in the middle of a stored layer: the read is asked again from
/// where it stopped (after 10 s without a byte), and the client gets the layer whole.
#[test]
fn a_bucket_that_stalls_mid_body_costs_a_wait_not_a_cut() {
    let _serial = serial();
    let (front, stall, ranged) = stalling_bucket();
    let store = Store::bucket("stalling");
    let mut settings = store.settings();
    settings.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    settings.push(("AWS_ENDPOINT_URL".into(), format!("http://{front}")));
    let mirror = LocalServer.start("stalling-bucket", &settings);
    let addrs = [mirror.addr.clone()];
    let name = BIG.trim_start_matches("library/").to_string();
    let pull = || {
        pull_at_once(&runtime(), &addrs, 1, LIMIT, |_| {
            (name.clone(), BIG.to_string(), None)
        })
    };
    assert!(pull().is_empty(), "the cold pull failed");
    store.wait_for(&big_blobs());
    stall.store(true, std::sync::atomic::Ordering::SeqCst);
    let errors = pull();
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        !stall.load(std::sync::atomic::Ordering::SeqCst),
        "the bucket was never asked for the layer"
    );
    assert!(
        ranged.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "the stalled read was not resumed with a range"
    );
    assert!(
        hits(&mirror) >= 1,
        "the layer was not served from the bucket"
    );
}

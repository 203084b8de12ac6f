//! Benchmark (not a test): the mirror's relay and its directory store against the fastest upstream
//! this machine has, nginx serving a registry's files, beside nginx itself. All in one run:
//! - a 512 MiB blob (`BENCH_BLOB_MIB`) from nginx serving the file (`sendfile`: the ceiling of a
//!   store hit), from nginx as a streaming proxy of it (the reference of a relay), from the mirror
//!   relaying (`CACHE=none`), from the mirror's store (a hit), and through a cold store (the first
//!   copy, relayed and stored at once); GB/s and the serving process's CPU seconds per GiB, median
//!   and range over the rounds;
//! - the latency a keep-alive manifest GET gains through the relay, and a tag GET answered from
//!   the store's record (`TAG_TTL_SECS`);
//! - the mirror's peak memory while it serves 64 concurrent hits of the blob;
//! - a cold blob with mixed readers: one client reading at 1 MB/s, then 16 fast ones: the
//!   upstream transfers it took (goal: 1), and the fast clients' first byte and time.
//!
//! Prints markdown tables and draws `bench/store.svg` (the chart the README shows). The client is
//! curl writing to /dev/null, one transfer at a time. Run with `bench/run` or
//! `cargo bench --bench store`.

#[cfg(not(target_arch = "wasm32"))]
#[path = "../../tests/support/mod.rs"]
#[allow(unused_macros)]
mod support;

#[cfg(not(target_arch = "wasm32"))]
mod chart;
#[cfg(not(target_arch = "wasm32"))]
mod servers;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    bench::main()
}

/// The benchmark runs natively only.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod bench {
    use crate::chart::{draw, Bar};
    use crate::servers::{cpu_seconds, Files, Nginx, StoreMirror};
    use crate::support::measure::{peak_rss_mib, percentile_ms};
    use crate::support::mirrors::{LocalServer, Runtime};
    use crate::support::process::need;
    use std::process::Command;
    use std::time::{Duration, Instant};

    const MIB: usize = 1024 * 1024;
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    const ROUNDS: usize = 5;
    const MANIFEST_REQUESTS: usize = 500;
    const CONCURRENT_HITS: usize = 64;
    const FAST_READERS: usize = 16;

    /// One row of the throughput table: a GB/s and a CPU s/GiB per round.
    struct Row {
        name: &'static str,
        rates: Vec<f64>,
        cpu: Vec<f64>,
    }

    impl Row {
        fn new(name: &'static str) -> Row {
            Row {
                name,
                rates: Vec::new(),
                cpu: Vec::new(),
            }
        }
    }

    pub fn main() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let size = std::env::var("BENCH_BLOB_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512usize)
            * MIB;
        let files = Files::write(size);
        let registry = Nginx::registry(&files);
        let proxy = Nginx::proxy(&registry.addr);
        let upstream = (
            "UPSTREAM_DOCKER_IO".to_string(),
            format!("http://{}", registry.addr),
        );
        let relay = LocalServer.start(
            "bench-store-relay",
            &[upstream.clone(), ("CACHE".to_string(), "none".to_string())],
        );
        let relay_pid = relay._processes[0].pid;
        let blob = |addr: &str| {
            format!(
                "http://{addr}/v2/{}/blobs/{}",
                files.repository, files.digest
            )
        };

        let mut file = Row::new("nginx serving the file (sendfile)");
        let mut hit = Row::new("registry-mirror, hit from its store");
        let mut nginx_relay = Row::new("nginx proxy_pass (streaming)");
        let mut mirror_relay = Row::new("registry-mirror relaying (`CACHE=none`)");
        let mut cold = Row::new("registry-mirror, cold copy through its store");
        let mut store = None;
        for round in 0..ROUNDS {
            // A fresh store each round: its first GET is the cold copy, the next ones hits.
            drop(store.take());
            let fresh = StoreMirror::start(round, &upstream, &files);
            measure(&mut cold, &blob(&fresh.mirror.addr), size, &[fresh.pid()]);
            fresh.wait_until_stored();
            measure(&mut file, &blob(&registry.addr), size, &[registry.group]);
            measure(&mut hit, &blob(&fresh.mirror.addr), size, &[fresh.pid()]);
            measure(&mut nginx_relay, &blob(&proxy.addr), size, &[proxy.group]);
            measure(&mut mirror_relay, &blob(&relay.addr), size, &[relay_pid]);
            store = Some(fresh);
        }
        let store = store.expect("at least one round");

        println!(
            "registry-mirror store benchmark: a {} MiB blob, {ROUNDS} rounds, nginx serving a registry's files on 127.0.0.1 as the upstream",
            size / MIB
        );
        println!();
        println!(
            "| system | GB/s (median, min-max) | CPU s/GiB (median, min-max) | time (median) |"
        );
        println!("| --- | --- | --- | --- |");
        let rows = [&file, &hit, &nginx_relay, &mirror_relay, &cold];
        for row in rows {
            println!(
                "| {} | {} | {} | {:.2} s |",
                row.name,
                spread(&row.rates, 2),
                spread(&row.cpu, 2),
                size as f64 / 1e9 / median(&row.rates)
            );
        }
        println!();
        let ratio = |a: &Row, b: &Row| median(&a.rates) / median(&b.rates);
        println!("| figure | value |");
        println!("| --- | --- |");
        println!(
            "| store hit ÷ nginx serving the file (throughput) | ×{:.2} |",
            ratio(&hit, &file)
        );
        println!(
            "| mirror relay ÷ nginx proxy_pass (throughput) | ×{:.2} |",
            ratio(&mirror_relay, &nginx_relay)
        );
        println!(
            "| cold copy time ÷ relay time | ×{:.2} |",
            ratio(&mirror_relay, &cold)
        );

        let (direct, through, from_record) = latencies(&registry.addr, &relay.addr, &store, &files);
        println!(
            "| manifest GET p50, nginx / through the relay / added | {:.3} ms / {:.3} ms / {:+.3} ms |",
            percentile_ms(&direct, 50.0),
            percentile_ms(&through, 50.0),
            percentile_ms(&through, 50.0) - percentile_ms(&direct, 50.0)
        );
        println!(
            "| tag GET answered from the store's record (`TAG_TTL_SECS`), p50 | {:.3} ms |",
            percentile_ms(&from_record, 50.0)
        );
        let (whole, seconds) = concurrent_hits(&blob(&store.mirror.addr), size);
        println!(
            "| peak RSS, {CONCURRENT_HITS} concurrent hits of the blob ({whole} whole, {seconds:.1} s) | {:.1} MiB |",
            peak_rss_mib(store.pid())
        );

        let mixed = mixed_readers(&upstream, &files, &blob, size);
        println!(
            "| cold blob, 1 reader at 1 MB/s + {FAST_READERS} fast: upstream transfers | {} |",
            mixed.transfers
        );
        println!(
            "| same: fast readers' first byte p50 / p99, all whole in | {:.0} ms / {:.0} ms, {:.1} s ({} of {FAST_READERS} whole) |",
            percentile_ms(&mixed.first_bytes, 50.0),
            percentile_ms(&mixed.first_bytes, 99.0),
            mixed.seconds,
            mixed.whole
        );

        let bars: Vec<Bar> = rows
            .iter()
            .map(|row| Bar {
                name: row.name,
                rates: row.rates.clone(),
                cpu: row.cpu.clone(),
            })
            .collect();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/store.svg");
        draw(&path, size / MIB, &bars);
        println!();
        println!("chart: bench/store.svg");
    }

    /// One GET of the blob with curl: its GB/s and the CPU seconds per GiB that `processes` (PIDs
    /// or process groups) spent meanwhile.
    fn measure(row: &mut Row, url: &str, size: usize, processes: &[i32]) {
        let before = cpu_seconds(processes);
        let started = Instant::now();
        let output = Command::new(need("curl"))
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download}",
                url,
            ])
            .output()
            .expect("run curl");
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(processes) - before;
        let written = String::from_utf8_lossy(&output.stdout).to_string();
        assert_eq!(written, format!("200 {size}"), "{}: GET {url}", row.name);
        row.rates.push(size as f64 / 1e9 / elapsed);
        row.cpu.push(cpu / (size as f64 / GIB));
        eprintln!(
            "{}: {:.2} GB/s, {:.2} CPU s/GiB",
            row.name,
            row.rates.last().unwrap(),
            row.cpu.last().unwrap()
        );
    }

    /// Keep-alive manifest GETs, alternating: from nginx, through the relay, and a tag answered
    /// from the store's record.
    fn latencies(
        registry: &str,
        relay: &str,
        store: &StoreMirror,
        files: &Files,
    ) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = reqwest::Client::new();
        let accept = "application/vnd.oci.image.manifest.v1+json";
        let manifest =
            |addr: &str| format!("http://{addr}/v2/{}/manifests/latest", files.repository);
        runtime.block_on(async {
            let get = |url: String| {
                let client = client.clone();
                async move {
                    let started = Instant::now();
                    let answer = client
                        .get(&url)
                        .header("accept", accept)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(answer.status(), 200, "GET {url}");
                    answer.bytes().await.unwrap();
                    started.elapsed()
                }
            };
            // Warm the connections (and the store's tag record) first.
            for addr in [registry, relay, &store.mirror.addr] {
                get(manifest(addr)).await;
            }
            let (mut direct, mut through, mut from_record) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..MANIFEST_REQUESTS {
                direct.push(get(manifest(registry)).await);
                through.push(get(manifest(relay)).await);
                from_record.push(get(manifest(&store.mirror.addr)).await);
            }
            (direct, through, from_record)
        })
    }

    /// `CONCURRENT_HITS` curls at once: how many got the whole blob, and the seconds it took.
    fn concurrent_hits(url: &str, size: usize) -> (usize, f64) {
        let started = Instant::now();
        let children: Vec<_> = (0..CONCURRENT_HITS)
            .map(|_| {
                Command::new(need("curl"))
                    .args([
                        "-sS",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code} %{size_download}",
                        url,
                    ])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("run curl")
            })
            .collect();
        let whole = children
            .into_iter()
            .map(|child| child.wait_with_output().expect("curl"))
            .filter(|output| String::from_utf8_lossy(&output.stdout) == format!("200 {size}"))
            .count();
        (whole, started.elapsed().as_secs_f64())
    }

    /// What a cold blob with mixed readers cost.
    struct Mixed {
        transfers: usize,
        first_bytes: Vec<Duration>,
        seconds: f64,
        whole: usize,
    }

    /// A fresh store; one curl reading the cold blob at 1 MB/s, then `FAST_READERS` at full
    /// speed half a second later. The upstream transfers are the blob GETs the mirror answered
    /// as misses (a reader of the growing blob is a hit). The slow reader is stopped once the
    /// fast ones are done.
    fn mixed_readers(
        upstream: &(String, String),
        files: &Files,
        blob: &dyn Fn(&str) -> String,
        size: usize,
    ) -> Mixed {
        let store = StoreMirror::start(ROUNDS + 1, upstream, files);
        let url = blob(&store.mirror.addr);
        let curl = |extra: &[&str]| {
            Command::new(need("curl"))
                .args(["-sS", "-o", "/dev/null", "-w"])
                .arg("%{http_code} %{size_download} %{time_starttransfer}")
                .args(extra)
                .arg(&url)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("run curl")
        };
        let mut slow = curl(&["--limit-rate", "1M"]);
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        let fast: Vec<_> = (0..FAST_READERS).map(|_| curl(&[])).collect();
        let outputs: Vec<String> = fast
            .into_iter()
            .map(|child| String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into())
            .collect();
        let seconds = started.elapsed().as_secs_f64();
        let _ = slow.kill();
        let _ = slow.wait();
        let whole = outputs
            .iter()
            .filter(|o| o.starts_with(&format!("200 {size} ")))
            .count();
        let first_bytes = outputs
            .iter()
            .filter_map(|o| o.split_whitespace().nth(2)?.parse::<f64>().ok())
            .map(Duration::from_secs_f64)
            .collect();
        let transfers = store
            .mirror
            .requests()
            .iter()
            .filter(|r| r["route"] == "blob" && r["cache"] == "miss")
            .count();
        Mixed {
            transfers,
            first_bytes,
            seconds,
            whole,
        }
    }

    fn median(values: &[f64]) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        sorted[sorted.len() / 2]
    }

    /// "median (min-max)".
    fn spread(values: &[f64], decimals: usize) -> String {
        let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        format!(
            "{:.decimals$} ({min:.decimals$}-{max:.decimals$})",
            median(values)
        )
    }
}

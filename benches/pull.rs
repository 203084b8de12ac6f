//! Benchmark (not a test): pulls a large blob directly from the fixture's storage and through the
//! mirror, several rounds each, and prints the throughput ratio, the mirror's peak RSS as the blob
//! grows, and the latency a manifest request gains through the mirror (p50, p99).
//!
//! Run with `bench/run` (which installs the fixture's tools) or `cargo bench --bench pull`.

#[cfg(not(target_arch = "wasm32"))]
#[path = "../tests/support/mod.rs"]
#[allow(unused_macros)]
mod support;

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    bench::main()
}

/// The benchmark runs natively only.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod bench {

    use crate::support::fixture::{fixture, SERVICE};
    use crate::support::measure::{peak_rss_mib, percentile_ms, push_blob};
    use crate::support::mirrors::{LocalServer, Runtime};
    use std::time::{Duration, Instant};

    const MIB: usize = 1024 * 1024;
    const ROUNDS: usize = 3;
    const MANIFEST_REQUESTS: usize = 300;

    pub fn main() {
        let sizes: Vec<usize> = std::env::var("BENCH_BLOB_MIB")
            .unwrap_or_else(|_| "256,512".to_string())
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<usize>()
                    .expect("BENCH_BLOB_MIB: sizes in MiB")
                    * MIB
            })
            .collect();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fixture = fixture();
        // The relay itself is measured: no content store.
        let settings = vec![
            (
                "UPSTREAM_DOCKER_IO".to_string(),
                format!("http://{}", fixture.registry),
            ),
            ("CACHE".to_string(), "none".to_string()),
        ];
        let mirror = LocalServer.start("bench", &settings);
        let mirror_pid = mirror._processes[0].pid;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();

        println!(
            "registry-mirror benchmark: local server ({} build), fixture on 127.0.0.1",
            build_kind()
        );
        println!();
        println!(
            "| blob | direct MB/s (median of {ROUNDS}) | mirror MB/s | ratio | mirror peak RSS |"
        );
        println!("| --- | --- | --- | --- | --- |");
        for size in sizes {
            let digest =
                runtime.block_on(push_blob(&client, &fixture.registry, "bench/blob", size));
            let mut direct = Vec::new();
            let mut through = Vec::new();
            for _ in 0..ROUNDS {
                direct.push(runtime.block_on(pull_direct(
                    &client,
                    &fixture.registry,
                    &digest,
                    size,
                )));
                through.push(runtime.block_on(pull_via_mirror(
                    &client,
                    &mirror.addr,
                    &digest,
                    size,
                )));
            }
            let (d, m) = (median(&mut direct), median(&mut through));
            println!(
                "| {} MiB | {:.0} | {:.0} | {:.2} | {:.1} MiB |",
                size / MIB,
                d,
                m,
                m / d,
                peak_rss_mib(mirror_pid)
            );
        }

        deploy_artifacts();

        let (direct, through) =
            runtime.block_on(manifest_latency(&client, &fixture.registry, &mirror.addr));
        println!();
        println!("| manifest GET ({MANIFEST_REQUESTS} requests, keep-alive) | p50 | p99 |");
        println!("| --- | --- | --- |");
        println!(
            "| direct | {:.3} ms | {:.3} ms |",
            percentile_ms(&direct, 50.0),
            percentile_ms(&direct, 99.0)
        );
        println!(
            "| through the mirror | {:.3} ms | {:.3} ms |",
            percentile_ms(&through, 50.0),
            percentile_ms(&through, 99.0)
        );
        println!(
            "| added by the mirror | {:.3} ms | {:.3} ms |",
            percentile_ms(&through, 50.0) - percentile_ms(&direct, 50.0),
            percentile_ms(&through, 99.0) - percentile_ms(&direct, 99.0)
        );
    }

    /// The Fastly package and the Lambda artifact, as bench/run builds them, and the Lambda
    /// binary's init time (from `main` to ready, as it logs it; the native release build).
    fn deploy_artifacts() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let size = |path: &str| {
            std::fs::metadata(root.join(path))
                .map(|m| format!("{:.2} MB", m.len() as f64 / 1e6))
                .unwrap_or_else(|_| format!("not built ({path})"))
        };
        let mut init: Vec<f64> = (0..7).map(|_| lambda_init_ms()).collect();
        init.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!();
        println!("| artifact | figure |");
        println!("| --- | --- |");
        println!(
            "| Fastly package (bin/main.wasm) | {} |",
            size("bin/main.wasm")
        );
        println!(
            "| Lambda artifact (arm64 bootstrap) | {} |",
            size("target/lambda-build/lambda/registry-mirror-lambda/bootstrap")
        );
        println!(
            "| Lambda init, main to ready (7 starts) | median {:.1} ms, max {:.1} ms |",
            init[init.len() / 2],
            init[init.len() - 1]
        );
    }

    fn lambda_init_ms() -> f64 {
        // No Runtime API listens there: the function logs its init, then stops.
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_registry-mirror-lambda"))
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .env("UPSTREAM_DOCKER_IO", "http://127.0.0.1:9")
            .output()
            .expect("run the Lambda binary");
        let log = String::from_utf8_lossy(&output.stderr);
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "registry-mirror-lambda ready")
            .and_then(|v| v["init_ms"].as_f64())
            .unwrap_or_else(|| panic!("no init time in the Lambda binary's log: {log}"))
    }

    fn build_kind() -> &'static str {
        if env!("CARGO_BIN_EXE_registry-mirror").contains("/release/") {
            "release"
        } else {
            "debug"
        }
    }

    fn median(values: &mut [f64]) -> f64 {
        values.sort_by(|a, b| a.partial_cmp(b).unwrap());
        values[values.len() / 2]
    }

    async fn token(client: &reqwest::Client, url: String, creds: Option<(&str, &str)>) -> String {
        let mut request = client.get(url);
        if let Some((u, p)) = creds {
            request = request.basic_auth(u, Some(p));
        }
        let body: serde_json::Value =
            serde_json::from_slice(&request.send().await.unwrap().bytes().await.unwrap()).unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    async fn upstream_token(
        client: &reqwest::Client,
        scope: &str,
        creds: Option<(&str, &str)>,
    ) -> String {
        let url = format!(
            "http://127.0.0.1:{}/token?service={SERVICE}&scope={scope}",
            fixture().token_port
        );
        token(client, url, creds).await
    }

    /// Reads a response to the end; returns MB/s and checks the length.
    async fn read_all(mut response: reqwest::Response, started: Instant, size: usize) -> f64 {
        assert_eq!(response.status(), 200);
        let mut total = 0;
        while let Some(chunk) = response.chunk().await.unwrap() {
            total += chunk.len();
        }
        assert_eq!(total, size, "a short body");
        size as f64 / 1e6 / started.elapsed().as_secs_f64()
    }

    async fn pull_direct(
        client: &reqwest::Client,
        registry: &str,
        digest: &str,
        size: usize,
    ) -> f64 {
        let token = upstream_token(client, "repository:bench/blob:pull", None).await;
        let started = Instant::now();
        let redirect = client
            .get(format!("http://{registry}/v2/bench/blob/blobs/{digest}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(redirect.status(), 307);
        let location = redirect.headers()["location"].to_str().unwrap().to_string();
        read_all(client.get(location).send().await.unwrap(), started, size).await
    }

    async fn pull_via_mirror(
        client: &reqwest::Client,
        mirror: &str,
        digest: &str,
        size: usize,
    ) -> f64 {
        let token = token(
            client,
            format!("http://{mirror}/token?scope=repository:bench/blob:pull"),
            None,
        )
        .await;
        let started = Instant::now();
        let response = client
            .get(format!("http://{mirror}/v2/bench/blob/blobs/{digest}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        read_all(response, started, size).await
    }

    async fn manifest_latency(
        client: &reqwest::Client,
        registry: &str,
        mirror: &str,
    ) -> (Vec<Duration>, Vec<Duration>) {
        let accept = "application/vnd.docker.distribution.manifest.v2+json";
        let upstream = upstream_token(client, "repository:library/alpine:pull", None).await;
        let mirror_token = token(
            client,
            format!("http://{mirror}/token?scope=repository:alpine:pull"),
            None,
        )
        .await;
        let mut direct = Vec::new();
        let mut through = Vec::new();
        for _ in 0..MANIFEST_REQUESTS {
            for (url, token, out) in [
                (
                    format!("http://{registry}/v2/library/alpine/manifests/v2s2"),
                    &upstream,
                    &mut direct,
                ),
                (
                    format!("http://{mirror}/v2/alpine/manifests/v2s2"),
                    &mirror_token,
                    &mut through,
                ),
            ] {
                let started = Instant::now();
                let response = client
                    .get(url)
                    .bearer_auth(token)
                    .header("accept", accept)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
                out.push(started.elapsed());
            }
        }
        (direct, through)
    }
}

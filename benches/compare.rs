//! Benchmark (not a test): this mirror in each runtime side by side with the alternatives, on the
//! same fixture and images, several rounds each: direct from the fixture (the limit), the local
//! server, the Fastly binary under Viceroy, the Lambda binary under its emulator, nginx as a plain
//! streaming reverse proxy, and CNCF distribution as a pull-through proxy. Prints markdown tables
//! and writes `bench/compare.dat` for the chart (`bench/run` draws it with gnuplot).
//!
//! Every system is driven by the same small client, which speaks the registry protocol as docker
//! does: the challenge from `/v2/`, a token from its realm, then manifests and blobs, following
//! redirects without credentials.

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
    use crate::support::fixture::{fixture, run_dir};
    use crate::support::images::OCI_INDEX;
    use crate::support::measure::{group_peak_rss_mib, percentile_ms, push_blob};
    use crate::support::mirrors::{LocalServer, Runtime, Viceroy, LAMBDA};
    use crate::support::process::{free_port, need, spawn, wait_for_port, Running};
    use sha2::{Digest, Sha256};
    use std::process::Command;
    use std::time::{Duration, Instant};

    const MIB: usize = 1024 * 1024;
    const ROUNDS: usize = 3;
    const MANIFESTS: usize = 200;
    const CONCURRENT: usize = 64;

    struct System {
        name: &'static str,
        addr: String,
        /// Process groups whose peak RSS counts.
        groups: Vec<i32>,
        /// The mirror's log, for the Lambda cost lines.
        log: Option<std::path::PathBuf>,
        _running: Vec<Running>,
    }

    pub fn main() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let fixture = fixture();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(CONCURRENT)
            .build()
            .unwrap();
        let size = std::env::var("BENCH_BLOB_MIB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256usize)
            * MIB;
        let digest = runtime.block_on(push_blob(&client, &fixture.registry, "bench/blob", size));

        // The relays are compared: no content store.
        let upstream = vec![
            (
                "UPSTREAM_DOCKER_IO".to_string(),
                format!("http://{}", fixture.registry),
            ),
            ("CACHE".to_string(), "none".to_string()),
        ];
        // The local server once more, with its store: what a second pull costs.
        let store = run_dir().join("bench-store");
        let _ = std::fs::remove_dir_all(&store);
        let mut with_store = upstream.clone();
        with_store.retain(|(k, _)| k != "CACHE");
        with_store.push(("CACHE".into(), format!("file://{}", store.display())));
        let systems = vec![
            System {
                name: "direct",
                addr: fixture.registry.clone(),
                groups: vec![],
                log: None,
                _running: vec![],
            },
            mirror_system(
                "registry-mirror, local server",
                LocalServer.start("bench-local", &upstream),
            ),
            mirror_system(
                "registry-mirror, local server + store",
                LocalServer.start("bench-local-store", &with_store),
            ),
            mirror_system(
                "registry-mirror, Fastly (Viceroy)",
                Viceroy.start("bench-fastly", &upstream),
            ),
            mirror_system(
                "registry-mirror, Lambda (function URL front)",
                LAMBDA.start("bench-lambda", &upstream),
            ),
            nginx_proxy(&fixture.registry),
            distribution_proxy(&fixture.registry),
        ];

        println!("registry-mirror comparison: {} MiB blob, {ROUNDS} rounds, all on 127.0.0.1, one 2-core machine", size / MIB);
        println!();
        println!("| system | blob MB/s (median, min-max) | ratio to direct | manifest p50 | manifest p99 | cold copy | warm copy | upstream requests, cold copy | manifest GETs upstream, cold/warm copy | peak RSS | {CONCURRENT} concurrent pulls |");
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        let mut direct_mbps = 0.0;
        let mut data = String::from("# system mbps p50_ms\n");
        let mut lambda_costs = Vec::new();
        for system in &systems {
            let mut mbps: Vec<f64> = (0..ROUNDS)
                .map(|_| {
                    runtime.block_on(pull_blob(
                        &client,
                        &system.addr,
                        "bench/blob",
                        &digest,
                        size,
                    ))
                })
                .collect();
            mbps.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let median = mbps[ROUNDS / 2];
            if system.name == "direct" {
                direct_mbps = median;
            }
            let latency = runtime.block_on(manifest_latency(&client, &system.addr));
            let (p50, p99) = (percentile_ms(&latency, 50.0), percentile_ms(&latency, 99.0));
            let before = upstream_requests();
            let logged_before = system
                .log
                .as_ref()
                .map(|log| answers(log).len())
                .unwrap_or(0);
            let gets_before = manifest_gets();
            let (cold, sizes) = skopeo_copy(&system.addr);
            let cold_gets = manifest_gets() - gets_before;
            if system.name.contains("Lambda") {
                let answers = answers(system.log.as_ref().unwrap());
                lambda_costs.push(lambda_cost(&answers[logged_before..], &sizes));
            }
            let cold_requests = upstream_requests() - before;
            let gets_before = manifest_gets();
            let (warm, _) = skopeo_copy(&system.addr);
            let warm_gets = manifest_gets() - gets_before;
            let rss = system
                .groups
                .iter()
                .map(|g| group_peak_rss_mib(*g))
                .fold(0.0, f64::max);
            let (concurrent_mbps, errors) = runtime.block_on(concurrent(&client, &system.addr));
            println!(
                "| {} | {:.0} ({:.0}-{:.0}) | {:.2} | {:.2} ms | {:.2} ms | {:.2} s | {:.2} s | {} | {}/{} | {} | {:.0} MB/s, {} errors |",
                system.name,
                median,
                mbps[0],
                mbps[ROUNDS - 1],
                median / direct_mbps,
                p50,
                p99,
                cold.as_secs_f64(),
                warm.as_secs_f64(),
                cold_requests,
                cold_gets,
                warm_gets,
                if system.groups.is_empty() { "-".to_string() } else { format!("{rss:.1} MiB") },
                concurrent_mbps,
                errors
            );
            data.push_str(&format!(
                "\"{}\" {median:.1} {p50:.3}\n",
                system.name.replace("registry-mirror, ", "")
            ));
        }
        for cost in lambda_costs {
            println!();
            println!("{cost}");
        }
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/compare.dat");
        std::fs::write(&out, data).unwrap();
        println!();
        println!("(data for the chart: {})", out.display());
    }

    fn mirror_system(name: &'static str, mirror: crate::support::mirrors::Mirror) -> System {
        let groups = mirror._processes.iter().map(|p| p.pid).collect();
        System {
            name,
            addr: mirror.addr,
            groups,
            log: Some(mirror.log),
            _running: mirror._processes,
        }
    }

    /// (route, status, bytes) of each answer in a mirror's log.
    fn answers(log: &std::path::Path) -> Vec<(String, u64, u64)> {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                serde_json::from_str::<serde_json::Value>(&line[line.find('{')?..]).ok()
            })
            .filter(|v| v["message"] == "request" || v["msg"] == "request")
            .map(|v| {
                (
                    v["route"].as_str().unwrap_or("").to_string(),
                    v["status"].as_u64().unwrap_or(0),
                    v["bytes"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// What one cold pull through the Lambda function would cost on AWS: the bytes that go through
    /// the function (a buffered payload base64-encodes a blob, 4/3 of it), and the seconds that
    /// Lambda's 2 MB/s after the first 6 MB of a streamed response would add had the blobs
    /// streamed (`RESPONSE_STREAM`); in the template's `BUFFERED` mode nothing streams.
    fn lambda_cost(answers: &[(String, u64, u64)], pulled: &[u64]) -> String {
        const MB: f64 = 1_000_000.0;
        let through: u64 = answers.iter().map(|(_, _, bytes)| bytes).sum();
        let payload: u64 = answers
            .iter()
            .map(|(route, _, bytes)| {
                if route == "blob" {
                    bytes.div_ceil(3) * 4
                } else {
                    *bytes
                }
            })
            .sum();
        let redirected = answers
            .iter()
            .filter(|(route, status, _)| route == "blob" && *status == 307)
            .count();
        format!(
            "Lambda, one cold pull: {} answers, {:.2} MB through the function ({:.2} MB of payload, \
             base64 included), {redirected} blobs redirected to storage; Lambda's 2 MB/s after 6 MB \
             adds 0 s in BUFFERED mode (nothing streams), and would add {:.1} s per pull had every \
             blob streamed through the function",
            answers.len(),
            through as f64 / MB,
            payload as f64 / MB,
            streamed_cap_seconds(pulled),
        )
    }

    /// Seconds at 2 MB/s for the part of each pulled file past 6 MB (Lambda's streaming limits).
    fn streamed_cap_seconds(pulled: &[u64]) -> f64 {
        pulled
            .iter()
            .map(|size| (*size as f64 - 6_000_000.0).max(0.0) / 2_000_000.0)
            .sum()
    }

    /// nginx in front of the registry, streaming (`proxy_buffering off`): clients follow the
    /// storage redirects themselves.
    fn nginx_proxy(registry: &str) -> System {
        let dir = run_dir().join("bench-nginx");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/f;\n  uwsgi_temp_path {d}/u;\n  scgi_temp_path {d}/s;\n\
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://{registry};\n      proxy_http_version 1.1;\n      proxy_set_header Host $http_host;\n      proxy_buffering off;\n      proxy_request_buffering off;\n    }}\n  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut nginx = Command::new(need("nginx"));
        nginx
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(&dir);
        let running = spawn("bench nginx", nginx, &dir.join("nginx.out"));
        wait_for_port(port, "nginx", &dir.join("error.log"));
        System {
            name: "nginx proxy_pass",
            addr: format!("127.0.0.1:{port}"),
            groups: vec![running.pid],
            log: None,
            _running: vec![running],
        }
    }

    /// CNCF distribution in pull-through proxy mode, caching on its own disk.
    fn distribution_proxy(registry: &str) -> System {
        let dir = run_dir().join("bench-distribution");
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        let port = free_port();
        let conf = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  cache:\n    blobdescriptor: inmemory\nhttp:\n  addr: 127.0.0.1:{port}\nproxy:\n  remoteurl: http://{registry}\n",
            dir.join("storage").display()
        );
        std::fs::write(dir.join("config.yml"), conf).unwrap();
        let mut command = Command::new(need("docker-registry"));
        command
            .arg("serve")
            .arg(dir.join("config.yml"))
            .env_remove("AWS_CA_BUNDLE");
        let log = dir.join("registry.log");
        let running = spawn("bench distribution proxy", command, &log);
        wait_for_port(port, "distribution (proxy)", &log);
        System {
            name: "distribution pull-through proxy",
            addr: format!("127.0.0.1:{port}"),
            groups: vec![running.pid],
            log: None,
            _running: vec![running],
        }
    }

    /// Manifest GETs the fixture's registry answered so far: pulls, in Docker Hub's accounting.
    fn manifest_gets() -> usize {
        let log = fixture().dir.join("registry-docker-hub.log");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("\"GET /v2/") && l.contains("/manifests/") && l.contains("\" 200 ")
            })
            .count()
    }

    /// Requests that reached the fixture's registry and token service so far.
    fn upstream_requests() -> usize {
        let f = fixture();
        let registry_log = f.dir.join("registry-docker-hub.log");
        let registry = std::fs::read_to_string(registry_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET ") || l.contains("\"HEAD "))
            .count();
        let token = std::fs::read_to_string(&f.token_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with('{'))
            .count();
        registry + token
    }

    /// A copy of the index with every platform; how long it took and the size of each file pulled.
    fn skopeo_copy(addr: &str) -> (Duration, Vec<u64>) {
        let dest = run_dir().join(format!("bench-copy-{}", free_port()));
        let started = Instant::now();
        let status = Command::new(need("skopeo"))
            .args([
                "copy",
                "-q",
                "--all",
                "--src-tls-verify=false",
                "--src-no-creds",
            ])
            .arg(format!("docker://{addr}/{OCI_INDEX}"))
            .arg(format!("dir:{}", dest.display()))
            .status()
            .unwrap();
        let took = started.elapsed();
        assert!(status.success(), "skopeo copy through {addr}");
        let sizes = std::fs::read_dir(&dest)
            .unwrap()
            .filter_map(|entry| Some(entry.ok()?.metadata().ok()?.len()))
            .collect();
        let _ = std::fs::remove_dir_all(dest);
        (took, sizes)
    }

    /// The token for `repository` at `addr`, from the realm its `/v2/` challenge names.
    async fn token(
        client: &reqwest::Client,
        addr: &str,
        repository: &str,
        creds: Option<(&str, &str)>,
    ) -> Option<String> {
        let ping = client.get(format!("http://{addr}/v2/")).send().await.ok()?;
        let challenge = ping
            .headers()
            .get("www-authenticate")?
            .to_str()
            .ok()?
            .to_string();
        let c = registry_mirror::auth::parse_challenge(&challenge)?;
        let mut request = client
            .get(&c.realm)
            .query(&[("scope", format!("repository:{repository}:pull"))]);
        if let Some(service) = &c.service {
            request = request.query(&[("service", service)]);
        }
        if let Some((u, p)) = creds {
            request = request.basic_auth(u, Some(p));
        }
        let body: serde_json::Value =
            serde_json::from_slice(&request.send().await.ok()?.bytes().await.ok()?).ok()?;
        body["token"].as_str().map(str::to_string)
    }

    /// GET with the token, following redirects; credentials go to the first host only.
    async fn get(
        client: &reqwest::Client,
        url: String,
        token: Option<&str>,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, String> {
        let mut url = url;
        let first_host = url.split('/').nth(2).unwrap_or("").to_string();
        for _ in 0..5 {
            let mut request = client.get(&url);
            if let (Some(token), true) = (token, url.split('/').nth(2) == Some(first_host.as_str()))
            {
                request = request.bearer_auth(token);
            }
            if let Some(accept) = accept {
                request = request.header("accept", accept);
            }
            let response = request.send().await.map_err(|e| e.to_string())?;
            if response.status().is_redirection() {
                url = response.headers()["location"].to_str().unwrap().to_string();
                if url.starts_with('/') {
                    url = format!("http://{first_host}{url}");
                }
                continue;
            }
            if !response.status().is_success() {
                return Err(format!("{url}: {}", response.status()));
            }
            return Ok(response);
        }
        Err("too many redirects".into())
    }

    async fn pull_blob(
        client: &reqwest::Client,
        addr: &str,
        repository: &str,
        digest: &str,
        size: usize,
    ) -> f64 {
        let token = token(client, addr, repository, None).await;
        let started = Instant::now();
        let mut response = get(
            client,
            format!("http://{addr}/v2/{repository}/blobs/{digest}"),
            token.as_deref(),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{addr}: {e}"));
        let mut total = 0;
        while let Some(chunk) = response.chunk().await.unwrap() {
            total += chunk.len();
        }
        assert_eq!(total, size, "{addr}: a short blob");
        size as f64 / 1e6 / started.elapsed().as_secs_f64()
    }

    async fn manifest_latency(client: &reqwest::Client, addr: &str) -> Vec<Duration> {
        let accept = "application/vnd.docker.distribution.manifest.v2+json";
        let token = token(client, addr, "library/alpine", None).await;
        let mut out = Vec::new();
        for _ in 0..MANIFESTS {
            let started = Instant::now();
            let response = get(
                client,
                format!("http://{addr}/v2/library/alpine/manifests/v2s2"),
                token.as_deref(),
                Some(accept),
            )
            .await
            .unwrap();
            response.bytes().await.unwrap();
            out.push(started.elapsed());
        }
        out
    }

    /// 64 concurrent pulls of the small image's layer: throughput and errors.
    async fn concurrent(client: &reqwest::Client, addr: &str) -> (f64, usize) {
        let image = fixture().images.get(crate::support::images::V2S2);
        let layer = image.blob_digests.last().unwrap().clone();
        let token = token(client, addr, "library/alpine", None).await;
        let started = Instant::now();
        let tasks: Vec<_> = (0..CONCURRENT)
            .map(|_| {
                let (client, addr, token, layer) = (
                    client.clone(),
                    addr.to_string(),
                    token.clone(),
                    layer.clone(),
                );
                tokio::spawn(async move {
                    let response = get(
                        &client,
                        format!("http://{addr}/v2/library/alpine/blobs/{layer}"),
                        token.as_deref(),
                        None,
                    )
                    .await?;
                    let bytes = response.bytes().await.map_err(|e| e.to_string())?;
                    if format!("sha256:{:x}", Sha256::digest(&bytes)) != layer {
                        return Err("digest".to_string());
                    }
                    Ok::<usize, String>(bytes.len())
                })
            })
            .collect();
        let (mut bytes, mut errors) = (0, 0);
        for task in tasks {
            match task.await {
                Ok(Ok(n)) => bytes += n,
                _ => errors += 1,
            }
        }
        (bytes as f64 / 1e6 / started.elapsed().as_secs_f64(), errors)
    }
}

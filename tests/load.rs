//! Load, bounded in count and time: 64 concurrent pulls of a mixed set of images, 10 rounds,
//! through the local server and through the Fastly binary under Viceroy. Every pull checks every
//! digest; no pull may fail; the mirror's memory stays bounded.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use support::fixture::fixture;
use support::images::*;
use support::measure::peak_rss_mib;
use support::mirrors::{LocalServer, Mirrors, Viceroy};

const CONCURRENT: usize = 64;
const ROUNDS: usize = 10;
/// The longest a round may take before the test fails (a bound, not a speed check).
const ROUND_LIMIT: Duration = Duration::from_secs(120);

static LOCAL: Mirrors = Mirrors::new(&LocalServer);
static FASTLY: Mirrors = Mirrors::new(&Viceroy);

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

fn mixed_set() -> Vec<(String, String)> {
    // (the name a client pulls, the fixture's key for its expected digests)
    let mut set: Vec<(String, String)> = [OCI, V2S2, NAMESPACED, OCI_INDEX, DOCKER_LIST]
        .iter()
        .map(|r| (r.trim_start_matches("library/").to_string(), r.to_string()))
        .collect();
    set.push((format!("ghcr.io/{GHCR_APP}"), format!("ghcr.io/{GHCR_APP}")));
    set
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

async fn get(
    client: &reqwest::Client,
    url: String,
    token: &str,
    accept: Option<&str>,
) -> Result<Vec<u8>, String> {
    let mut request = client.get(&url).bearer_auth(token);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{url}: {}", response.status()));
    }
    response
        .bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|e| format!("{url}: {e}"))
}

/// A whole pull, as a client makes it: token, manifest (and the amd64 one of a list), blobs;
/// every digest checked.
async fn pull(client: &reqwest::Client, mirror: &str, name: &str, key: &str) -> Result<(), String> {
    let (repository, tag) = name.rsplit_once(':').unwrap();
    let answer = client
        .get(format!(
            "http://{mirror}/token?scope=repository:{repository}:pull"
        ))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    let token: serde_json::Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
    let token = token["token"].as_str().ok_or("no token")?.to_string();
    let expected = fixture().images.get(key);
    let base = format!("http://{mirror}/v2/{repository}");
    let mut manifest = get(
        client,
        format!("{base}/manifests/{tag}"),
        &token,
        Some(ACCEPT),
    )
    .await?;
    if sha256(&manifest) != expected.manifest_digest {
        return Err(format!("{name}: manifest digest differs"));
    }
    let mut json: serde_json::Value =
        serde_json::from_slice(&manifest).map_err(|e| e.to_string())?;
    if let Some(list) = json["manifests"].as_array() {
        let amd64 = list
            .iter()
            .find(|m| m["platform"]["architecture"] == "amd64")
            .ok_or("no amd64")?["digest"]
            .as_str()
            .unwrap()
            .to_string();
        manifest = get(
            client,
            format!("{base}/manifests/{amd64}"),
            &token,
            Some(ACCEPT),
        )
        .await?;
        if sha256(&manifest) != amd64 {
            return Err(format!("{name}: child manifest digest differs"));
        }
        json = serde_json::from_slice(&manifest).map_err(|e| e.to_string())?;
    }
    let mut blobs = vec![json["config"]["digest"].as_str().unwrap().to_string()];
    blobs.extend(
        json["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string()),
    );
    if blobs[0] != expected.config_digest {
        return Err(format!("{name}: config digest differs"));
    }
    for digest in blobs {
        let blob = get(client, format!("{base}/blobs/{digest}"), &token, None).await?;
        if sha256(&blob) != digest {
            return Err(format!("{name}: blob {digest} differs"));
        }
    }
    Ok(())
}

/// Runs the rounds; returns the mirror's peak RSS after the second round and after the last.
fn load(mirrors: &Mirrors) -> (f64, f64) {
    let mirror = mirrors.open();
    let pid = mirror._processes[0].pid;
    let set = mixed_set();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENT)
        .build()
        .unwrap();
    let mut after_second = 0.0;
    for round in 0..ROUNDS {
        let started = Instant::now();
        let errors: Vec<String> = runtime.block_on(async {
            let tasks: Vec<_> = (0..CONCURRENT)
                .map(|i| {
                    let (client, addr) = (client.clone(), mirror.addr.clone());
                    let (name, key) = set[(i + round) % set.len()].clone();
                    tokio::spawn(async move { pull(&client, &addr, &name, &key).await })
                })
                .collect();
            let mut errors = Vec::new();
            for task in tasks {
                match tokio::time::timeout(ROUND_LIMIT, task).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(e))) => errors.push(e),
                    Ok(Err(e)) => errors.push(format!("task: {e}")),
                    Err(_) => errors.push("a pull did not finish in time".to_string()),
                }
            }
            errors
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

//! A client of the mirror in the test process, for many pulls at once: the requests a pull makes
//! (token, manifest, the amd64 manifest of a list, blobs), each body streamed and hashed, never
//! held whole; optionally read at a set pace, as a client on a slow network reads. Every digest
//! and length is checked: a pull is whole or it is an error.

use super::fixture::fixture;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// What a client accepts for a manifest by tag (single images and lists, Docker and OCI).
pub const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, \
                      application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// A runtime for the clients: two threads, as many tasks as there are clients.
pub fn runtime() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A client with room for `clients` connections to the mirror.
pub fn http_client(clients: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The token the mirror hands an anonymous client of `repository`.
pub async fn token(
    client: &reqwest::Client,
    mirror: &str,
    repository: &str,
) -> Result<String, String> {
    let url = format!("http://{mirror}/token?scope=repository:{repository}:pull");
    let answer = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let token: serde_json::Value = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
    Ok(token["token"].as_str().ok_or("no token")?.to_string())
}

/// A whole body of `url`: its bytes when `keep`, and their digest; read at `rate` bytes a second
/// when given. Fails unless the answer is a `200` of exactly its `Content-Length`.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    accept: Option<&str>,
    rate: Option<u64>,
    keep: bool,
) -> Result<(String, Vec<u8>), String> {
    let mut request = client.get(url).bearer_auth(token);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
    if response.status() != 200 {
        return Err(format!("{url}: {}", response.status()));
    }
    let length = response.content_length();
    let mut body = http::Response::from(response).into_body();
    let (mut hash, mut kept, mut read) = (Sha256::new(), Vec::new(), 0u64);
    let started = Instant::now();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("{url}: cut after {read} bytes: {e}"))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        hash.update(&chunk);
        read += chunk.len() as u64;
        if keep {
            kept.extend_from_slice(&chunk);
        }
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(read as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    if length != Some(read) {
        return Err(format!("{url}: {read} bytes of {length:?}"));
    }
    Ok((format!("sha256:{:x}", hash.finalize()), kept))
}

/// A whole pull of `name` (`repository:tag`, as a client names it) through the mirror at
/// `mirror`, checked against the fixture's image `key`; blobs read at `rate` when given.
pub async fn pull(
    client: &reqwest::Client,
    mirror: &str,
    name: &str,
    key: &str,
    rate: Option<u64>,
) -> Result<(), String> {
    let (repository, tag) = name.rsplit_once(':').unwrap();
    let token = token(client, mirror, repository).await?;
    let expected = fixture().images.get(key);
    let base = format!("http://{mirror}/v2/{repository}");
    let manifest_of = |reference: String| {
        let (client, token, url) = (client, &token, format!("{base}/manifests/{reference}"));
        async move { fetch(client, &url, token, Some(ACCEPT), None, true).await }
    };
    let (digest, mut manifest) = manifest_of(tag.to_string()).await?;
    if digest != expected.manifest_digest {
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
        let (digest, child) = manifest_of(amd64.clone()).await?;
        if digest != amd64 {
            return Err(format!("{name}: child manifest digest differs"));
        }
        manifest = child;
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
        let url = format!("{base}/blobs/{digest}");
        let (got, _) = fetch(client, &url, &token, None, rate, false).await?;
        if got != digest {
            return Err(format!("{name}: blob {digest} differs"));
        }
    }
    Ok(())
}

/// `clients` pulls at once, `pick(i)` giving client `i`'s (name, fixture key, rate); each error,
/// and the pulls that did not end within `limit`.
pub fn pull_at_once(
    runtime: &tokio::runtime::Runtime,
    mirrors: &[String],
    clients: usize,
    limit: Duration,
    pick: impl Fn(usize) -> (String, String, Option<u64>),
) -> Vec<String> {
    let client = http_client(clients);
    runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + limit;
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let client = client.clone();
                let mirror = mirrors[i % mirrors.len()].clone();
                let (name, key, rate) = pick(i);
                tokio::spawn(async move { pull(&client, &mirror, &name, &key, rate).await })
            })
            .collect();
        let mut errors = Vec::new();
        for task in tasks {
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => errors.push(e),
                Ok(Err(e)) => errors.push(format!("task: {e}")),
                Err(_) => errors.push("a pull did not finish in time".to_string()),
            }
        }
        errors
    })
}

/// `sha256:` of `bytes`, as a digest is written.
pub fn digest_of(bytes: &[u8]) -> String {
    sha256(bytes)
}

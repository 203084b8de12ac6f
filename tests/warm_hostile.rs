//! `warm` against a hostile upstream: an index that lists another index thousands of times (each
//! listing an image thousands of times), and a chain of indexes deeper than any real image. Each
//! manifest is fetched once, the chain fails alone with its reason, and the upstream sees a few
//! requests, not thousands.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::fixture::run_dir;
use support::http_front::{bind, serve, Body};
use support::mirrors::with;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const IMAGE: &str = "application/vnd.oci.image.manifest.v1+json";

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Content by digest (manifests with their media type, blobs without), and tags by name.
#[derive(Default)]
struct Registry {
    content: HashMap<String, (Option<&'static str>, Vec<u8>)>,
    tags: HashMap<String, String>,
}

impl Registry {
    fn add(&mut self, media_type: Option<&'static str>, bytes: Vec<u8>) -> String {
        let d = digest(&bytes);
        self.content.insert(d.clone(), (media_type, bytes));
        d
    }

    /// An index listing `child` (of `child_type`) `times` times.
    fn index(&mut self, child: &str, child_type: &str, times: usize) -> String {
        let size = self.content[child].1.len();
        let entry = serde_json::json!({
            "mediaType": child_type, "digest": child, "size": size,
            "platform": {"os": "linux", "architecture": "amd64"}
        });
        let index = serde_json::json!({
            "schemaVersion": 2, "mediaType": INDEX, "manifests": vec![entry; times]
        });
        self.add(Some(INDEX), serde_json::to_vec(&index).unwrap())
    }

    /// A one-layer image.
    fn image(&mut self) -> String {
        let config = self.add(None, br#"{"architecture":"amd64","os":"linux"}"#.to_vec());
        let layer = self.add(None, b"not really a tar".to_vec());
        let blob = |d: &str, t: &str, n: usize| serde_json::json!({"mediaType": t, "digest": d, "size": n});
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": IMAGE,
            "config": blob(&config, "application/vnd.oci.image.config.v1+json", 37),
            "layers": [blob(&layer, "application/vnd.oci.image.layer.v1.tar", 16)]
        });
        self.add(Some(IMAGE), serde_json::to_vec(&manifest).unwrap())
    }
}

/// The hostile registry, answering without auth; the count of requests it saw.
fn start(registry: Registry) -> (String, Arc<AtomicUsize>) {
    let (listener, addr) = bind();
    let seen = Arc::new(AtomicUsize::new(0));
    let (registry, counter) = (Arc::new(registry), seen.clone());
    serve(
        listener,
        move |request: http::Request<hyper::body::Incoming>| {
            let (registry, counter) = (registry.clone(), counter.clone());
            async move {
                use http_body_util::BodyExt;
                counter.fetch_add(1, Ordering::SeqCst);
                let path = request.uri().path().to_string();
                let found = path.rsplit_once('/').and_then(|(_, reference)| {
                    let d = registry
                        .tags
                        .get(&path)
                        .cloned()
                        .unwrap_or(reference.to_string());
                    registry.content.get(&d).map(|c| (d, c.clone()))
                });
                let Some((d, (media_type, bytes))) = found.filter(|_| path != "/v2/") else {
                    let status = if path == "/v2/" { 200 } else { 404 };
                    return Ok::<_, std::io::Error>(support::http_front::empty(status, &[]));
                };
                let length = bytes.len().to_string();
                let body: Body = match request.method() == http::Method::HEAD {
                    true => http_body_util::Empty::new().map_err(|e| match e {}).boxed(),
                    false => http_body_util::Full::new(Bytes::from(bytes))
                        .map_err(|e| match e {})
                        .boxed(),
                };
                let mut response = http::Response::new(body);
                let headers = response.headers_mut();
                headers.insert("content-length", length.parse().unwrap());
                headers.insert("docker-content-digest", d.parse().unwrap());
                let content_type = media_type.unwrap_or("application/octet-stream");
                headers.insert("content-type", content_type.parse().unwrap());
                Ok(response)
            }
        },
    );
    (addr, seen)
}

#[test]
fn warm_follows_each_manifest_once_and_no_chain_of_indexes_without_end() {
    let mut registry = Registry::default();
    // An index listing an index 3,000 times, which lists an image 3,000 times.
    let image = registry.image();
    let inner = registry.index(&image, IMAGE, 3000);
    let outer = registry.index(&inner, INDEX, 3000);
    registry
        .tags
        .insert("/v2/hostile/fanout/manifests/1".into(), outer);
    // A chain of twenty indexes.
    let mut link = registry.image();
    let mut link_type = IMAGE;
    for _ in 0..20 {
        link = registry.index(&link, link_type, 1);
        link_type = INDEX;
    }
    registry
        .tags
        .insert("/v2/hostile/chain/manifests/1".into(), link);
    let (addr, seen) = start(registry);

    let store = run_dir().join("warm-hostile");
    let cache = format!("file://{}", store.display());
    let upstream = format!("http://{addr}");
    let settings = with(&[("CACHE", &cache), ("UPSTREAM_DOCKER_IO", &upstream)]);
    // A warm that follows without bound never ends: `timeout` ends it, and the test fails.
    let out = Command::new("timeout")
        .args(["120", env!("CARGO_BIN_EXE_registry-mirror")])
        .args(["warm", "hostile/fanout:1", "hostile/chain:1"])
        .envs(settings.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("hostile/chain:1: indexes nested more than"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("hostile/fanout:1:"),
        "the fan-out failed: {stdout}"
    );
    let requests = seen.load(Ordering::SeqCst);
    assert!(requests < 100, "the upstream saw {requests} requests");
}

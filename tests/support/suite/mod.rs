//! The client suite: every case a user cares about, written once and run against each runtime
//! (`client_suite!` in a runtime's test file makes one `#[test]` per case).
//!
//! Each case pulls with a real client through the mirror and checks what it got against a direct
//! pull from the fixture registry: same manifest digests, same config digests, same bytes.

use super::clients::*;
use super::fixture::{fixture, ALICE, BOB, CAROL};
use super::images::*;
use super::mirrors::{Mirror, Mirrors};
use std::process::Command;

mod edges;
mod hostile;
mod pulls;
mod registries;
mod stores;
mod whitelist;

// Each runtime's test binary runs the cases it needs; the others are unused there.
#[allow(unused_imports)]
pub use edges::*;
#[allow(unused_imports)]
pub use hostile::*;
#[allow(unused_imports)]
pub use pulls::*;
#[allow(unused_imports)]
pub use registries::*;
#[allow(unused_imports)]
pub use stores::*;
#[allow(unused_imports)]
pub use whitelist::*;

fn assert_ctr_fetched(containerd: &Containerd, ns: &str, image: &Image) {
    let digests = containerd.content_digests(ns);
    for digest in [&image.manifest_digest, &image.config_digest] {
        assert!(
            digests.contains(digest),
            "{ns}: {digest} missing from {digests:?}"
        );
        assert_eq!(&containerd.content_sha256(ns, digest), digest);
    }
}

/// The ghcr.io stand-in's image, by its full name.
const GHCR_IMAGE: &str = "ghcr.io/owner/app:1.0";

fn ghcr_direct() -> std::collections::BTreeMap<String, String> {
    let dir = skopeo_copy(
        &format!("{}/{GHCR_APP}", fixture().ghcr),
        Some(super::fixture::PUSHER),
        &[],
    )
    .expect("a direct pull from the ghcr.io stand-in");
    let digests = dir_digests(&dir);
    std::fs::remove_dir_all(dir).ok();
    digests
}

fn served_upstream(mirror: &Mirror, upstream: &str) -> usize {
    mirror
        .requests()
        .iter()
        .filter(|r| r["upstream"] == upstream && r["route"] == "manifest" && r["status"] == 200)
        .count()
}

/// `curl` against the mirror as another host name, resolved to the mirror's address.
fn curl_as(mirror: &Mirror, host: &str, path: &str, args: &[&str]) -> (u16, Vec<u8>) {
    let port = mirror.addr.rsplit(':').next().unwrap();
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "30",
            "-w",
            "\n%{http_code}",
            "--resolve",
        ])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(args)
        .arg(format!("http://{host}:{port}{path}"))
        .output()
        .unwrap();
    let mut body = out.stdout;
    let split = body.iter().rposition(|&b| b == b'\n').unwrap();
    let status = String::from_utf8_lossy(&body[split + 1..])
        .trim()
        .parse()
        .unwrap_or(0);
    body.truncate(split);
    (status, body)
}

/// Sends raw bytes on a fresh connection; returns the status and the body.
fn raw(mirror: &Mirror, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&mirror.addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `library/alpine:oci` → `alpine:oci`: the short name a user types for an official image.
fn short(reference: &str) -> &str {
    reference.strip_prefix("library/").unwrap_or(reference)
}

/// `alpine:oci` → `library/alpine:oci`: the name the upstream registry knows.
fn full(reference: &str) -> String {
    if reference.contains('/') {
        reference.to_string()
    } else {
        format!("library/{reference}")
    }
}

fn via(mirror: &Mirror, reference: &str) -> String {
    format!("{}/{reference}", mirror.addr)
}

/// The token the mirror's `/token` answers (asserting a 200 without a refresh token).
pub fn mirror_token(mirror: &Mirror, path: &str, args: &[&str]) -> String {
    let (status, out) = curl(mirror, path, args);
    assert_eq!(status, 200, "{out}");
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    assert!(!body.contains("refresh_token"), "{body}");
    let answer: serde_json::Value = serde_json::from_str(body).unwrap();
    answer["token"].as_str().unwrap().to_string()
}

pub fn assert_same_as_direct(
    mirror: &Mirror,
    reference: &str,
    extra: &[&str],
    creds: Option<Credentials>,
) {
    let dir = skopeo_copy(&via(mirror, reference), creds, extra)
        .unwrap_or_else(|e| panic!("skopeo through the mirror, {reference}: {e}"));
    let expected = direct_copy(&full(reference), extra);
    assert_eq!(
        dir_digests(&dir),
        expected,
        "{reference} through the mirror differs from a direct pull"
    );
    std::fs::remove_dir_all(dir).ok();
}

pub fn assert_docker_pulled(dockerd: &Dockerd, local_name: &str, image: &Image) {
    assert_eq!(
        dockerd.image_id(local_name),
        image.config_digest,
        "image ID of {local_name}"
    );
    let digests = dockerd.repo_digests(local_name);
    assert!(
        digests.contains(&image.manifest_digest),
        "{local_name}: {digests} lacks {}",
        image.manifest_digest
    );
}

/// `curl` against the mirror: (status, headers and body).
pub fn curl(mirror: &Mirror, path: &str, args: &[&str]) -> (u16, String) {
    let mut command = Command::new("curl");
    command
        .args(["-s", "-i", "-o", "-", "--max-time", "30"])
        .args(args)
        .arg(format!("http://{}{path}", mirror.addr));
    let out = run_ok(command);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

/// A blob through the mirror, fetched by curl, which checks nothing: whether curl saw the response
/// end whole, and `"<status> <bytes received>"`.
pub fn curl_blob(
    mirror: &Mirror,
    name: &str,
    digest: &str,
    token: &str,
    max_secs: u32,
) -> (bool, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
        ])
        .args(["--max-time", &max_secs.to_string(), "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://{}/v2/{name}/blobs/{digest}", mirror.addr))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

/// The first fenced block in `fence` (`toml`, `json`) under the heading that starts with
/// `section` in the docs page `page`: the tests configure clients with what the docs give users.
pub fn doc_block(page: &str, section: &str, fence: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(page);
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find(section)
        .unwrap_or_else(|| panic!("{page} has no {section}"));
    let block = text[start..]
        .split(&format!("```{fence}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("{page}, {section}: no {fence} block"));
    block[..block.find("```").unwrap()].to_string()
}

//! What the benchmarks and the load test measure with: peak memory of a process (group), latency
//! percentiles, and a large blob pushed to the fixture registry.

use super::fixture::{fixture, PUSHER, SERVICE};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// `VmHWM` of one process, in MiB.
pub fn peak_rss_mib(pid: i32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// A process's resident memory now, in MiB.
pub fn rss_mib(pid: i32) -> f64 {
    status_mib(pid, "VmRSS:")
}

fn status_mib(pid: i32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// The largest `VmHWM` among the processes of a process group (nginx's worker, say), in MiB.
pub fn group_peak_rss_mib(group: i32) -> f64 {
    let mut peak: f64 = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let pgrp: i32 = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(2))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if pgrp == group {
            peak = peak.max(peak_rss_mib(pid));
        }
    }
    peak
}

/// The `p`th percentile of `values`, in milliseconds.
pub fn percentile_ms(values: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    ms[((p / 100.0) * (ms.len() - 1) as f64).round() as usize]
}

/// Uploads `size` bytes of a fixed pseudo-random pattern as one blob of `repository` on the
/// fixture's registry (as the pusher); returns its digest.
pub async fn push_blob(
    client: &reqwest::Client,
    registry: &str,
    repository: &str,
    size: usize,
) -> String {
    let mut bytes = vec![0u8; size];
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ size as u64;
    for chunk in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let digest = format!("sha256:{:x}", Sha256::digest(&bytes));
    let url = format!(
        "http://127.0.0.1:{}/token?service={SERVICE}&scope=repository:{repository}:pull,push",
        fixture().token_port
    );
    let answer = client
        .get(url)
        .basic_auth(PUSHER.0, Some(PUSHER.1))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    let start = client
        .post(format!("http://{registry}/v2/{repository}/blobs/uploads/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 202, "start upload");
    let location = start.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with('/') {
        format!("http://{registry}{location}")
    } else {
        location
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let done = client
        .put(format!("{location}{separator}digest={digest}"))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 201, "finish upload");
    digest
}

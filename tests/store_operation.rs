//! The local server's store as operators run it: two servers on one volume, a bucket that stalls
//! or refuses, a slow first client, a compressing proxy before the registry, a layer larger than
//! the store. A cache must never make a pull slower or wronger than the upstream alone.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::faults::{Fault, FaultFront};
use support::fixture::{fixture, run_dir};
use support::images::{BIG, V2S2};
use support::mirrors::{with, LocalServer, Mirror, Runtime};
use support::process::{free_port, spawn, wait_for_port};
use support::suite::{assert_same_as_direct, mirror_token};

/// One test at a time: some count the fixture's storage requests, which the others would move.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn blobs_of(reference: &str) -> Vec<String> {
    fixture().images.get(reference).blob_digests.clone()
}

/// Two containers on one volume are both PID 1, in PID namespaces of their own: the second
/// server refuses the directory (it would share temporary names and delete the first's), and
/// the first goes on serving whole, verified pulls.
#[test]
fn a_second_server_on_one_store_directory_refuses_it() {
    let _serial = serial();
    let store = run_dir().join("store-two-servers");
    let cache = format!("file://{}", store.display());
    let settings = with(&[("CACHE", &cache)]);
    let as_pid_one = |label: &str| {
        let port = free_port();
        let log = run_dir().join(format!("mirror-{label}.log"));
        let mut command = Command::new("unshare");
        command
            .args(["--pid", "--fork", "--kill-child"])
            .arg(env!("CARGO_BIN_EXE_registry-mirror"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("LOG_FORMAT", "json");
        for (k, v) in &settings {
            command.env(k, v);
        }
        (port, log, command)
    };
    let (port, log, command) = as_pid_one("pid-one-first");
    let first = spawn("mirror pid-one-first", command, &log);
    wait_for_port(port, "the first mirror", &log);
    let first = Mirror {
        addr: format!("127.0.0.1:{port}"),
        log,
        _processes: vec![first],
    };
    // A temporary file of the first server's, as it has one while it relays.
    let theirs = store.join("tmp").join("in-progress");
    std::fs::write(&theirs, b"a layer being written").unwrap();

    let (_, log, mut command) = as_pid_one("pid-one-second");
    let out = std::fs::File::create(&log).unwrap();
    let mut second = command
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the second server started: {said}"
    );
    assert!(said.contains("another registry-mirror"), "{said}");
    assert!(
        theirs.exists(),
        "the second server deleted the first's files"
    );
    std::fs::remove_file(&theirs).unwrap();
    assert_same_as_direct(&first, V2S2, &[], None);
    assert_same_as_direct(&first, V2S2, &[], None);
}

/// A bucket endpoint that accepts connections and never answers, and one that refuses them: the
/// store counts as a miss within a second or so, and the pull goes upstream.
#[test]
fn a_stalled_or_unreachable_bucket_costs_a_pull_seconds_at_most() {
    let _serial = serial();
    // Accepts, holds every connection open, says nothing.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let refusing = format!("127.0.0.1:{}", free_port());
    for (label, endpoint) in [
        ("bucket-silent", silent_addr.to_string()),
        ("bucket-refusing", refusing),
    ] {
        let endpoint = format!("http://{endpoint}");
        let mirror = LocalServer.start(
            label,
            &with(&[
                ("CACHE", "s3://stalled-store/m"),
                ("AWS_ENDPOINT_URL", &endpoint),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_REGION", "us-east-1"),
            ]),
        );
        // A small image, and one whose 64 MiB layer goes up in parts (an upload that takes no
        // bytes is dropped after a few seconds; the client's relay goes on).
        for reference in [V2S2, BIG] {
            let started = Instant::now();
            assert_same_as_direct(&mirror, reference, &[], None);
            let took = started.elapsed();
            // Several lookups a pull (tag record, manifest, each blob), each bounded by a
            // second; an unbounded one takes 30 s to 3 minutes.
            assert!(
                took < Duration::from_secs(25),
                "{label}: the pull of {reference} took {took:?}"
            );
        }
    }
}

/// A first client reading a 64 MiB layer at 200 KB/s holds no one else: a second client of the
/// same layer has its first byte within a few seconds, and the whole layer, right.
#[test]
fn a_slow_first_client_holds_no_other_client_of_the_blob() {
    let _serial = serial();
    let store = run_dir().join("store-slow-client");
    let cache = format!("file://{}", store.display());
    let mirror = LocalServer.start("store-slow-client", &with(&[("CACHE", &cache)]));
    let layer = blobs_of(BIG).last().unwrap().clone();
    let name = BIG.split(':').next().unwrap();
    let token = mirror_token(
        &mirror,
        &format!("/token?scope=repository:{name}:pull"),
        &[],
    );
    let url = format!("http://{}/v2/{name}/blobs/{layer}", mirror.addr);
    let auth = format!("Authorization: Bearer {token}");
    let mut slow = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--limit-rate",
            "200k",
            "-H",
            &auth,
            &url,
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "60",
            "-H",
            &auth,
            "-w",
            "\n%{time_starttransfer}",
        ])
        .arg(&url)
        .output()
        .unwrap();
    let _ = slow.kill();
    let _ = slow.wait();
    assert!(out.status.success(), "the second client failed");
    let split = out.stdout.iter().rposition(|&b| b == b'\n').unwrap();
    let (body, first_byte) = out.stdout.split_at(split);
    let first_byte: f64 = String::from_utf8_lossy(&first_byte[1..]).parse().unwrap();
    assert!(
        first_byte < 8.0,
        "the second client waited {first_byte} s for its first byte"
    );
    let digest = {
        use sha2::Digest;
        format!("sha256:{:x}", sha2::Sha256::digest(body))
    };
    assert_eq!(digest, layer, "the second client got other bytes");
}

/// A proxy before the registry that gzips manifests for clients that accept it (Go's clients
/// all do): pulls through the store work, and what it stores is what the digests name.
#[test]
fn a_compressing_proxy_before_the_registry_breaks_no_pull() {
    let _serial = serial();
    let f = fixture();
    let front = FaultFront::start(&f.registry, f.token_port, f.storage_port);
    front.set(Fault::Gzip);
    let store = run_dir().join("store-gzip");
    let cache = format!("file://{}", store.display());
    let upstream = format!("http://{}", front.addr);
    let mirror = LocalServer.start(
        "store-gzip",
        &with(&[("CACHE", &cache), ("UPSTREAM_DOCKER_IO", &upstream)]),
    );
    assert_same_as_direct(&mirror, V2S2, &[], None);
    // Again, from the store.
    assert_same_as_direct(&mirror, V2S2, &[], None);
    let manifests = support::process::files(&store.join("objects/v1/docker.io/manifests"));
    assert!(!manifests.is_empty(), "no manifest was stored");
}

/// A layer larger than a quarter of `CACHE_MAX_BYTES` is relayed, not stored: it does not push
/// out what the store holds.
#[test]
fn one_large_layer_does_not_empty_the_store() {
    let _serial = serial();
    let store = run_dir().join("store-large-layer");
    let cache = format!("file://{}", store.display());
    let max = (8 * 1024 * 1024).to_string();
    let mirror = LocalServer.start(
        "store-large-layer",
        &with(&[("CACHE", &cache), ("CACHE_MAX_BYTES", &max)]),
    );
    assert_same_as_direct(&mirror, V2S2, &[], None);
    let objects = store.join("objects");
    let before = support::process::files(&objects);
    assert!(!before.is_empty());
    assert_same_as_direct(&mirror, BIG, &[], None);
    let after = support::process::files(&objects);
    for kept in &before {
        assert!(after.contains(kept), "{} was evicted", kept.display());
    }
    let big = blobs_of(BIG)
        .last()
        .unwrap()
        .split_once(':')
        .unwrap()
        .1
        .to_string();
    // Under blobs/: a record that the layer is public is kept under its digest too.
    assert!(
        !objects
            .join("v1/docker.io/blobs/sha256")
            .join(&big)
            .exists(),
        "the large layer was stored"
    );
}

/// Unmounts a file system when dropped.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A store on a disk that fills up mid-layer (a 16 MiB tmpfs, a 64 MiB layer): the write fails,
/// nothing half-written is kept, and the pull goes on whole, as without a store.
#[test]
fn a_full_disk_costs_no_pull() {
    let _serial = serial();
    let disk = run_dir().join("store-full-disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "cannot mount a tmpfs (the tests run as root)"
    );
    let _mounted = Mounted(disk.clone());
    let cache = format!("file://{}", disk.display());
    let mirror = LocalServer.start("store-full-disk", &with(&[("CACHE", &cache)]));
    for _ in 0..2 {
        for reference in [V2S2, BIG] {
            assert_same_as_direct(&mirror, reference, &[], None);
        }
    }
    let big = blobs_of(BIG)
        .last()
        .unwrap()
        .split_once(':')
        .unwrap()
        .1
        .to_string();
    let kept = support::process::files(&disk.join("objects"));
    assert!(
        !disk
            .join("objects/v1/docker.io/blobs/sha256")
            .join(&big)
            .exists(),
        "a layer larger than the disk was kept"
    );
    assert!(
        support::process::files(&disk.join("tmp")).is_empty(),
        "a failed write left its temporary file"
    );
    assert!(!kept.is_empty(), "the small image was not kept");
}

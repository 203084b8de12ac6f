//! The owner's subcommands against the fixture, as an operator runs them: `warm` before a
//! rollout, `purge` of a moved tag, `verify` after a disk scare, `usage` (and the `/usage` page).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::process::Command;
use support::faults::{Fault, FaultFront};
use support::fixture::{fixture, run_dir};
use support::images::{OCI_INDEX, V2S2};
use support::mirrors::{with, LocalServer, Mirror, Runtime};
use support::suite::assert_same_as_direct;

/// One test at a time: each counts the fixture's requests, which the others would move.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The settings of a store in `dir` of its own, whose Docker Hub is `front`.
fn store_settings(dir: &std::path::Path, front: &FaultFront) -> Vec<(String, String)> {
    let cache = format!("file://{}", dir.display());
    let upstream = format!("http://{}", front.addr);
    with(&[("CACHE", &cache), ("UPSTREAM_DOCKER_IO", &upstream)])
}

/// `registry-mirror ARGS…` with `settings`: its status, standard output and standard error.
fn command(settings: &[(String, String)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_registry-mirror"))
        .args(args)
        .envs(settings.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    eprintln!("$ registry-mirror {}\n{stdout}{stderr}", args.join(" "));
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn blobs_of(reference: &str) -> Vec<String> {
    fixture().images.get(reference).blob_digests.clone()
}

/// The name a client pulls (`alpine:v2s2` for `library/alpine:v2s2`).
fn short(reference: &str) -> &str {
    reference.strip_prefix("library/").unwrap_or(reference)
}

/// `warm` fills the store before anyone pulls: the pull that follows fetches no blob upstream,
/// and pulls go on while Docker Hub is down; a second `warm` fetches nothing.
#[test]
fn warmed_images_pull_with_no_upstream_fetch_and_while_docker_hub_is_down() {
    let _serial = serial();
    let f = fixture();
    let front = FaultFront::start(&f.registry, f.token_port, f.storage_port);
    let store = run_dir().join("commands-warm");
    let settings = store_settings(&store, &front);

    let gets_before = f.storage_gets_of(&blobs_of(V2S2));
    let (status, out, _) = command(&settings, &["warm", short(V2S2), short(OCI_INDEX)]);
    assert_eq!(status, 0, "warm failed: {out}");
    assert!(out.contains("0 failed"), "{out}");
    assert!(
        f.storage_gets_of(&blobs_of(V2S2)) > gets_before,
        "warm fetched no blob"
    );

    // Warmed again: everything is there, nothing is fetched from storage.
    let storage_before = front.storage_requests.load(std::sync::atomic::Ordering::SeqCst);
    let (status, out, _) = command(&settings, &["warm", short(V2S2), short(OCI_INDEX)]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("stored 0 object(s)"), "{out}");
    assert_eq!(
        front.storage_requests.load(std::sync::atomic::Ordering::SeqCst),
        storage_before,
        "a second warm fetched blobs again"
    );

    let mirror: Mirror = LocalServer.start("commands-warm", &settings);
    let gets_before = f.storage_gets_of(&blobs_of(V2S2));
    assert_same_as_direct(&mirror, short(V2S2), &[], None);
    assert_eq!(
        f.storage_gets_of(&blobs_of(V2S2)),
        gets_before,
        "a warmed image's blobs were fetched upstream"
    );
    front.set(Fault::Down);
    for reference in [V2S2, OCI_INDEX] {
        assert_same_as_direct(&mirror, short(reference), &[], None);
    }
    front.set(Fault::None);
}

/// Bad input is refused before anything is done, with the reason and exit status 2.
#[test]
fn warm_refuses_bad_input_with_a_reason() {
    let f = fixture();
    let front = FaultFront::start(&f.registry, f.token_port, f.storage_port);
    let store = run_dir().join("commands-bad-input");
    let settings = store_settings(&store, &front);
    for (args, says) in [
        (&["warm"][..], "no image named"),
        (&["warm", "alpine:bad tag"], "not a tag"),
        (&["warm", "--platform", "amd64", "alpine"], "--platform"),
        (&["warm", "--file", "/nonexistent/list"], "/nonexistent/list"),
        (&["warm", "--user", "nopassword", "alpine"], "USER:TOKEN"),
    ] {
        let (status, _, err) = command(&settings, args);
        assert_eq!(status, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(
        !store.join("objects").join("v1").exists(),
        "bad input stored something"
    );
}

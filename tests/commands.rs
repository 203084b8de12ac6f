//! The owner's subcommands against the fixture, as an operator runs them: `warm` before a
//! rollout, `purge` of a moved tag, `verify` after a disk scare, `usage` (and the `/usage` page).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::process::Command;
use std::sync::atomic::Ordering;
use support::commands::{
    assert_no_blob_fetched, chromium, command, docs_queries_answer_over, set_up, store_settings,
    Setup,
};
use support::faults::{Fault, FaultFront};
use support::fixture::{fixture, run_dir, ALICE};
use support::images::{OCI_INDEX, V2S2};
use support::mirrors::{LocalServer, Mirror, Runtime};
use support::suite::{assert_same_as_direct, curl, mirror_token};

/// One test at a time: each counts the fixture's requests, which the others would move.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
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
    let Setup {
        front,
        store: _store,
        settings,
    } = set_up("commands-warm");

    let f = fixture();
    let gets_before = f.storage_gets_of(&blobs_of(V2S2));
    let (status, out, _) = command(&settings, &["warm", short(V2S2), short(OCI_INDEX)]);
    assert_eq!(status, 0, "warm failed: {out}");
    assert!(out.contains("0 failed"), "{out}");
    assert!(
        f.storage_gets_of(&blobs_of(V2S2)) > gets_before,
        "warm fetched no blob"
    );

    // Warmed again: everything is there, nothing is fetched from storage.
    let storage_before = front
        .storage_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let (status, out, _) = command(&settings, &["warm", short(V2S2), short(OCI_INDEX)]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("stored 0 object(s)"), "{out}");
    assert_eq!(
        front
            .storage_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        storage_before,
        "a second warm fetched blobs again"
    );

    let mirror: Mirror = LocalServer.start("commands-warm", &settings);
    assert_same_as_direct(&mirror, short(V2S2), &[], None);
    assert_no_blob_fetched(&mirror, 0);
    front.set(Fault::Down);
    for reference in [V2S2, OCI_INDEX] {
        assert_same_as_direct(&mirror, short(reference), &[], None);
    }
    front.set(Fault::None);
}

/// Bad input is refused before anything is done, with the reason and exit status 2.
#[test]
fn warm_refuses_bad_input_with_a_reason() {
    let Setup {
        front: _front,
        store,
        settings,
    } = set_up("commands-bad-input");
    for (args, says) in [
        (&["warm"][..], "no image named"),
        (&["warm", "alpine:bad tag"], "not a tag"),
        (&["warm", "--platform", "amd64", "alpine"], "--platform"),
        (
            &["warm", "--file", "/nonexistent/list"],
            "/nonexistent/list",
        ),
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

/// With `TAG_TTL_SECS`, a stored tag is answered from its record without asking Docker Hub; after
/// `purge` (the server still running) the next request for it asks Docker Hub again; `--blobs`
/// deletes the image's manifest and blobs, but not what another stored image still uses.
#[test]
fn a_purged_tag_is_asked_upstream_again() {
    let _serial = serial();
    let Setup {
        front,
        store,
        mut settings,
    } = set_up("commands-purge");
    settings.push(("TAG_TTL_SECS".into(), "3600".into()));
    let mirror = LocalServer.start("commands-purge", &settings);
    let path = "/v2/alpine/manifests/v2s2";
    let token = mirror_token(&mirror, "/token?scope=repository:alpine:pull", &[]);
    let get = || {
        let before = front.registry_requests.load(Ordering::SeqCst);
        let accept = "Accept: application/vnd.docker.distribution.manifest.v2+json";
        let auth = format!("Authorization: Bearer {token}");
        let (status, out) = curl(&mirror, path, &["-H", &auth, "-H", accept]);
        assert_eq!(status, 200, "{out}");
        front.registry_requests.load(Ordering::SeqCst) - before
    };
    assert!(get() > 0, "the first GET did not ask Docker Hub");
    // The record is written once the answer is sent.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(get(), 0, "a fresh tag record was not used");

    let (status, out, _) = command(&settings, &["purge", "alpine:v2s2"]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("tags/library/alpine/_tag/v2s2"), "{out}");
    assert!(get() > 0, "a purged tag was answered from its record");

    // --blobs: V2S2's manifest and layers go, OCI's (another image of the same repository,
    // sharing no layer the test relies on) stay whole.
    assert_same_as_direct(&mirror, short(V2S2), &[], None);
    assert_same_as_direct(&mirror, "alpine:oci", &[], None);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (status, out, _) = command(&settings, &["purge", "--blobs", "alpine:v2s2"]);
    assert_eq!(status, 0, "{out}");
    let held: Vec<String> = support::process::files(&store.join("objects"))
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let oci = fixture().images.get("library/alpine:oci");
    let v2s2 = fixture().images.get(V2S2);
    let stored = |digest: &str| {
        let hex = digest.split_once(':').unwrap().1;
        let content = |p: &&String| p.contains("/blobs/") || p.contains("/manifests/");
        held.iter().filter(content).any(|p| p.ends_with(hex))
    };
    assert!(
        !stored(&v2s2.manifest_digest),
        "the purged manifest is still stored"
    );
    for blob in &v2s2.blob_digests {
        let shared = oci.blob_digests.contains(blob);
        assert_eq!(
            stored(blob),
            shared,
            "{blob} (shared with alpine:oci: {shared})"
        );
    }
    assert!(stored(&oci.manifest_digest));
    for blob in &oci.blob_digests {
        assert!(stored(blob), "alpine:oci lost {blob}");
    }
    // An image of its own layers: every one of them goes with its tag (a name without a tag
    // forgets every tag of the repository).
    let app = fixture().images.get("library/big:latest");
    assert_same_as_direct(&mirror, "big:latest", &[], None);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let own: Vec<&String> = app
        .blob_digests
        .iter()
        .filter(|b| !oci.blob_digests.contains(b) && !v2s2.blob_digests.contains(b))
        .collect();
    assert!(!own.is_empty(), "big shares every layer with alpine");
    let (status, out, _) = command(&settings, &["purge", "--blobs", "big"]);
    assert_eq!(status, 0, "{out}");
    let held: Vec<String> = support::process::files(&store.join("objects"))
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let stored = |digest: &str| {
        let hex = digest.split_once(':').unwrap().1;
        let content = |p: &&String| p.contains("/blobs/") || p.contains("/manifests/");
        held.iter().filter(content).any(|p| p.ends_with(hex))
    };
    for blob in own {
        assert!(!stored(blob), "big's own {blob} is still stored: {out}");
    }
    assert!(!stored(&app.manifest_digest), "{out}");
    for blob in &oci.blob_digests {
        assert!(stored(blob), "alpine:oci lost {blob}");
    }

    let logged = mirror.requests().len();
    assert_same_as_direct(&mirror, "alpine:oci", &[], None);
    assert_no_blob_fetched(&mirror, logged);
    assert_same_as_direct(&mirror, short(V2S2), &[], None);
}

/// A stored blob damaged on disk (a bit flipped, a file cut short): `verify --dry-run` reports it
/// and keeps it; `verify` deletes it and exits 1; the next `verify` finds every object whole;
/// and the next pull is whole again.
#[test]
fn verify_finds_and_removes_a_corrupted_object() {
    let _serial = serial();
    let Setup {
        front: _front,
        store,
        settings,
    } = set_up("commands-verify");
    let (status, out, _) = command(&settings, &["warm", short(V2S2)]);
    assert_eq!(status, 0, "{out}");
    let (status, out, _) = command(&settings, &["verify"]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains(" 0 did not"), "{out}");

    let blobs = blobs_of(V2S2);
    let path_of = |digest: &str| {
        let hex = digest.split_once(':').unwrap().1;
        store.join("objects/v1/docker.io/blobs/sha256").join(hex)
    };
    let (flipped, cut) = (path_of(&blobs[0]), path_of(&blobs[1]));
    let mut bytes = std::fs::read(&flipped).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&flipped, bytes).unwrap();
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 1]).unwrap();

    let (status, out, _) = command(&settings, &["verify", "--dry-run"]);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains(" 2 did not"), "{out}");
    assert!(flipped.exists() && cut.exists(), "--dry-run deleted");
    let (status, out, _) = command(&settings, &["verify"]);
    assert_eq!(status, 1, "{out}");
    for digest in &blobs[..2] {
        assert!(out.contains(digest.split_once(':').unwrap().1), "{out}");
    }
    assert!(
        !flipped.exists() && !cut.exists(),
        "a damaged object is still there"
    );
    let (status, out, _) = command(&settings, &["verify"]);
    assert_eq!(status, 0, "{out}");
    let mirror = LocalServer.start("commands-verify", &settings);
    assert_same_as_direct(&mirror, short(V2S2), &[], None);
}

/// `usage` shows what the store holds by repository; the server's `/usage` page, in a real
/// browser, shows the pulls a test made, by user and repository, and keeps them over a restart.
#[test]
fn usage_shows_the_pulls_made() {
    let _serial = serial();
    let Setup {
        front,
        store: _store,
        mut settings,
    } = set_up("commands-usage");
    let listen = format!("127.0.0.1:{}", support::process::free_port());
    settings.push(("METRICS_LISTEN".into(), listen.clone()));
    let mirror = LocalServer.start("commands-usage", &settings);
    assert_same_as_direct(&mirror, short(V2S2), &[], None);
    docs_queries_answer_over(&mirror.log_text());

    let (status, out, _) = command(&settings, &["usage"]);
    assert_eq!(status, 0, "{out}");
    let alpine = out
        .lines()
        .find(|l| l.contains("docker.io/library/alpine"))
        .unwrap_or_else(|| panic!("no docker.io/library/alpine: {out}"));
    let served = &out[out
        .find("least recently served")
        .expect("least recently served")..];
    for blob in blobs_of(V2S2) {
        assert!(served.contains(blob.split_once(':').unwrap().1), "{out}");
    }
    let objects = 1 + blobs_of(V2S2).len();
    assert!(
        alpine.contains(&format!(" {objects} object(s)")),
        "{alpine}"
    );
    // The figures are saved every few seconds; the server restarts on the same store as a
    // private mirror, whose tokens name its users, with Docker Hub counting pulls.
    std::thread::sleep(std::time::Duration::from_secs(6));
    drop(mirror);
    let mut private = settings.clone();
    private.push(("WHITE_LIST".into(), "alice".into()));
    private.push(("TOKEN_SECRET".into(), support::mirrors::TOKEN_SECRET.into()));
    front.set(Fault::PullLimit { left: 50 });
    let mirror = LocalServer.start("commands-usage-private", &private);
    assert_same_as_direct(&mirror, "team/app:1.0", &[], Some(ALICE));
    std::thread::sleep(std::time::Duration::from_secs(6));
    drop(mirror);
    front.set(Fault::None);

    let _mirror = LocalServer.start("commands-usage-again", &settings);
    let url = format!("http://{listen}/usage");
    let shot = run_dir().join("usage-page.png");
    let dom = chromium(&url, &shot);
    eprintln!("the /usage page, as Chromium drew it: {}", shot.display());
    for expected in [
        "docker.io/library/alpine",
        "docker.io/team/app",
        "anonymous",
        "docker.io alice",
        // The picture first: the week's pulls saved, and a chart of pulls and of bytes by the
        // hour, as Chromium parsed them (168 hours each, this hour's bars drawn).
        "Docker Hub pulls saved, the last week",
        "<svg class=\"chart\" data-hours=\"168\"",
        "0 h ago:",
    ] {
        assert!(
            dom.contains(expected),
            "{expected} is not on the page: {dom}"
        );
    }
    // alice's row: at least one pull (the manifest GET), and Docker Hub's count of what is left.
    let alice = &dom[dom.find("<td>alice</td>").expect("alice on the page")..];
    let pulls: u64 = alice["<td>alice</td><td>".len()..]
        .split('<')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pulls >= 1, "alice's pulls: {alice}");
    let left = &dom[dom.find("<td>docker.io alice</td><td>").unwrap()..];
    let left: u64 = left["<td>docker.io alice</td><td>".len()..]
        .split('<')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(left <= 50, "pulls left after a limit of 50: {left}");
    assert!(
        !dom.contains(">docker.io/alpine<"),
        "alpine and library/alpine counted apart: {dom}"
    );
    assert!(shot.exists(), "no screenshot");
    let (status, out) = curl(&_mirror, "/usage", &[]);
    assert_eq!(status, 404, "/usage on the public address: {out}");
}

/// Each subcommand says what it does, its arguments and an example or its exit status.
#[test]
fn every_subcommand_explains_itself() {
    for (command, says) in [
        ("warm", "--platform"),
        ("purge", "--blobs"),
        ("verify", "Exit status"),
        ("usage", "/usage"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_registry-mirror"))
            .args([command, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && help.contains(says),
            "{command} --help: {help}"
        );
        assert!(
            help.lines().next().is_some_and(|l| l.len() > 20),
            "{command}: {help}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_registry-mirror"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `scripts/warm-through` pulls images through a mirror, which stores them: the next pull
/// fetches no blob upstream.
#[test]
fn warm_through_fills_a_mirror_by_pulling_through_it() {
    let _serial = serial();
    let Setup {
        front: _front,
        store: _store,
        settings,
    } = set_up("commands-warm-through");
    let mirror = LocalServer.start("commands-warm-through", &settings);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/warm-through");
    let out = Command::new(script)
        .args([
            "--insecure",
            &mirror.addr,
            short(V2S2),
            "docker.io/library/alpine:oci",
        ])
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert_eq!(said.matches("warmed").count(), 2, "{said}");
    let logged = mirror.requests().len();
    assert_same_as_direct(&mirror, short(V2S2), &[], None);
    assert_no_blob_fetched(&mirror, logged);
    let out = Command::new(script)
        .arg("--platform")
        .arg("amd64")
        .arg(&mirror.addr)
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A Lambda deployment's store is a bucket: `warm` fills it from outside (as from a laptop),
/// `verify` and `usage` read it, and a server on that bucket then fetches no blob upstream.
#[test]
fn warm_fills_a_bucket_store() {
    let _serial = serial();
    let f = fixture();
    let front = FaultFront::start(&f.registry, f.token_port, f.storage_port);
    let bucket = f.create_bucket("commands-warm");
    let mut settings: Vec<(String, String)> = store_settings(&run_dir().join("unused"), &front)
        .into_iter()
        .filter(|(k, _)| k != "CACHE")
        .collect();
    settings.extend(f.bucket_settings(&bucket, "mirror"));
    let (status, out, _) = command(&settings, &["warm", short(V2S2)]);
    assert_eq!(status, 0, "{out}");
    let keys = f.bucket_keys(&bucket, "mirror/");
    for blob in blobs_of(V2S2) {
        let hex = blob.split_once(':').unwrap().1;
        assert!(
            keys.iter()
                .any(|k| k.ends_with(&format!("blobs/sha256/{hex}"))),
            "{blob} is not in the bucket: {keys:?}"
        );
    }
    let (status, out, _) = command(&settings, &["verify"]);
    assert_eq!(status, 0, "{out}");
    let (status, out, _) = command(&settings, &["usage"]);
    assert_eq!(status, 0, "{out}");
    assert!(out.contains(&format!("s3://{bucket}/mirror")), "{out}");
    let mirror = LocalServer.start("commands-warm-bucket", &settings);
    assert_same_as_direct(&mirror, short(V2S2), &[], None);
    assert_no_blob_fetched(&mirror, 0);
}

/// An image the upstream does not have fails alone: the others are warmed, the exit status is 1.
#[test]
fn warm_says_which_image_failed() {
    let _serial = serial();
    let Setup {
        front: _front,
        store: _store,
        settings,
    } = set_up("commands-warm-missing");
    let (status, out, _) = command(&settings, &["warm", "alpine:no-such-tag", short(V2S2)]);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("failed   alpine:no-such-tag: 404"), "{out}");
    assert!(out.contains("1 failed"), "{out}");
    assert!(out.contains(&blobs_of(V2S2)[0]), "{out}");
}

//! The owner's commands leave the store as its server needs it: a mistyped `CACHE` is refused,
//! not made and reported clean; an interrupted `warm` leaves no partial object behind; a `warm`
//! run as root on a store another user owns (a systemd unit's `DynamicUser`) writes as that user.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};
use support::commands::{command, set_up, Setup};
use support::faults::Fault;
use support::fixture::run_dir;
use support::mirrors::with;

/// `verify`, `purge` and `usage` refuse a store that is not there (exit 2) and make nothing;
/// `warm` makes one, and says so.
#[test]
fn a_store_that_does_not_exist_is_refused_not_made() {
    let typo = run_dir().join("no-such-store");
    let _ = std::fs::remove_dir_all(&typo);
    let cache = format!("file://{}", typo.display());
    let settings = with(&[("CACHE", &cache)]);
    for args in [&["verify"][..], &["purge", "alpine:3"], &["usage"]] {
        let (status, _, err) = command(&settings, args);
        assert_eq!(status, 2, "{args:?}: {err}");
        assert!(err.contains("there is no store at"), "{args:?}: {err}");
        assert!(!typo.exists(), "{args:?} made the store");
    }
    let Setup {
        front: _front,
        store,
        settings,
    } = set_up("commands-new-store");
    let _ = std::fs::remove_dir_all(&store);
    let (status, out, err) = command(&settings, &["warm", "alpine:v2s2"]);
    assert_eq!(status, 0, "{out}{err}");
    assert!(err.contains("making a new store at"), "{err}");
    let (status, out, _) = command(&settings, &["verify"]);
    assert_eq!(status, 0, "{out}");
}

fn temporary_files(store: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    std::fs::read_dir(store.join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
        .collect()
}

/// A `warm` stopped by `SIGTERM` or `SIGINT` while it writes the 64 MiB layer deletes its
/// partial object, and exits 130.
#[test]
fn an_interrupted_warm_leaves_no_partial_object() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let Setup {
            front,
            store,
            settings,
        } = set_up(&format!("commands-interrupted-{signal}"));
        front.set(Fault::SlowBody {
            bytes_per_sec: 4_000_000,
        });
        let mut warm = std::process::Command::new(env!("CARGO_BIN_EXE_registry-mirror"))
            .args(["warm", "big:latest"])
            .envs(settings.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !temporary_files(&store)
            .iter()
            .any(|(_, len)| *len > 1_000_000)
        {
            assert!(Instant::now() < deadline, "warm never began the layer");
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY: a signal to the child this test started.
        unsafe { libc::kill(warm.id() as i32, signal) };
        let status = warm.wait().unwrap();
        front.set(Fault::None);
        assert_eq!(status.code(), Some(130), "signal {signal}");
        let left = temporary_files(&store);
        assert!(left.is_empty(), "signal {signal} left {left:?}");
    }
}

/// Run as root on a store that another user owns, `warm` writes for that user: every file and
/// directory it makes belongs to the store's owner, so that the server (that user) can still
/// write, replace and evict. It says so.
#[test]
fn a_root_warm_writes_as_the_stores_owner() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root can run a command as root");
        return;
    }
    let Setup {
        front,
        store: parent,
        settings: _,
    } = set_up("commands-owned-store");
    // As systemd lays out a DynamicUser's StateDirectory: /var/lib/private (root's, mode 0700)
    // holding the store, which belongs to the service's own user (here nobody:nogroup).
    let _ = std::fs::remove_dir_all(&parent);
    let store = parent.join("registry-mirror");
    std::fs::create_dir_all(&store).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (uid, gid) = (65534, 65534);
    std::os::unix::fs::chown(&store, Some(uid), Some(gid)).unwrap();
    let settings = support::commands::store_settings(&store, &front);
    let (status, out, err) = command(&settings, &["warm", "alpine:v2s2"]);
    assert_eq!(status, 0, "{out}{err}");
    assert!(err.contains("acting as the owner of"), "{err}");
    let mut not_theirs = Vec::new();
    let mut walk = vec![store.clone()];
    while let Some(dir) = walk.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.uid() != uid || meta.gid() != gid {
                not_theirs.push(entry.path());
            }
            if meta.is_dir() {
                walk.push(entry.path());
            }
        }
    }
    assert!(not_theirs.is_empty(), "root left {not_theirs:?}");
}

//! The directory store: commits, eviction, the lock, temporary files.
use super::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("disk-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn objects_appear_only_when_committed_and_interrupted_writes_vanish() {
    let dir = scratch("commit");
    let store = DiskStore::open(&dir, 1 << 20).unwrap();
    let mut writing = store.begin("v1/r/blobs/sha256/aa", None).unwrap();
    writing.write(b"hello").unwrap();
    assert!(store.open_object("v1/r/blobs/sha256/aa").is_none());
    writing.commit().unwrap();
    assert_eq!(
        store.open_object("v1/r/blobs/sha256/aa").unwrap().1.length,
        5
    );
    let mut dropped = store.begin("v1/r/blobs/sha256/bb", None).unwrap();
    dropped.write(b"half").unwrap();
    drop(dropped);
    assert!(store.open_object("v1/r/blobs/sha256/bb").is_none());
    assert_eq!(std::fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
    // A restart counts what is there and clears what was left half written.
    let stray = dir.join("tmp").join("stray");
    std::fs::write(&stray, b"x").unwrap();
    // Not while this one holds the directory: its temporary files are its own.
    let refused = DiskStore::open(&dir, 1 << 20).err().unwrap();
    assert!(refused.to_string().contains("another registry-mirror"));
    assert!(stray.exists());
    drop(store);
    let again = DiskStore::open(&dir, 1 << 20).unwrap();
    assert_eq!(again.used(), (HEADER_MAGIC.len() + 2 + 5) as u64);
    assert!(!stray.exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_least_recently_used_go_first_past_the_bound() {
    let dir = scratch("evict");
    // Each object: the header line and 4 bytes; room for two of them.
    let each = (HEADER_MAGIC.len() + 2 + 4) as u64;
    let store = DiskStore::open(&dir, 2 * each + 1).unwrap();
    for (key, age) in [("a", 30), ("b", 20), ("c", 10)] {
        let mut w = store
            .begin(&format!("v1/r/blobs/sha256/{key}"), None)
            .unwrap();
        w.write(b"1234").unwrap();
        w.commit().unwrap();
        let path = dir.join(format!("objects/v1/r/blobs/sha256/{key}"));
        let when = SystemTime::now() - std::time::Duration::from_secs(age);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    // The third passed the bound: the oldest went.
    assert!(store.used() <= 2 * each + 1);
    assert!(store.open_object("v1/r/blobs/sha256/a").is_none());
    assert!(store.open_object("v1/r/blobs/sha256/c").is_some());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_media_type_travels_with_the_object() {
    let dir = scratch("media");
    let store = DiskStore::open(&dir, 1 << 20).unwrap();
    let key = "v1/r/manifests/sha256/aa";
    let mut w = store
        .begin(key, Some("application/vnd.oci.image.manifest.v1+json"))
        .unwrap();
    w.write(b"{}").unwrap();
    w.commit().unwrap();
    let (mut file, stored) = store.open_object(key).unwrap();
    assert_eq!(stored.length, 2);
    assert_eq!(
        stored.media_type.as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    let mut body = String::new();
    std::io::Read::read_to_string(&mut file, &mut body).unwrap();
    assert_eq!(body, "{}");
    assert!(store.begin(key, Some("bad\ntype")).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn keys_cannot_leave_the_directory() {
    let dir = scratch("keys");
    let store = DiskStore::open(&dir, 10).unwrap();
    for key in ["../x", "v1/../../x", "/etc/passwd", "v1//x", "v1/a b"] {
        assert!(store.begin(key, None).is_err(), "{key}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn eviction_goes_to_a_low_mark_and_large_objects_are_not_kept() {
    let dir = scratch("low-mark");
    let each = (HEADER_MAGIC.len() + 2 + 100) as u64;
    let max = 20 * each;
    let store = DiskStore::open(&dir, max).unwrap();
    assert_eq!(store.largest_object(), max / 4);
    for n in 0..21 {
        let mut w = store
            .begin(&format!("v1/r/blobs/sha256/{n}"), None)
            .unwrap();
        w.write(&[7; 100]).unwrap();
        w.commit().unwrap();
    }
    // Past the bound once: down to the low mark, not just under the bound.
    assert!(store.used() <= max - max / 10, "{}", store.used());
    assert!(store.open_object("v1/r/blobs/sha256/0").is_none());
    assert!(store.open_object("v1/r/blobs/sha256/20").is_some());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn concurrent_writes_of_one_key_never_share_a_file() {
    let dir = scratch("unique");
    let store = DiskStore::open(&dir, 1 << 20).unwrap();
    let key = "v1/r/blobs/sha256/cc";
    let mut first = store.begin(key, None).unwrap();
    let mut second = store.begin(key, None).unwrap();
    assert_ne!(first.temporary, second.temporary);
    first.write(b"one").unwrap();
    second.write(b"two!").unwrap();
    first.commit().unwrap();
    assert_eq!(store.open_object(key).unwrap().1.length, 3);
    second.commit().unwrap();
    assert_eq!(store.open_object(key).unwrap().1.length, 4);
    assert_eq!(store.used(), (HEADER_MAGIC.len() + 2 + 4) as u64);
    let _ = std::fs::remove_dir_all(dir);
}

/// While the server runs, a temporary file of a process that is gone (a command killed
/// mid-write) is swept once idle; one of a live process is kept, unless idle for an hour; the
/// server's own writes are never touched.
#[test]
fn abandoned_temporary_files_are_swept_while_serving() {
    let dir = scratch("sweep");
    let store = DiskStore::open(&dir, 1 << 20).unwrap();
    let mut writing = store.begin("v1/r/blobs/sha256/aa", None).unwrap();
    writing.write(b"in progress").unwrap();
    let tmp = dir.join("tmp");
    // A PID past the kernel's largest (4194304) belongs to no process.
    let gone = tmp.join("1-4194399-0");
    let live_idle = tmp.join(format!("1-{}-99", std::process::id()));
    let live_old = tmp.join(format!("2-{}-99", std::process::id()));
    for file in [&gone, &live_idle, &live_old] {
        std::fs::write(file, vec![0; 1000]).unwrap();
    }
    let ago = |secs| std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
    let touch = |file: &Path, secs| {
        let f = std::fs::File::options().write(true).open(file).unwrap();
        f.set_modified(ago(secs)).unwrap();
    };
    touch(&gone, 120);
    touch(&live_idle, 120);
    touch(&live_old, 2 * 3600);
    assert_eq!(store.sweep_abandoned(), (2000, 2));
    assert!(!gone.exists() && !live_old.exists() && live_idle.exists());
    writing.commit().unwrap();
    assert!(store.open_object("v1/r/blobs/sha256/aa").is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A store that cannot write says where: the path that refused it is in the error the server
/// logs (`complaints`), not "cannot make the object's file".
#[test]
fn a_failure_to_keep_names_the_path() {
    let dir = scratch("refused");
    let store = DiskStore::open(&dir, 1 << 20).unwrap();
    std::fs::remove_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("tmp"), b"not a directory").unwrap();
    let e = store.begin("v1/r/blobs/sha256/aa", None).err().unwrap();
    assert!(
        e.to_string()
            .contains(&format!("{}", dir.join("tmp").display())),
        "{e}"
    );
    std::fs::remove_file(dir.join("tmp")).unwrap();
    std::fs::create_dir(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("objects/v1"), b"in the way").unwrap();
    let mut writing = store.begin("v1/r/blobs/sha256/aa", None).unwrap();
    writing.write(b"x").unwrap();
    let e = writing.commit().unwrap_err();
    assert!(e.to_string().contains("objects/v1"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

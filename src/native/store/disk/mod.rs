//! The content store in a directory, for the native runtimes (`CACHE=file:///path`; the local
//! server's default is `$XDG_CACHE_HOME/registry-mirror`). The core decides what is stored and
//! served (`store`); this module only reads and writes.
//!
//! An object is written to a temporary file of its own in `tmp/` (made with `create_new` under a
//! name no other write uses) while it is filled (`growing`: its clients read it as it grows),
//! and renamed into `objects/` only when the
//! core's verifier has accepted every byte, after the data reached the disk: a server killed
//! mid-write leaves a temporary file, which the next start deletes, never an object.
//!
//! One server per directory: the server holds an exclusive lock on `lock` in it for its whole
//! life, and a second server (another container on the same volume, say) refuses to start. The
//! index of what the store holds (sizes, last use) then lives in memory, built once at start:
//! past `CACHE_MAX_BYTES` the least recently served objects go, down to a low mark, without a
//! walk of the tree. An object larger than a quarter of the bound is relayed but not kept (the
//! core is told, `largest_object`), so that one large layer cannot empty the store.

mod file_body;
mod index;
mod listing;
pub mod writer;

pub use file_body::file_body;
pub(crate) use file_body::{read_cached, read_chunk, READ_CHUNK};

use crate::store::Stored;
use index::{nanos, now_nanos, Index};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The local server's store when `CACHE` is unset: `$XDG_CACHE_HOME/registry-mirror`, else
/// `~/.cache/registry-mirror`.
pub fn default_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|home| home.join(".cache")))?;
    Some(base.join("registry-mirror"))
}

/// Each object file begins with one line, `registry-mirror-object v1 <media type or ->`, then the
/// object's bytes: the media type travels with the object, in the same atomic rename.
const HEADER_MAGIC: &str = "registry-mirror-object v1 ";
const MAX_HEADER: u64 = 256;

/// Objects larger than the bound divided by this are not kept.
const LARGEST_OBJECT_FRACTION: u64 = 4;

/// Eviction goes down to the bound less this fraction of it, so that it runs once in a while, not
/// on every write of a full store.
const LOW_MARK_FRACTION: u64 = 10;

/// A temporary file of a process that is gone, untouched this long, is swept.
pub const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
/// Any temporary file untouched this long is swept (an object's writes never pause so long).
pub const SURELY_ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// The owner of `root` (or of its nearest existing parent) when this process is root and that
/// owner is not: a command run with `sudo` on a store a `DynamicUser` or a container's user owns.
fn other_owner(root: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let meta = root.ancestors().find_map(|d| std::fs::metadata(d).ok())?;
    (meta.uid() != 0).then(|| (meta.uid(), meta.gid()))
}

/// Gives `path` and its parents up to `root` (included) that `owner` does not own to it.
fn give_to(owner: (u32, u32), path: &Path, root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    for dir in path.ancestors() {
        let meta = std::fs::metadata(dir)?;
        if (meta.uid(), meta.gid()) != owner {
            std::os::unix::fs::chown(dir, Some(owner.0), Some(owner.1))
                .map_err(|e| at_path("cannot give away", dir, e))?;
        }
        if dir == root {
            break;
        }
    }
    Ok(())
}

/// `e`, saying what was done to which path (a store that cannot keep objects says where).
fn at_path(what: &str, path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Whether a process `pid` runs (in this PID namespace).
fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 checks for the process and sends nothing.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    alive || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A directory of stored objects.
pub struct DiskStore {
    root: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    writes: AtomicU64,
    /// Held open for the store's life: the exclusive lock on the directory (a server's; the
    /// owner's commands take none).
    _lock: Option<std::fs::File>,
    /// For a command run as root on a store another user owns: that user and group, given
    /// everything the command makes, so that the store's server can still use it.
    owner: Option<(u32, u32)>,
}

impl DiskStore {
    /// Opens (or makes) the store at `root`: takes the directory's lock (or refuses, when another
    /// server holds it), drops interrupted writes, indexes what it holds.
    pub fn open(root: &Path, max_bytes: u64) -> std::io::Result<Arc<DiskStore>> {
        std::fs::create_dir_all(root)?;
        let lock = lock_directory(root)?;
        // The lock is ours: whatever is in tmp/ was left by a server that is gone.
        let _ = std::fs::remove_dir_all(root.join("tmp"));
        DiskStore::index_of(root, max_bytes, Some(lock))
    }

    /// Opens the store at `root` for the owner's commands (`warm`, `purge`, `verify`, `usage`),
    /// beside a server that may be using it: no lock, and nothing in `tmp/` is touched but the
    /// command's own files. What such a command adds is served by a running server at once, and
    /// counted towards its bound from its next start; what it deletes is, to that server, a miss.
    pub fn open_beside_server(root: &Path, max_bytes: u64) -> std::io::Result<Arc<DiskStore>> {
        let owner = other_owner(root);
        std::fs::create_dir_all(root)?;
        let mut store = DiskStore::index_of(root, max_bytes, None)?;
        if let Some(owner) = owner {
            give_to(owner, root, root)?;
            for made in ["tmp", "objects"] {
                give_to(owner, &root.join(made), root)?;
            }
            if let Some(store) = Arc::get_mut(&mut store) {
                store.owner = Some(owner);
            }
        }
        Ok(store)
    }

    fn index_of(
        root: &Path,
        max_bytes: u64,
        lock: Option<std::fs::File>,
    ) -> std::io::Result<Arc<DiskStore>> {
        std::fs::create_dir_all(root.join("tmp"))?;
        std::fs::create_dir_all(root.join("objects"))?;
        let mut index = Index::default();
        for (path, meta) in objects(&root.join("objects")) {
            index.insert(path, meta.len(), nanos(last_use(&meta)));
        }
        Ok(Arc::new(DiskStore {
            root: root.to_path_buf(),
            max_bytes,
            index: Mutex::new(index),
            writes: AtomicU64::new(0),
            _lock: lock,
            owner: None,
        }))
    }

    /// The user (and group) a command run as root gives what it makes, when another user owns
    /// the store (see `owner`).
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bytes the store holds.
    pub fn used(&self) -> u64 {
        self.index().used
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The largest object the store keeps (the core relays larger ones without storing them).
    pub fn largest_object(&self) -> u64 {
        self.max_bytes / LARGEST_OBJECT_FRACTION
    }

    /// The object at `key`, opened and positioned at its body (so that eviction cannot take it
    /// from under a reader), with what the core needs of it; it becomes the most recently used.
    pub fn open_object(&self, key: &str) -> Option<(std::fs::File, Stored)> {
        let (file, stored, path) = self.open_at(key)?;
        // The last use, kept in the file's time too, so that a restart knows it.
        let _ = file.set_modified(SystemTime::now());
        self.index().touch(&path, now_nanos());
        Some((file, stored))
    }

    /// The object at `key`, opened and positioned at its body, its last use left as it was.
    fn open_at(&self, key: &str) -> Option<(std::fs::File, Stored, PathBuf)> {
        use std::io::{BufRead, Read, Seek};
        let path = self.path(key)?;
        let mut file = std::fs::File::open(&path).ok()?;
        let size = file.metadata().ok()?.len();
        let mut header = String::new();
        std::io::BufReader::new((&mut file).take(MAX_HEADER))
            .read_line(&mut header)
            .ok()?;
        let media_type = header.strip_prefix(HEADER_MAGIC)?.strip_suffix('\n')?;
        let media_type = (media_type != "-").then(|| media_type.to_string());
        file.seek(std::io::SeekFrom::Start(header.len() as u64))
            .ok()?;
        let length = size.checked_sub(header.len() as u64)?;
        Some((file, Stored { length, media_type }, path))
    }

    /// The small record at `key` (see `store::Record`), at most `store::MAX_RECORD` bytes.
    pub fn read_record(&self, key: &str) -> Option<Vec<u8>> {
        use std::io::Read;
        let (file, stored) = self.open_object(key)?;
        let mut bytes = Vec::new();
        file.take(crate::store::MAX_RECORD as u64)
            .read_to_end(&mut bytes)
            .ok()?;
        (bytes.len() as u64 == stored.length).then_some(bytes)
    }

    /// Keeps a small record at `key`, replacing the one there.
    pub fn write_record(self: &Arc<Self>, key: &str, value: &[u8]) -> std::io::Result<()> {
        let mut writing = self.begin(key, None)?;
        writing.write(value)?;
        writing.commit()
    }

    /// A new object at `key`, written to a temporary file until [`Writing::commit`]; why not,
    /// with the path that refused it (the server logs it).
    pub fn begin(
        self: &Arc<Self>,
        key: &str,
        media_type: Option<&str>,
    ) -> std::io::Result<Writing> {
        let refused = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
        let destination = self
            .path(key)
            .ok_or_else(|| refused("not a key the store takes"))?;
        let media_type = media_type.unwrap_or("-");
        if media_type.len() > 200 || media_type.contains(['\n', '\r']) {
            return Err(refused("not a media type the store keeps"));
        }
        let (temporary, mut file) = self.temporary_file()?;
        let header = format!("{HEADER_MAGIC}{media_type}\n");
        file.write_all(header.as_bytes())
            .map_err(|e| at_path("cannot write", &temporary, e))?;
        Ok(Writing {
            file: std::io::BufWriter::with_capacity(256 * 1024, file),
            temporary,
            destination,
            written: header.len() as u64,
            header: header.len() as u64,
            store: self.clone(),
            committed: false,
        })
    }

    /// A temporary file no other write of this or any process has: a name of the time and a
    /// counter, made with `create_new`, so that an existing file is never opened, let alone
    /// truncated.
    fn temporary_file(&self) -> std::io::Result<(PathBuf, std::fs::File)> {
        let mut last = None;
        for _ in 0..8 {
            let n = self.writes.fetch_add(1, Ordering::Relaxed);
            let name = format!("{:x}-{}-{n}", now_nanos(), std::process::id());
            let path = self.root.join("tmp").join(name);
            match std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    if let Some((uid, gid)) = self.owner {
                        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                            .map_err(|e| at_path("cannot give away", &path, e))?;
                    }
                    return Ok((path, file));
                }
                Err(e) => last = Some(e),
            }
        }
        let e = last.unwrap_or_else(|| std::io::Error::other("no temporary file"));
        Err(at_path("cannot make a file in", &self.root.join("tmp"), e))
    }

    /// Deletes the temporary files process `pid` made (see `temporary_file`).
    pub fn remove_temporary_files_of(&self, pid: u32) {
        let mine = format!("-{pid}-");
        for entry in std::fs::read_dir(self.root.join("tmp"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().contains(&mine) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Deletes temporary files abandoned while the server runs (a command killed mid-write): those
    /// of a process that is gone and untouched for [`ABANDONED_AFTER`], and any untouched for
    /// [`SURELY_ABANDONED_AFTER`] (a process of another PID namespace). Their bytes and count.
    pub fn sweep_abandoned(&self) -> (u64, usize) {
        let (mut bytes, mut files) = (0, 0);
        let now = SystemTime::now();
        for entry in std::fs::read_dir(self.root.join("tmp"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(meta) = entry.metadata() else { continue };
            let idle = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').nth(1).and_then(|p| p.parse::<i32>().ok());
            let gone = pid.is_some_and(|pid| !process_exists(pid));
            let abandoned = (gone && idle >= ABANDONED_AFTER) || idle >= SURELY_ABANDONED_AFTER;
            if abandoned && std::fs::remove_file(entry.path()).is_ok() {
                bytes += meta.len();
                files += 1;
            }
        }
        (bytes, files)
    }

    /// Keys come from the core (registry names and digests it has checked); anything that could
    /// leave the directory is refused all the same.
    fn path(&self, key: &str) -> Option<PathBuf> {
        let safe = key.split('/').all(|part| {
            !part.is_empty()
                && part != ".."
                && part != "."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
        safe.then(|| self.root.join("objects").join(key))
    }

    /// Past the bound, deletes the least recently used objects down to the low mark. The index
    /// says which; only their files are touched.
    fn evict(&self) {
        let victims = {
            let mut index = self.index();
            if index.used <= self.max_bytes {
                return;
            }
            index.evict_to(self.max_bytes - self.max_bytes / LOW_MARK_FRACTION)
        };
        for path in victims {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The exclusive lock on `root/lock`, taken without waiting: a second server on the same
/// directory would delete the first's temporary files and keep an index of its own.
fn lock_directory(root: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("lock"))?;
    // SAFETY: flock on a descriptor this function owns.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let e = std::io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => std::io::Error::other(
                "another registry-mirror uses this directory (one server per store directory: \
                 give each its own, or share a bucket with CACHE=s3://…)",
            ),
            _ => e,
        });
    }
    Ok(file)
}

/// Every object under `dir`: its path and its file's metadata (size, last use, birth).
fn objects(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                found.push((entry.path(), meta));
            }
        }
    }
    found
}

/// An object's last use: its file's time, which every hit sets.
fn last_use(meta: &std::fs::Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// An object being written; dropped without [`Writing::commit`], it leaves nothing.
pub struct Writing {
    file: std::io::BufWriter<std::fs::File>,
    /// The length of the object's header line, before its bytes.
    header: u64,
    temporary: PathBuf,
    destination: PathBuf,
    written: u64,
    store: Arc<DiskStore>,
    committed: bool,
}

impl Writing {
    pub fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.written += chunk.len() as u64;
        self.file.write_all(chunk)
    }

    pub fn write_chunks(&mut self, chunks: &[bytes::Bytes]) -> std::io::Result<()> {
        chunks.iter().try_for_each(|chunk| self.write(chunk))
    }

    /// Everything written so far handed to the file, where a reader of it finds it.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    /// The object's file opened again for reading, and where its bytes begin: a reader that
    /// keeps it whatever becomes of the file's name (the commit renames it).
    pub fn reader(&self) -> std::io::Result<(std::fs::File, u64)> {
        let file = std::fs::File::open(&self.temporary)
            .map_err(|e| at_path("cannot read", &self.temporary, e))?;
        Ok((file, self.header))
    }

    /// Makes the object visible: its data on disk first, then the rename, which is atomic.
    pub fn commit(mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        if let Some(parent) = self.destination.parent() {
            std::fs::create_dir_all(parent).map_err(|e| at_path("cannot make", parent, e))?;
            if let Some(owner) = self.store.owner {
                give_to(owner, parent, &self.store.root)?;
            }
        }
        std::fs::rename(&self.temporary, &self.destination)
            .map_err(|e| at_path("cannot move an object into", &self.destination, e))?;
        self.committed = true;
        // A record replaced: the index swaps the old entry for the new.
        let destination = std::mem::take(&mut self.destination);
        self.store
            .index()
            .insert(destination, self.written, now_nanos());
        self.store.evict();
        Ok(())
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

#[cfg(test)]
mod tests;

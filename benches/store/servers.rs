//! What the store benchmark measures against: a registry's files (one blob, its config and the
//! manifest naming them), nginx serving them as a registry and nginx proxying that, the mirror
//! with a store of its own, and the CPU time a process group has spent.

use crate::support::fixture::run_dir;
use crate::support::mirrors::{LocalServer, Mirror, Runtime};
use crate::support::process::{free_port, need, spawn, wait_for_port, Running};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The registry's files: `blobs/<digest>` and `manifest.json`.
pub struct Files {
    pub dir: PathBuf,
    pub repository: &'static str,
    pub digest: String,
    pub blob_length: u64,
    manifest_digest: String,
}

impl Files {
    /// A blob of `size` pseudo-random bytes, a config, and an OCI image manifest of the two.
    pub fn write(size: usize) -> Files {
        let dir = run_dir().join("bench-store-files");
        std::fs::create_dir_all(dir.join("blobs")).unwrap();
        let mut blob = vec![0u8; size];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for chunk in blob.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let digest_of = |bytes: &[u8]| format!("sha256:{:x}", Sha256::digest(bytes));
        let (digest, config_digest) = (digest_of(&blob), digest_of(config));
        std::fs::write(dir.join("blobs").join(&digest), &blob).unwrap();
        std::fs::write(dir.join("blobs").join(&config_digest), config).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}],
        })
        .to_string();
        std::fs::write(dir.join("manifest.json"), &manifest).unwrap();
        Files {
            dir,
            repository: "bench/store",
            digest,
            blob_length: size as u64,
            manifest_digest: digest_of(manifest.as_bytes()),
        }
    }
}

/// An nginx with one worker; `group` is its process group (master and worker).
pub struct Nginx {
    pub addr: String,
    pub group: i32,
    _running: Running,
}

impl Nginx {
    /// nginx answering as an open registry from `files`, blobs by `sendfile`.
    pub fn registry(files: &Files) -> Nginx {
        let (f, repository) = (files.dir.display(), files.repository);
        let manifests = format!("latest|{}", files.manifest_digest);
        let locations = format!(
            "    location = /v2/ {{ default_type application/json; return 200 '{{}}'; }}\n\
             location ~ ^/v2/{repository}/blobs/(sha256:[0-9a-f]+)$ {{ default_type application/octet-stream; add_header Docker-Content-Digest $1; alias {f}/blobs/$1; }}\n\
             location ~ ^/v2/{repository}/manifests/({manifests})$ {{ default_type application/vnd.oci.image.manifest.v1+json; add_header Docker-Content-Digest {}; alias {f}/manifest.json; }}\n",
            files.manifest_digest
        );
        Nginx::start("bench-store-registry", &locations)
    }

    /// nginx as a streaming reverse proxy (`proxy_buffering off`) of `upstream`, passing on up to
    /// 256 KiB at a time as the mirror does (its default, 4 KiB, costs it several times the CPU).
    pub fn proxy(upstream: &str) -> Nginx {
        let locations = format!(
            "    location / {{ proxy_pass http://{upstream}; proxy_http_version 1.1; proxy_set_header Host $http_host; proxy_buffering off; proxy_buffer_size 256k; proxy_buffers 4 256k; proxy_busy_buffers_size 256k; proxy_request_buffering off; }}\n"
        );
        Nginx::start("bench-store-proxy", &locations)
    }

    fn start(name: &str, locations: &str) -> Nginx {
        let dir = run_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 100000;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/f;\n  uwsgi_temp_path {d}/u;\n  scgi_temp_path {d}/s;\n\
             server {{\n    listen 127.0.0.1:{port};\n{locations}  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut nginx = Command::new(need("nginx"));
        nginx
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(&dir);
        let running = spawn(name, nginx, &dir.join("nginx.out"));
        wait_for_port(port, name, &dir.join("error.log"));
        Nginx {
            addr: format!("127.0.0.1:{port}"),
            group: running.pid,
            _running: running,
        }
    }
}

/// The local server with a directory store of its own (removed when it stops), tags served from
/// their records for an hour.
pub struct StoreMirror {
    pub mirror: Mirror,
    dir: PathBuf,
    /// The blob's name in the store and its length: a record named by the same digest is
    /// small.
    blob_name: String,
    blob_length: u64,
}

impl StoreMirror {
    pub fn start(round: usize, upstream: &(String, String), files: &Files) -> StoreMirror {
        let dir = run_dir().join(format!("bench-store-{round}"));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = [
            upstream.clone(),
            ("CACHE".to_string(), format!("file://{}", dir.display())),
            ("TAG_TTL_SECS".to_string(), "3600".to_string()),
        ];
        let mirror = LocalServer.start(&format!("bench-store-{round}"), &settings);
        let blob_name = files.digest.split(':').nth(1).unwrap().to_string();
        StoreMirror {
            mirror,
            dir,
            blob_name,
            blob_length: files.blob_length,
        }
    }

    /// The mirror's process (and group).
    pub fn pid(&self) -> i32 {
        self.mirror._processes[0].pid
    }

    /// Waits until the blob is in the store (its commit runs after the client's last byte).
    pub fn wait_until_stored(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if find(&self.dir.join("objects"), &self.blob_name, self.blob_length) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the blob never reached the store in {}", self.dir.display());
    }
}

impl Drop for StoreMirror {
    fn drop(&mut self) {
        crate::support::process::stop_group(self.pid());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `dir` holds a file called `name` of at least `length` bytes.
fn find(dir: &Path, name: &str, length: u64) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let path = entry.path();
            if path.is_dir() {
                find(&path, name, length)
            } else {
                entry.file_name().to_string_lossy() == name
                    && entry.metadata().is_ok_and(|m| m.len() >= length)
            }
        })
}

/// User and system CPU seconds spent so far by every process of the process groups `groups`
/// (each process the benchmark starts leads a group of its own).
pub fn cpu_seconds(groups: &[i32]) -> f64 {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().parse::<i32>().is_err() {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: state is 3rd, pgrp 5th, utime 14th,
        // stime 15th of the whole line.
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.len() < 13 {
            continue;
        }
        let group: i32 = fields[2].parse().unwrap_or(0);
        if groups.contains(&group) {
            let user: f64 = fields[11].parse().unwrap_or(0.0);
            let system: f64 = fields[12].parse().unwrap_or(0.0);
            total += (user + system) / ticks;
        }
    }
    total
}

//! The real clients: skopeo, the Docker daemon, podman, containerd's `ctr`, and the `oci-client`
//! crate, each driven as a user would, with its own state directory.

use super::fixture::{fixture, run_dir, PUSHER};
use super::process::{need, run, spawn, try_run, wait_for_port, Running};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A fresh directory under the run directory.
pub fn scratch(label: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let dir = run_dir().join(format!("{label}-{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub type Credentials = (&'static str, &'static str);

// ---- skopeo ----

/// `skopeo copy docker://<source> dir:<dest>`; the error text on failure.
pub fn skopeo_copy(
    source: &str,
    creds: Option<Credentials>,
    extra: &[&str],
) -> Result<PathBuf, String> {
    let dest = scratch("skopeo");
    let mut command = Command::new(need("skopeo"));
    command
        .args(["copy", "-q", "--src-tls-verify=false"])
        .args(extra);
    match creds {
        Some((u, p)) => command.arg("--src-creds").arg(format!("{u}:{p}")),
        None => command.arg("--src-no-creds"),
    };
    command
        .arg(format!("docker://{source}"))
        .arg(format!("dir:{}", dest.display()));
    let (ok, output) = try_run(command);
    if ok {
        Ok(dest)
    } else {
        Err(output)
    }
}

/// The files of a `dir:` copy: name → sha256 (skopeo names blobs by their digest).
pub fn dir_digests(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                format!("{:x}", Sha256::digest(bytes)),
            )
        })
        .collect()
}

/// What a direct pull from the fixture registry gives (cached per reference).
pub fn direct_copy(reference: &str, extra: &[&str]) -> BTreeMap<String, String> {
    static CACHE: OnceLock<std::sync::Mutex<BTreeMap<String, BTreeMap<String, String>>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = format!("{reference} {extra:?}");
    if let Some(found) = cache.lock().unwrap().get(&key) {
        return found.clone();
    }
    let source = format!("{}/{reference}", fixture().registry);
    let dir = skopeo_copy(&source, Some(PUSHER), extra).expect("a direct pull");
    let digests = dir_digests(&dir);
    std::fs::remove_dir_all(dir).ok();
    cache.lock().unwrap().insert(key, digests.clone());
    digests
}

// ---- The Docker daemon ----

/// A dockerd of the test's own, with the mirror in `registry-mirrors`.
pub struct Dockerd {
    pub dir: PathBuf,
    socket: PathBuf,
    _process: Running,
}

impl Dockerd {
    pub fn start(mirror: &str) -> Dockerd {
        Dockerd::start_with(&format!("http://{mirror}"), &[mirror])
    }

    /// A dockerd whose `registry-mirrors` is `mirror_url`, trusting plain HTTP (or a certificate
    /// it cannot check) only from `insecure`.
    pub fn start_with(mirror_url: &str, insecure: &[&str]) -> Dockerd {
        let dir = scratch("dockerd");
        let socket = dir.join("sock");
        let config = serde_json::json!({
            "registry-mirrors": [mirror_url],
            "insecure-registries": insecure,
            "storage-driver": "vfs",
            "iptables": false,
            "ip6tables": false,
            "bridge": "none",
            "data-root": dir.join("root"),
            "exec-root": dir.join("exec"),
            "pidfile": dir.join("docker.pid"),
            "hosts": [format!("unix://{}", socket.display())],
            "max-concurrent-downloads": 3,
        });
        let config_file = dir.join("daemon.json");
        std::fs::write(&config_file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let mut command = Command::new(need("dockerd"));
        command.arg("--config-file").arg(&config_file);
        let log = dir.join("dockerd.log");
        let process = spawn("dockerd", command, &log);
        let dockerd = Dockerd {
            dir,
            socket,
            _process: process,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (ok, _) = try_run(dockerd.docker_command(None, &["version"]));
            if ok {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "dockerd did not start; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        dockerd
    }

    fn docker_command(&self, config: Option<&Path>, args: &[&str]) -> Command {
        let mut command = Command::new(docker_client());
        command.env("DOCKER_HOST", format!("unix://{}", self.socket.display()));
        let config = config
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.dir.join("client"));
        command.env("DOCKER_CONFIG", config).args(args);
        command
    }

    /// Runs `docker <args>` with the client configuration in `config` (a `DOCKER_CONFIG` dir).
    pub fn docker(&self, config: Option<&Path>, args: &[&str]) -> (bool, String) {
        try_run(self.docker_command(config, args))
    }

    /// `docker login <registry>` with the password on standard input.
    pub fn login(
        &self,
        config: &Path,
        registry: &str,
        (user, password): Credentials,
    ) -> (bool, String) {
        use std::io::Write;
        let mut command = self.docker_command(
            Some(config),
            &["login", registry, "-u", user, "--password-stdin"],
        );
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("docker login");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// The image ID (its config digest) of a pulled image.
    pub fn image_id(&self, reference: &str) -> String {
        let (ok, out) = self.docker(
            None,
            &["image", "inspect", "--format", "{{.Id}}", reference],
        );
        assert!(ok, "docker image inspect {reference}: {out}");
        out.trim().to_string()
    }

    /// The repository digests dockerd recorded for a pulled image.
    pub fn repo_digests(&self, reference: &str) -> String {
        let (ok, out) = self.docker(
            None,
            &[
                "image",
                "inspect",
                "--format",
                "{{json .RepoDigests}}",
                reference,
            ],
        );
        assert!(ok, "docker image inspect {reference}: {out}");
        out
    }
}

/// Debian's docker client (docker.io) matches its dockerd; any other docker client will do too.
fn docker_client() -> String {
    if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker".to_string()
    } else {
        need("docker")
    }
}

/// A `DOCKER_CONFIG` directory holding `auths` for the given registries.
pub fn docker_config(auths: &[(&str, Credentials)]) -> PathBuf {
    use base64::Engine;
    let dir = scratch("docker-config");
    let mut map = serde_json::Map::new();
    for (registry, (u, p)) in auths {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        map.insert(registry.to_string(), serde_json::json!({ "auth": auth }));
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&serde_json::json!({ "auths": map })).unwrap(),
    )
    .unwrap();
    dir
}

// ---- podman ----

/// `podman pull` as root with the vfs driver and its own storage; `registries_conf` for mirrors.
pub fn podman_pull(
    reference: &str,
    registries_conf: Option<&Path>,
    creds: Option<Credentials>,
) -> Result<String, String> {
    let dir = scratch("podman");
    let mut command = Command::new(need("podman"));
    command
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ])
        .env("XDG_RUNTIME_DIR", dir.join("xdg"))
        .env("REGISTRY_AUTH_FILE", dir.join("auth.json"));
    std::fs::create_dir_all(dir.join("xdg")).unwrap();
    write_file(&dir, "auth.json", "{}");
    match registries_conf {
        Some(conf) => command.env("CONTAINERS_REGISTRIES_CONF", conf),
        None => command.env(
            "CONTAINERS_REGISTRIES_CONF",
            write_file(&dir, "registries.conf", ""),
        ),
    };
    command.args(["pull", "-q", "--tls-verify=false"]);
    if let Some((u, p)) = creds {
        command.arg("--creds").arg(format!("{u}:{p}"));
    }
    command.arg(reference);
    let (ok, out) = try_run(command);
    if ok {
        // `pull -q` prints the image ID: the config digest's hex.
        Ok(out.lines().last().unwrap_or("").trim().to_string())
    } else {
        Err(out)
    }
}

pub fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

// ---- containerd ----

/// A containerd of the test binary's own (CRI off), for `ctr`.
pub struct Containerd {
    pub socket: PathBuf,
    _process: Running,
}

pub fn containerd() -> &'static Containerd {
    static CONTAINERD: OnceLock<Containerd> = OnceLock::new();
    CONTAINERD.get_or_init(|| {
        let dir = scratch("containerd");
        let socket = dir.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = socket.display()
        );
        let config_file = write_file(&dir, "config.toml", &config);
        let mut command = Command::new(need("containerd"));
        command.arg("--config").arg(&config_file);
        let log = dir.join("containerd.log");
        let process = spawn("containerd", command, &log);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "containerd did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        }
        Containerd { socket, _process: process }
    })
}

impl Containerd {
    fn ctr_command(&self, namespace: &str, args: &[&str]) -> Command {
        let mut command = Command::new(need("ctr"));
        command
            .arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(namespace)
            .args(args);
        command
    }

    pub fn ctr(&self, namespace: &str, args: &[&str]) -> (bool, String) {
        try_run(self.ctr_command(namespace, args))
    }

    /// The digests of the blobs in a namespace's content store.
    pub fn content_digests(&self, namespace: &str) -> Vec<String> {
        let (ok, out) = self.ctr(namespace, &["content", "ls", "-q"]);
        assert!(ok, "ctr content ls: {out}");
        out.lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// The bytes of one blob, checked against its digest.
    pub fn content_sha256(&self, namespace: &str, digest: &str) -> String {
        let out = self
            .ctr_command(namespace, &["content", "get", digest])
            .output()
            .unwrap();
        assert!(out.status.success());
        format!("sha256:{:x}", Sha256::digest(&out.stdout))
    }
}

/// A namespace no other test uses.
pub fn namespace(label: &str) -> String {
    let dir = scratch(label);
    dir.file_name().unwrap().to_string_lossy().replace('-', "_")
}

// ---- oci-client ----

pub struct OciPull {
    pub manifest_digest: String,
    pub config_digest: String,
    /// (digest in the manifest, sha256 of the bytes received).
    pub layers: Vec<(String, String)>,
}

/// Pulls an image with the `oci-client` crate over plain HTTP.
pub fn oci_client_pull(reference: &str, creds: Option<Credentials>) -> Result<OciPull, String> {
    use oci_client::client::{ClientConfig, ClientProtocol};
    use oci_client::secrets::RegistryAuth;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = oci_client::Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..Default::default()
        });
        let reference: oci_client::Reference = reference.parse().map_err(|e| format!("{e}"))?;
        let auth = match creds {
            Some((u, p)) => RegistryAuth::Basic(u.to_string(), p.to_string()),
            None => RegistryAuth::Anonymous,
        };
        let image = client
            .pull(
                &reference,
                &auth,
                vec![
                    oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE,
                    oci_client::manifest::IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE,
                ],
            )
            .await
            .map_err(|e| format!("{e}"))?;
        let manifest = image.manifest.ok_or("no manifest")?;
        let layers = manifest
            .layers
            .iter()
            .zip(image.layers.iter())
            .map(|(d, l)| {
                (
                    d.digest.clone(),
                    format!("sha256:{:x}", Sha256::digest(&l.data)),
                )
            })
            .collect();
        Ok(OciPull {
            manifest_digest: image.digest.ok_or("no digest")?,
            config_digest: manifest.config.digest.clone(),
            layers,
        })
    })
}

/// Waits for a port to listen (re-exported for runtimes).
pub fn wait_port(port: u16, what: &str, log: &Path) {
    wait_for_port(port, what, log)
}

pub fn run_ok(command: Command) -> String {
    run(command)
}

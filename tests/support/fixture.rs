//! The stand-in for Docker Hub, all on 127.0.0.1 and all real parts but the token server:
//!
//! - CNCF distribution (Debian's `docker-registry`) with `auth: token`;
//! - a Docker-Hub-style token server (`tests/fixture/token_server.py`): RS256 JWTs the registry
//!   trusts, users with passwords, Basic and the OAuth POST;
//! - blob storage on distribution's S3 driver against moto's S3 emulator, so blob GETs answer 307
//!   to a presigned URL;
//! - nginx in front of that storage, refusing a presigned GET that also carries `Authorization`, as
//!   Docker Hub's CDN does. Its access log counts the blob fetches that reached storage.
//!
//! Test images are built offline with umoci and pushed with skopeo, once per test binary.

use super::images::{self, Images};
use super::process::{self, need, run, spawn, wait_for_line, wait_for_port, Running};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Users of the token server (tests/fixture/token_server.py has the same).
pub const ALICE: (&str, &str) = ("alice", "alice-password");
pub const BOB: (&str, &str) = ("bob", "bob-password");
pub const CAROL: (&str, &str) = ("carol", "carol-password");
pub const PUSHER: (&str, &str) = ("pusher", "pusher-password");
pub const SERVICE: &str = "fixture-registry";
pub const GHCR_SERVICE: &str = "fixture-ghcr";

pub struct Fixture {
    /// Where every file of this test binary's run lives.
    pub dir: PathBuf,
    /// `127.0.0.1:port` of the registry standing in for Docker Hub.
    pub registry: String,
    /// Its log, with an access line per request.
    pub registry_log: PathBuf,
    /// `127.0.0.1:port` of the registry standing in for ghcr.io.
    pub ghcr: String,
    /// `127.0.0.1:port` of a registry that serves its blobs itself, with no redirect to storage (a
    /// self-hosted distribution or Harbor as the upstream): the same images as `registry`, from
    /// the same storage.
    pub self_serving: String,
    pub token_port: u16,
    pub token_log: PathBuf,
    pub storage_port: u16,
    pub storage_log: PathBuf,
    /// moto: S3 for the registry's storage, and Secrets Manager for the Lambda tests.
    pub moto_port: u16,
    pub images: Images,
    _processes: Vec<Running>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// The fixture, started on first use.
pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(start)
}

/// The Python that has the fixture's packages (pyjwt, cryptography, moto): `FIXTURE_PYTHON`, or
/// the virtual environment `scripts/test` makes.
fn python() -> String {
    if let Ok(python) = std::env::var("FIXTURE_PYTHON") {
        return python;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixture-venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    panic!(
        "the fixture's Python packages are missing: run ./scripts/test, which makes \
         target/fixture-venv, or set FIXTURE_PYTHON to a Python with pyjwt, cryptography and moto[server]"
    );
}

/// A fresh directory for this test binary's files, short enough for unix socket paths.
pub fn run_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        remove_stale_run_dirs();
        let dir = std::env::temp_dir().join(format!("registry-mirror-e2e-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the run directory");
        dir
    })
}

/// Run directories of earlier test processes that have ended: kept for reading after a failure,
/// removed by the next run.
fn remove_stale_run_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("registry-mirror-e2e-")
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn start() -> Fixture {
    let dir = run_dir().join("fixture");
    std::fs::create_dir_all(&dir).unwrap();
    let python = python();
    let mut processes = Vec::new();

    // S3 emulator.
    let moto_port = process::free_port();
    let moto_log = dir.join("moto.log");
    let mut moto = Command::new(&python);
    moto.args([
        "-m",
        "moto.server",
        "-H",
        "127.0.0.1",
        "-p",
        &moto_port.to_string(),
    ]);
    processes.push(spawn("moto", moto, &moto_log));
    wait_for_port(moto_port, "moto", &moto_log);
    let created = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "PUT",
            &format!("http://127.0.0.1:{moto_port}/registry"),
        ])
        .status()
        .expect("curl");
    assert!(created.success(), "cannot create the S3 bucket in moto");

    // The storage front, refusing two authentication mechanisms.
    let storage_port = process::free_port();
    let nginx_dir = dir.join("nginx");
    std::fs::create_dir_all(&nginx_dir).unwrap();
    let storage_log = nginx_dir.join("access.log");
    let nginx_conf = nginx_dir.join("nginx.conf");
    std::fs::write(
        &nginx_conf,
        storage_front_conf(&nginx_dir, storage_port, moto_port),
    )
    .unwrap();
    let mut nginx = Command::new(need("nginx"));
    nginx.arg("-c").arg(&nginx_conf).arg("-p").arg(&nginx_dir);
    processes.push(spawn("nginx", nginx, &nginx_dir.join("nginx.out")));
    wait_for_port(
        storage_port,
        "nginx (storage front)",
        &nginx_dir.join("error.log"),
    );

    // The token server.
    let token_log = dir.join("token.log");
    let cert = dir.join("token-cert.pem");
    let mut token = Command::new(&python);
    token
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixture/token_server.py"))
        .arg(&cert)
        .arg("fixture-issuer");
    processes.push(spawn("token server", token, &token_log));
    let token_port: u16 = wait_for_line(&token_log, "listening ", "the token server")
        .parse()
        .expect("a port");

    // The registry standing in for Docker Hub, and a second one standing in for ghcr.io, each
    // with its own service name at the same token server and its own root in the same bucket.
    let redirecting = |label: &str, service: &str| Distribution {
        label: label.to_string(),
        service: service.to_string(),
        root: label.to_string(),
        redirect: true,
    };
    let (registry, running) = start_registry(
        &dir,
        &redirecting("docker-hub", SERVICE),
        storage_port,
        token_port,
        &cert,
    );
    processes.push(running);
    let (ghcr, running) = start_registry(
        &dir,
        &redirecting("ghcr", GHCR_SERVICE),
        storage_port,
        token_port,
        &cert,
    );
    processes.push(running);
    let self_serving_registry = Distribution {
        label: "self-serving".to_string(),
        service: SERVICE.to_string(),
        root: "docker-hub".to_string(),
        redirect: false,
    };
    let (self_serving, running) = start_registry(
        &dir,
        &self_serving_registry,
        storage_port,
        token_port,
        &cert,
    );
    processes.push(running);

    let images = images::build_and_push(&dir.join("images"), &registry, &ghcr);

    Fixture {
        registry_log: dir.join("registry-docker-hub.log"),
        dir,
        registry,
        ghcr,
        self_serving,
        token_port,
        token_log,
        storage_port,
        storage_log,
        moto_port,
        images,
        _processes: processes,
    }
}

/// One CNCF distribution of the fixture: its name in the run's files, its token service name,
/// its root in the bucket, and whether it answers blob GETs with a redirect to storage.
struct Distribution {
    label: String,
    service: String,
    root: String,
    redirect: bool,
}

/// Starts CNCF distribution with token auth and S3 storage under `/<root>` in the bucket.
fn start_registry(
    dir: &Path,
    registry: &Distribution,
    storage_port: u16,
    token_port: u16,
    cert: &Path,
) -> (String, Running) {
    let port = process::free_port();
    let label = &registry.label;
    let conf = dir.join(format!("registry-{label}.yml"));
    std::fs::write(
        &conf,
        registry_conf_text(port, storage_port, token_port, cert, registry),
    )
    .unwrap();
    let log = dir.join(format!("registry-{label}.log"));
    let mut registry = Command::new(need("docker-registry"));
    // distribution's S3 driver panics at start when AWS_CA_BUNDLE is set.
    registry.arg("serve").arg(&conf).env_remove("AWS_CA_BUNDLE");
    let running = spawn(&format!("registry {label}"), registry, &log);
    wait_for_port(port, "docker-registry", &log);
    (format!("127.0.0.1:{port}"), running)
}

fn storage_front_conf(dir: &Path, port: u16, moto_port: u16) -> String {
    let d = dir.display();
    format!(
        r#"worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  # A presigned URL carries its signature in the query; with Authorization too, S3 and R2 refuse.
  map $args $presigned {{ "~(^|&)(X-Amz-Signature|Signature)=" 1; default 0; }}
  map "$presigned:$http_authorization" $two_auths {{ "~^1:.+" 1; default 0; }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 0;
    location / {{
      if ($two_auths) {{
        return 400 "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>";
      }}
      proxy_pass http://127.0.0.1:{moto_port};
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_buffering off;
      proxy_request_buffering off;
    }}
  }}
}}
"#
    )
}

fn registry_conf_text(
    port: u16,
    storage_port: u16,
    token_port: u16,
    cert: &Path,
    registry: &Distribution,
) -> String {
    let (service, root) = (&registry.service, &registry.root);
    let disable = !registry.redirect;
    format!(
        r#"version: 0.1
log:
  level: info
storage:
  s3:
    accesskey: fixture
    secretkey: fixture-secret
    region: us-east-1
    regionendpoint: http://127.0.0.1:{storage_port}
    bucket: registry
    secure: false
    v4auth: true
    rootdirectory: /{root}
  redirect:
    disable: {disable}
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
auth:
  token:
    realm: http://127.0.0.1:{token_port}/token
    service: {service}
    issuer: fixture-issuer
    rootcertbundle: {}
"#,
        cert.display()
    )
}

impl Fixture {
    /// How many manifest `GET`s of `repository` the Docker Hub stand-in has answered: what Docker
    /// Hub counts as pulls (a `HEAD` is free).
    pub fn manifest_gets(&self, repository: &str) -> usize {
        let request = format!("\"GET /v2/{repository}/manifests/");
        std::fs::read_to_string(&self.registry_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&request))
            .count()
    }

    /// How many manifest `GET`s the Docker Hub stand-in has answered, in every repository.
    pub fn all_manifest_gets(&self) -> usize {
        std::fs::read_to_string(&self.registry_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains("/manifests/"))
            .count()
    }

    /// How many presigned blob GETs have reached storage so far.
    pub fn storage_blob_gets(&self) -> usize {
        std::fs::read_to_string(&self.storage_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"GET ") && l.contains("X-Amz-Signature"))
            .count()
    }

    /// How many presigned GETs of these blobs reached storage so far.
    pub fn storage_gets_of(&self, digests: &[String]) -> usize {
        self.storage_gets_answered(digests, "")
    }

    /// The storage GETs of `digests` answered whole (`200`): not the rest of one that a store
    /// left behind by the relay fetched for itself (`206`).
    pub fn storage_whole_gets_of(&self, digests: &[String]) -> usize {
        self.storage_gets_answered(digests, "\" 200 ")
    }

    fn storage_gets_answered(&self, digests: &[String], status: &str) -> usize {
        let log = std::fs::read_to_string(&self.storage_log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("\"GET ") && l.contains("X-Amz-Signature") && l.contains(status))
            .filter(|l| {
                digests
                    .iter()
                    .any(|d| l.contains(d.trim_start_matches("sha256:")))
            })
            .count()
    }

    /// Creates a secret in moto's Secrets Manager; returns its ARN.
    pub fn create_secret(&self, name: &str, value: &str) -> String {
        let body = serde_json::json!({ "Name": name, "SecretString": value }).to_string();
        let mut curl = Command::new("curl");
        curl.args(["-sf", "-X", "POST"])
            .args(["-H", "content-type: application/x-amz-json-1.1"])
            .args(["-H", "x-amz-target: secretsmanager.CreateSecret"])
            .args([
                "-H",
                "authorization: AWS4-HMAC-SHA256 Credential=fixture/20260101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
            ])
            .arg("--data-binary")
            .arg(body)
            .arg(format!("http://127.0.0.1:{}/", self.moto_port));
        let answer: serde_json::Value =
            serde_json::from_str(&run(curl)).expect("CreateSecret JSON");
        answer["ARN"].as_str().expect("an ARN").to_string()
    }

    /// A new bucket in moto's S3, for a mirror's store; its name.
    pub fn create_bucket(&self, name: &str) -> String {
        let url = format!("http://127.0.0.1:{}/{name}", self.moto_port);
        // Made again by another test of the same binary: moto says so (409), which is fine.
        let mut curl = Command::new("curl");
        curl.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            &url,
        ]);
        let status = run(curl);
        assert!(
            matches!(status.trim(), "200" | "409"),
            "cannot create the bucket {name} in moto: {status}"
        );
        name.to_string()
    }

    /// The keys in a bucket under `prefix` (moto's ListObjectsV2, first 1000).
    pub fn bucket_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut curl = Command::new("curl");
        curl.arg("-sf").arg(format!(
            "http://127.0.0.1:{}/{bucket}?list-type=2&prefix={prefix}",
            self.moto_port
        ));
        run(curl)
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_string()))
            .collect()
    }

    /// The settings that put a mirror's store in `bucket` on moto, with the AWS variables a
    /// user would set.
    pub fn bucket_settings(&self, bucket: &str, prefix: &str) -> Vec<(String, String)> {
        [
            ("CACHE", format!("s3://{bucket}/{prefix}")),
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.moto_port),
            ),
            ("AWS_ACCESS_KEY_ID", "fixture".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "fixture-secret".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// A token straight from the upstream token server (not through the mirror).
    pub fn upstream_token(&self, scope: &str, user: Option<(&str, &str)>) -> String {
        let mut curl = Command::new("curl");
        curl.arg("-sf");
        if let Some((u, p)) = user {
            curl.arg("-u").arg(format!("{u}:{p}"));
        }
        curl.arg(format!(
            "http://127.0.0.1:{}/token?service={SERVICE}&scope={scope}",
            self.token_port
        ));
        let body = run(curl);
        let value: serde_json::Value = serde_json::from_str(&body).expect("token JSON");
        value["token"].as_str().expect("a token").to_string()
    }
}

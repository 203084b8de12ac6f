//! The mirror under test, in whichever runtime a test binary is for. Each runtime starts the mirror
//! with a set of settings and gives back where it listens and where it logs; the client suite runs
//! the same cases against every runtime.

use super::fixture::{fixture, run_dir};
use super::function_url::{self, HeadLength};
use super::process::{self, spawn, wait_for_port, Running};
use registry_mirror::registry::upstream::backend_name;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// A mirror runtime: the local server, Fastly under Viceroy, Lambda behind its function URL.
pub trait Runtime: Sync + Send + 'static {
    fn name(&self) -> &'static str;
    /// Starts a mirror with `settings` (the fixture's upstream is added by the caller).
    fn start(&self, label: &str, settings: &[(String, String)]) -> Mirror;
}

/// A running mirror.
pub struct Mirror {
    /// `127.0.0.1:port`, a bare host as dockerd needs.
    pub addr: String,
    pub log: PathBuf,
    pub _processes: Vec<Running>,
}

impl Mirror {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The request lines of the log (JSON in every runtime: `message` or `msg` is "request").
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.log_text()
            .lines()
            .filter_map(|line| {
                serde_json::from_str::<serde_json::Value>(&line[line.find('{')?..]).ok()
            })
            .filter(|v| v["message"] == "request" || v["msg"] == "request")
            .collect()
    }

    /// Request lines for `route` that answered `status`.
    pub fn count(&self, route: &str, status: u16) -> usize {
        self.requests()
            .iter()
            .filter(|r| r["route"] == route && r["status"] == status)
            .count()
    }
}

/// The local server binary, as `cargo run` builds it.
pub struct LocalServer;

impl Runtime for LocalServer {
    fn name(&self) -> &'static str {
        "local"
    }

    fn start(&self, label: &str, settings: &[(String, String)]) -> Mirror {
        let program = std::path::Path::new(env!("CARGO_BIN_EXE_registry-mirror"));
        LocalServer::start_program(program, label, settings)
    }
}

impl LocalServer {
    /// The local server from `program` (another build of it, such as the one in the image).
    pub fn start_program(
        program: &std::path::Path,
        label: &str,
        settings: &[(String, String)],
    ) -> Mirror {
        LocalServer::launch(program, process::free_port(), label, settings)
    }

    /// The local server on `port` (one another party must know before it starts).
    pub fn start_at(&self, port: u16, label: &str, settings: &[(String, String)]) -> Mirror {
        let program = std::path::Path::new(env!("CARGO_BIN_EXE_registry-mirror"));
        LocalServer::launch(program, port, label, settings)
    }

    fn launch(
        program: &std::path::Path,
        port: u16,
        label: &str,
        settings: &[(String, String)],
    ) -> Mirror {
        let addr = format!("127.0.0.1:{port}");
        let log = run_dir().join(format!("mirror-local-{label}.log"));
        let mut command = Command::new(program);
        command
            .arg("--listen")
            .arg(&addr)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            // Where the default store would go: this run's own directory, never the user's home.
            .env(
                "XDG_CACHE_HOME",
                run_dir().join(format!("xdg-cache-{label}")),
            );
        for (key, value) in settings {
            command.env(key, value);
        }
        let running = spawn(&format!("mirror {label}"), command, &log);
        wait_for_port(port, "the mirror", &log);
        Mirror {
            addr,
            log,
            _processes: vec![running],
        }
    }
}

/// The Fastly binary under Viceroy, with a `fastly.toml` whose `[local_server]` points at the
/// fixture: a backend for each fixture host, the settings in the Config Store, `TOKEN_SECRET` in the
/// Secret Store.
pub struct Viceroy;

impl Viceroy {
    /// The package `fastly compute build` left (scripts/test runs it before the tests).
    fn wasm() -> PathBuf {
        let wasm = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bin/main.wasm");
        assert!(
            wasm.exists(),
            "bin/main.wasm is missing: scripts/test builds it with `fastly compute build`"
        );
        wasm
    }

    fn binary() -> String {
        if let Ok(path) = std::env::var("VICEROY") {
            return path;
        }
        let home = std::env::var("HOME").unwrap_or_default();
        let cargo_bin = format!("{home}/.cargo/bin/viceroy");
        if std::path::Path::new(&cargo_bin).exists() {
            return cargo_bin;
        }
        super::process::need("viceroy")
    }
}

fn toml_string(value: &str) -> String {
    serde_json::to_string(value).expect("a string")
}

impl Runtime for Viceroy {
    fn name(&self) -> &'static str {
        "fastly"
    }

    fn start(&self, label: &str, settings: &[(String, String)]) -> Mirror {
        let fixture = fixture();
        let port = process::free_port();
        let addr = format!("127.0.0.1:{port}");
        let dir = run_dir().join(format!("viceroy-{label}"));
        std::fs::create_dir_all(&dir).unwrap();
        let port_of = |addr: &str| -> u16 { addr.rsplit(':').next().unwrap().parse().unwrap() };
        let (registry_port, ghcr_port) = (port_of(&fixture.registry), port_of(&fixture.ghcr));
        let mut toml = String::from(
            "manifest_version = 3\nname = \"registry-mirror-test\"\nlanguage = \"other\"\n\n",
        );
        // A test may put an upstream of its own on 127.0.0.1 (a fault front): a backend for it too.
        let own_upstreams = settings
            .iter()
            .filter_map(|(_, v)| v.strip_prefix("http://127.0.0.1:"))
            .filter_map(|port| port.trim_end_matches('/').parse::<u16>().ok());
        let mut ports = vec![
            registry_port,
            ghcr_port,
            fixture.token_port,
            fixture.storage_port,
        ];
        ports.extend(own_upstreams);
        ports.sort_unstable();
        ports.dedup();
        for backend_port in ports {
            toml.push_str(&format!(
                "[local_server.backends.{}]\nurl = \"http://127.0.0.1:{backend_port}\"\n\n",
                backend_name("127.0.0.1", backend_port)
            ));
        }
        toml.push_str(
            "[local_server.config_stores.registry_mirror_config]\nformat = \"inline-toml\"\n\n",
        );
        toml.push_str("[local_server.config_stores.registry_mirror_config.contents]\n");
        // Every setting in one key, as the README says to store them; `store-key:NAME` puts one
        // in a key of its own instead (as an older README said), to test that the mirror refuses.
        let mut secrets = Vec::new();
        let mut document = serde_json::Map::new();
        // Fastly's cache is each Viceroy process's own, fresh for every mirror: the base
        // settings' CACHE=none (which keeps one local server's store from the next test) would
        // only turn off what Fastly has by default.
        let settings = settings
            .iter()
            .filter(|(k, v)| !(k == "CACHE" && v == "none"));
        for (key, value) in settings {
            if registry_mirror::config::is_secret(key) {
                secrets.push(format!(
                    "{{ key = {}, data = {} }}",
                    toml_string(key),
                    toml_string(value)
                ));
            } else if let Some(key) = key.strip_prefix("store-key:") {
                toml.push_str(&format!("{key} = {}\n", toml_string(value)));
            } else {
                document.insert(key.clone(), value.clone().into());
            }
        }
        toml.push_str(&format!(
            "{} = {}\n",
            registry_mirror::platforms::edge::SETTINGS_KEY,
            toml_string(&serde_json::Value::Object(document).to_string())
        ));
        toml.push_str(&format!(
            "\n[local_server.secret_stores]\nregistry_mirror_secrets = [{}]\n",
            secrets.join(", ")
        ));
        let config = dir.join("fastly.toml");
        std::fs::write(&config, toml).unwrap();
        let log = run_dir().join(format!("mirror-fastly-{label}.log"));
        let mut command = Command::new(Self::binary());
        command
            .arg("-C")
            .arg(&config)
            .arg("--addr")
            .arg(&addr)
            .arg(Self::wasm());
        let running = spawn(&format!("viceroy {label}"), command, &log);
        wait_for_port(port, "viceroy", &log);
        Mirror {
            addr,
            log,
            _processes: vec![running],
        }
    }
}

/// The Lambda binary behind the function URL stand-in (`function_url`), which speaks the Runtime API
/// to the binary's instances and answers clients in the invoke mode of `template` (the project's
/// `template.yaml` unless a test gives a copy). `TOKEN_SECRET` comes from Secrets Manager (moto)
/// through `TOKEN_SECRET_ARN`, as the SAM template sets it up.
pub struct LambdaFunctionUrl {
    pub template: Option<PathBuf>,
    pub head_length: HeadLength,
}

/// The template's own mode; nothing documents that a `HEAD` answer keeps its `Content-Length`,
/// so the suite runs where it does not.
pub const LAMBDA: LambdaFunctionUrl = LambdaFunctionUrl {
    template: None,
    head_length: HeadLength::Dropped,
};

/// Instances of the function: Lambda runs one request per instance at a time.
const LAMBDA_INSTANCES: usize = 3;

impl LambdaFunctionUrl {
    pub fn template(&self) -> PathBuf {
        self.template.clone().unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("template.yaml")
        })
    }
}

impl Runtime for LambdaFunctionUrl {
    fn name(&self) -> &'static str {
        "lambda"
    }

    fn start(&self, label: &str, settings: &[(String, String)]) -> Mirror {
        let fixture = fixture();
        let log = run_dir().join(format!("mirror-lambda-{label}.log"));
        let mode = function_url::invoke_mode_in(&self.template());
        let front = function_url::start(mode, self.head_length);

        let mut env: Vec<(String, String)> = settings
            .iter()
            .filter(|(k, _)| !registry_mirror::config::is_secret(k))
            .cloned()
            .collect();
        // Each secret from Secrets Manager (moto), through `<KEY>_ARN`, as the SAM template sets
        // `TOKEN_SECRET` up.
        let secrets: Vec<_> = settings
            .iter()
            .filter(|(k, _)| registry_mirror::config::is_secret(k))
            .collect();
        for (key, secret) in &secrets {
            let name = format!("registry-mirror-{label}-{key}-{}", std::process::id());
            let arn = fixture.create_secret(&name, secret);
            env.push((format!("{key}_ARN"), arn));
        }
        if !secrets.is_empty() {
            env.push((
                "AWS_ENDPOINT_URL_SECRETS_MANAGER".into(),
                format!("http://127.0.0.1:{}", fixture.moto_port),
            ));
        }
        let mut processes = Vec::new();
        for _ in 0..LAMBDA_INSTANCES {
            let mut function = Command::new(env!("CARGO_BIN_EXE_registry-mirror-lambda"));
            // What Lambda sets for a provided.al2023 function (the Runtime API as host:port).
            function
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("AWS_LAMBDA_RUNTIME_API", &front.runtime_api)
                .env("AWS_LAMBDA_FUNCTION_NAME", "registry-mirror")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
                .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/registry-mirror")
                .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
                .env("AWS_ACCESS_KEY_ID", "fixture")
                .env("AWS_SECRET_ACCESS_KEY", "fixture-secret")
                .env("AWS_SESSION_TOKEN", "fixture-session")
                .env("AWS_REGION", "us-east-1")
                .env("RUST_LOG", "info");
            for (key, value) in &env {
                function.env(key, value);
            }
            processes.push(spawn(&format!("lambda function {label}"), function, &log));
        }
        super::process::wait_for_line(&log, "{", "the Lambda function");
        Mirror {
            addr: format!("127.0.0.1:{}", front.url_port),
            log,
            _processes: processes,
        }
    }
}

pub const TOKEN_SECRET: &str = "e2e-token-secret-0123456789abcdef";

/// The mirror host name that serves the ghcr.io stand-in alone (`REGISTRY_GHCR`).
pub const GHCR_HOST: &str = "ghcr.localtest";

/// The settings every mirror in the tests has: Docker Hub and ghcr.io are the fixture's
/// registries, and search is the fixture's.
pub fn base_settings() -> Vec<(String, String)> {
    let fixture = fixture();
    vec![
        (
            "UPSTREAM_DOCKER_IO".to_string(),
            format!("http://{}", fixture.registry),
        ),
        (
            "UPSTREAM_GHCR_IO".to_string(),
            format!("http://{}", fixture.ghcr),
        ),
        ("REGISTRY_GHCR".to_string(), GHCR_HOST.to_string()),
        // No content store unless a test asks for one: the local server's default would keep
        // what one test pulls for the next (the store has tests of its own).
        ("CACHE".to_string(), "none".to_string()),
        (
            "UPSTREAM_SEARCH".to_string(),
            format!("http://127.0.0.1:{}", fixture.token_port),
        ),
    ]
}

/// The base settings and `extra`.
pub fn with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut settings = base_settings();
    settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    settings
}

/// The mirrors of one test binary, started on first use.
pub struct Mirrors {
    runtime: &'static dyn Runtime,
    open: OnceLock<Mirror>,
    whitelist: OnceLock<Mirror>,
    pass: OnceLock<Mirror>,
}

impl Mirrors {
    pub const fn new(runtime: &'static dyn Runtime) -> Mirrors {
        Mirrors {
            runtime,
            open: OnceLock::new(),
            whitelist: OnceLock::new(),
            pass: OnceLock::new(),
        }
    }

    pub fn runtime(&self) -> &'static dyn Runtime {
        self.runtime
    }

    /// No whitelist: anyone may pull.
    pub fn open(&self) -> &Mirror {
        self.open
            .get_or_init(|| self.runtime.start("open", &base_settings()))
    }

    /// `WHITE_LIST=alice,bob`.
    pub fn whitelist(&self) -> &Mirror {
        self.whitelist.get_or_init(|| {
            self.runtime.start(
                "whitelist",
                &with(&[("WHITE_LIST", "alice,bob"), ("TOKEN_SECRET", TOKEN_SECRET)]),
            )
        })
    }

    /// `BLOB_REDIRECTS=pass`: clients follow storage redirects themselves.
    pub fn pass(&self) -> &Mirror {
        self.pass.get_or_init(|| {
            self.runtime
                .start("pass", &with(&[("BLOB_REDIRECTS", "pass")]))
        })
    }
}

/// A runtime whose Docker Hub is the fixture behind a fault front of its own, with more settings
/// (a store, a secret): for tests of what the mirror does when Docker Hub fails.
pub struct BehindFront {
    pub runtime: &'static dyn Runtime,
    pub extra: fn() -> Vec<(String, String)>,
    front: OnceLock<super::faults::FaultFront>,
}

impl BehindFront {
    pub const fn new(
        runtime: &'static dyn Runtime,
        extra: fn() -> Vec<(String, String)>,
    ) -> BehindFront {
        BehindFront {
            runtime,
            extra,
            front: OnceLock::new(),
        }
    }

    pub fn front(&self) -> &super::faults::FaultFront {
        self.front.get_or_init(|| {
            let f = fixture();
            super::faults::FaultFront::start(&f.registry, f.token_port, f.storage_port)
        })
    }
}

impl Runtime for BehindFront {
    fn name(&self) -> &'static str {
        self.runtime.name()
    }

    fn start(&self, label: &str, settings: &[(String, String)]) -> Mirror {
        let extra = (self.extra)();
        let mut settings: Vec<(String, String)> = settings
            .iter()
            .filter(|(k, _)| k != "UPSTREAM_DOCKER_IO" && !extra.iter().any(|(e, _)| e == k))
            .cloned()
            .collect();
        settings.extend(extra);
        settings.push((
            "UPSTREAM_DOCKER_IO".into(),
            format!("http://{}", self.front().addr),
        ));
        // A label of its own: the files of a mirror (its log) are named by it.
        self.runtime.start(&format!("front-{label}"), &settings)
    }
}

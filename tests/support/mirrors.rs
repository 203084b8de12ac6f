//! The mirror under test, in whichever runtime a test binary is for. Each runtime starts the mirror
//! with a set of settings and gives back where it listens and where it logs; the client suite runs
//! the same cases against every runtime.

use super::fixture::{fixture, run_dir};
use super::process::{self, spawn, wait_for_port, Running};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// A mirror runtime: the local server, Fastly under Viceroy, Lambda under its emulator.
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

    /// Request lines in the log for `route` that answered `status`.
    pub fn count(&self, route: &str, status: u16) -> usize {
        let route = format!("route=\"{route}\"");
        let status = format!("status={status}");
        self.log_text()
            .lines()
            .filter(|l| l.contains(&route) && l.contains(&status))
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
        let port = process::free_port();
        let addr = format!("127.0.0.1:{port}");
        let log = run_dir().join(format!("mirror-local-{label}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_registry-mirror"));
        command
            .arg("--listen")
            .arg(&addr)
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "info");
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

pub const TOKEN_SECRET: &str = "e2e-token-secret-0123456789abcdef";

/// The settings every mirror in the tests has: Docker Hub is the fixture.
fn base_settings() -> Vec<(String, String)> {
    vec![(
        "UPSTREAM_DOCKER_IO".to_string(),
        format!("http://{}", fixture().registry),
    )]
}

fn with(extra: &[(&str, &str)]) -> Vec<(String, String)> {
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

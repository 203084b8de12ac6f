//! The local server: `cargo run --release` serves the mirror on 127.0.0.1:5000.
//!
//! A thin adapter: reads the settings, opens the store, and hands the listener to `serve`, which
//! accepts connections (plain or TLS) and hands each request to the shared driver.

#[cfg(not(target_arch = "wasm32"))]
mod server {
    use registry_mirror::native::commands;
    use registry_mirror::native::drive::{Driver, DriverSettings};
    use registry_mirror::native::server::acme::AcmeSettings;
    use registry_mirror::native::server::connections::ConnectionSettings;
    use registry_mirror::native::server::metrics::Metrics;
    use registry_mirror::native::server::tls::{self, Certificates, TlsFiles};
    use registry_mirror::native::store::disk as disk_store;
    use registry_mirror::native::store::ContentStore;
    use registry_mirror::native::{logging, server as serve};
    use registry_mirror::store::StoreSetting;
    use registry_mirror::{Config, Mirror};
    use std::net::SocketAddr;
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::sync::Arc;

    const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
    const SETTINGS: &str = "Settings come from the environment (see docs/settings.md): LISTEN, WHITE_LIST,\n\
        TOKEN_SECRET, REGISTRIES, UPSTREAM_<NAME> (UPSTREAM_DOCKER_IO, ...), REGISTRY_<NAME>\n\
        (REGISTRY_GHCR, ...), UPSTREAM_SEARCH, PUBLIC_URL, TRUST_FORWARDED_HEADERS, BLOB_REDIRECTS,\n\
        LARGE_BLOB_BYTES, STORAGE_RELAY, UPSTREAM_TIMEOUT_SECS, CLIENT_IDLE_TIMEOUT_SECS,\n\
        MAX_CONNECTIONS_PER_IP, CACHE, CACHE_MAX_BYTES, TAG_STALE_MAX_SECS, TAG_TTL_SECS,\n\
        UPSTREAM_AUTH_<NAME>, ALLOW_NETWORKS, TLS_CERT, TLS_KEY, ACME_DOMAINS, ACME_CONTACT,\n\
        ACME_DIRECTORY, ACME_CA_ROOT, SHUTDOWN_GRACE_SECS, METRICS_LISTEN, RUST_LOG, LOG_FORMAT,\n\
        HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY.\n\
        The subcommands work on the store CACHE names (a directory, or a bucket with the AWS\n\
        settings), beside a server that may be running on it.";

    /// A pull-through mirror of Docker Hub and other registries. With no subcommand, it serves.
    #[derive(clap::Parser)]
    #[command(name = "registry-mirror", version, after_help = SETTINGS)]
    #[command(args_conflicts_with_subcommands = true)]
    struct Cli {
        /// Where to listen (else LISTEN, else 127.0.0.1:5000)
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        #[command(subcommand)]
        command: Option<Command>,
    }

    #[derive(clap::Subcommand)]
    enum Command {
        /// Serve the mirror (what runs with no subcommand)
        Serve {
            /// Where to listen (else LISTEN, else 127.0.0.1:5000)
            #[arg(long, value_name = "ADDR")]
            listen: Option<String>,
        },
        Warm(commands::warm::Args),
        Purge(commands::purge::Args),
        Verify(commands::verify::Args),
        Usage(commands::usage::Args),
        Doctor(commands::doctor::Args),
    }

    pub fn main() -> ExitCode {
        use clap::Parser;
        let cli = Cli::parse();
        let listen = match cli.command {
            None => cli.listen,
            Some(Command::Serve { listen }) => listen,
            Some(Command::Warm(args)) => return commands::warm::run(args),
            Some(Command::Purge(args)) => return commands::purge::run(args),
            Some(Command::Doctor(args)) => return commands::doctor::run(args),
            Some(Command::Verify(args)) => return commands::verify::run(args),
            Some(Command::Usage(args)) => return commands::usage::run(args),
        };
        let listen = match listen_address(listen) {
            Ok(listen) => listen,
            Err(e) => {
                eprintln!("registry-mirror: {e}");
                return ExitCode::from(2);
            }
        };
        match run(listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("registry-mirror: {}", registry_mirror::config::redact(&e));
                ExitCode::FAILURE
            }
        }
    }

    /// `--listen`, else `LISTEN`, else the default.
    fn listen_address(listen: Option<String>) -> Result<SocketAddr, String> {
        let listen = listen
            .or_else(|| std::env::var("LISTEN").ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        listen
            .parse()
            .map_err(|_| format!("{listen:?} is not an address such as {DEFAULT_LISTEN}"))
    }

    fn run(listen: SocketAddr) -> Result<(), String> {
        logging::init("text")?;
        let env = |key: &str| std::env::var(key).ok();
        let mut config = Config::from_lookup(env)?;
        let settings = DriverSettings::from_lookup(env)?;
        let connections = ConnectionSettings::from_lookup(env)?;
        let grace = serve::shutdown_grace(env)?;
        let metrics_listen: Option<SocketAddr> =
            match env("METRICS_LISTEN").filter(|v| !v.is_empty()) {
                Some(addr) => Some(addr.parse().map_err(|_| {
                    format!("METRICS_LISTEN: {addr:?} is not an address such as 127.0.0.1:9090")
                })?),
                None => None,
            };
        let certificates = TlsFiles::from_lookup(env)?
            .map(Certificates::load)
            .transpose()?;
        let store = ContentStore::open_configured(&mut config, disk_store::default_dir())?;
        // The ACME account and certificates live in the store's directory.
        let acme_dir = match &config.store {
            StoreSetting::Directory(dir) => Some(PathBuf::from(dir).join("acme")),
            _ => disk_store::default_dir().map(|d| d.join("acme")),
        };
        let acme = AcmeSettings::from_lookup(env, acme_dir)?;
        if acme.is_some() && certificates.is_some() {
            return Err("ACME_DOMAINS and TLS_CERT: choose one way to HTTPS".to_string());
        }
        let config_store = config.store.clone();
        let registries = config.registries.clone();
        let mut driver = Driver::new(Mirror::new(config), settings)?;
        if let Some(store) = &store {
            driver = driver.with_store(store.clone());
        }
        // The /usage figures are kept in a directory store, beside its objects.
        let usage_file = match &config_store {
            StoreSetting::Directory(dir) => Some(PathBuf::from(dir).join("usage.json")),
            _ => None,
        };
        let metrics =
            metrics_listen.map(|_| Metrics::keeping_usage_in(usage_file, Some(registries)));
        if let Some(metrics) = &metrics {
            driver = driver.with_metrics(metrics.clone());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            let config = driver.mirror().config();
            let registries: Vec<String> = config
                .registries
                .iter()
                .map(|r| format!("{} -> {}", r.name, r.upstream))
                .collect();
            tracing::info!(
                listen = %local,
                tls = certificates.is_some() || acme.is_some(),
                registries = registries.join(", "),
                whitelist = config.whitelist.as_ref().map_or(0, |w| w.len()),
                store = ?config.store,
                "registry-mirror listening"
            );
            let tls = match (certificates, acme) {
                (Some(certificates), _) => {
                    tls::reload_on_hangup(certificates.clone());
                    Some(certificates.server_config()?)
                }
                (None, Some(acme)) => Some(tls::server_config(acme.start()?, true)?),
                (None, None) => None,
            };
            if let Some(store) = &store {
                store.sweep_while_serving();
            }
            if let (Some(addr), Some(metrics)) = (metrics_listen, &metrics) {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("METRICS_LISTEN: cannot listen on {addr}: {e}"))?;
                let store = store.clone();
                let used = move || store.as_ref().and_then(|s| s.used_bytes());
                registry_mirror::native::server::metrics::serve(listener, metrics.clone(), used);
                tracing::info!(metrics = %addr, "metrics at /metrics, usage at /usage");
            }
            let options = serve::Options {
                connections,
                tls,
                grace,
                metrics,
            };
            serve::serve(listener, Arc::new(driver), options).await
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    server::main()
}

/// On wasm32 this binary has nothing to serve with; the Fastly binary is the one to build there.
#[cfg(target_arch = "wasm32")]
fn main() {}

//! The local server: `cargo run --release` serves the mirror on 127.0.0.1:5000.
//!
//! A thin adapter: hyper accepts connections and hands each request to the shared driver, which
//! runs the core and streams upstream bodies back.

#[cfg(not(target_arch = "wasm32"))]
mod server {
    use http_body_util::BodyExt;
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use registry_mirror::connections::{ConnectionSettings, IdleWriteTimeout, PerAddress};
    use registry_mirror::content_store::ContentStore;
    use registry_mirror::drive::{Driver, DriverSettings};
    use registry_mirror::mirror::MAX_REQUEST_BODY;
    use registry_mirror::{disk_store, logging, Config, Mirror};
    use std::net::SocketAddr;
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
    const USAGE: &str = "usage: registry-mirror [--listen ADDR]\n\n\
        Serves a pull-through mirror of Docker Hub and other registries. Settings come from the\n\
        environment (see README.md): LISTEN, WHITE_LIST, TOKEN_SECRET, REGISTRIES,\n\
        UPSTREAM_<NAME> (UPSTREAM_DOCKER_IO, ...), REGISTRY_<NAME> (REGISTRY_GHCR, ...),\n\
        UPSTREAM_SEARCH, PUBLIC_URL, TRUST_FORWARDED_HEADERS, BLOB_REDIRECTS, LARGE_BLOB_BYTES,\n\
        STORAGE_RELAY, UPSTREAM_TIMEOUT_SECS, CLIENT_IDLE_TIMEOUT_SECS, MAX_CONNECTIONS_PER_IP,\n\
        CACHE, CACHE_MAX_BYTES,\n\
        RUST_LOG, LOG_FORMAT.";

    pub fn main() -> ExitCode {
        let listen = match parse_args(std::env::args().skip(1)) {
            Ok(Some(listen)) => listen,
            Ok(None) => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("registry-mirror: {e}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        match run(listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("registry-mirror: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// `Ok(None)` for `--help`.
    fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<SocketAddr>, String> {
        let mut listen = std::env::var("LISTEN").ok().filter(|v| !v.is_empty());
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-h" | "--help" => return Ok(None),
                "--listen" => listen = Some(args.next().ok_or("--listen needs an address")?),
                other => match other.strip_prefix("--listen=") {
                    Some(value) => listen = Some(value.to_string()),
                    None => return Err(format!("unknown argument {other:?}")),
                },
            }
        }
        let listen = listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        listen
            .parse()
            .map(Some)
            .map_err(|_| format!("{listen:?} is not an address such as {DEFAULT_LISTEN}"))
    }

    fn run(listen: SocketAddr) -> Result<(), String> {
        logging::init("text")?;
        let env = |key: &str| std::env::var(key).ok();
        let mut config = Config::from_lookup(env)?;
        let settings = DriverSettings::from_lookup(env)?;
        let connections = ConnectionSettings::from_lookup(env)?;
        let store = ContentStore::open_configured(&mut config, disk_store::default_dir())?;
        let mut driver = Driver::new(Mirror::new(config), settings)?;
        if let Some(store) = store {
            driver = driver.with_store(store);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runtime: {e}"))?;
        runtime.block_on(serve(listen, Arc::new(driver), connections))
    }

    async fn serve(
        listen: SocketAddr,
        driver: Arc<Driver>,
        connections: ConnectionSettings,
    ) -> Result<(), String> {
        let per_address = PerAddress::new(connections.max_per_address);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let registries: Vec<String> = driver
            .mirror()
            .config()
            .registries
            .iter()
            .map(|r| format!("{} -> {}", r.name, r.upstream))
            .collect();
        tracing::info!(
            listen = %local,
            registries = registries.join(", "),
            whitelist = driver.mirror().config().whitelist.as_ref().map_or(0, |w| w.len()),
            store = ?driver.mirror().config().store,
            "registry-mirror listening"
        );
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => {
                    tracing::info!("shutting down");
                    return Ok(());
                }
            };
            // One address holding its share of connections gets no more.
            let Some(slot) = per_address.admit(peer.ip()) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let driver = driver.clone();
            let idle = connections.client_idle_timeout;
            tokio::spawn(async move {
                let _slot = slot;
                let service = hyper::service::service_fn(move |request| {
                    let driver = driver.clone();
                    async move {
                        let answer = answer(&driver, request, peer.ip()).await;
                        Ok::<_, std::convert::Infallible>(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .max_buf_size(64 * 1024)
                    .serve_connection(IdleWriteTimeout::new(TokioIo::new(stream), idle), service)
                    .await;
            });
        }
    }

    async fn answer(
        driver: &Driver,
        request: http::Request<Incoming>,
        client: std::net::IpAddr,
    ) -> http::Response<reqwest::Body> {
        let started = Instant::now();
        let (head, body) = request.into_parts();
        let body = read_request_body(body).await;
        let (response, summary) = driver.handle(&head, "http", &body, Some(client)).await;
        let bytes = logging::content_length(response.headers());
        logging::request_line(
            &head.method,
            response.status().as_u16(),
            bytes,
            started.elapsed(),
            &summary,
        );
        response
    }

    /// Reads at most `MAX_REQUEST_BODY + 1` bytes, so that the core can tell a body too large.
    async fn read_request_body(mut body: Incoming) -> Vec<u8> {
        let mut bytes = Vec::new();
        let read = async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                    if bytes.len() > MAX_REQUEST_BODY {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
        bytes
    }

    async fn shutdown_signal() {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => return ctrl_c.await.unwrap_or(()),
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    server::main()
}

/// On wasm32 this binary has nothing to serve with; the Fastly binary is the one to build there.
#[cfg(target_arch = "wasm32")]
fn main() {}

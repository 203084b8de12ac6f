//! The Fastly Compute adapter (wasm32-wasip1): takes the client's request, drives the shared core,
//! sends each upstream request to a backend, and answers, streaming bodies host-side.
//!
//! Settings come from the Config Store `registry_mirror_config` (the same keys as the local
//! server's environment), `TOKEN_SECRET` from the Secret Store `registry_mirror_secrets`.
//! Immutable content (blobs, manifests by digest) is kept in Fastly's cache, keyed by registry and
//! digest, so the second pull of a layer at a POP costs no upstream traffic.
//!
//! Backend requests per client request, well under Fastly's 32: `/token` 2 (the upstream's `/v2/`
//! challenge, then its token service); a manifest or tag list 1; a blob 2 (the registry, then the
//! storage it redirects to), at most 6 with the most redirects the core follows; a cache hit 0.

#[cfg(target_arch = "wasm32")]
mod edge {
    use fastly::cache::core::{CacheKey, Transaction};
    use fastly::http::FramingHeadersMode;
    use fastly::{Backend, Body, ConfigStore, Request, Response, SecretStore};
    use http::{header, Method};
    use registry_mirror::mirror::{FetchError, Incoming, Mirror, Step, Summary, MAX_REQUEST_BODY};
    use registry_mirror::upstream::backend_name;
    use registry_mirror::Config;
    use std::io::Read;
    use std::time::{Duration, Instant, SystemTime};

    pub const CONFIG_STORE: &str = "registry_mirror_config";
    pub const SECRET_STORE: &str = "registry_mirror_secrets";
    /// Fastly's largest cacheable object.
    const MAX_CACHED_OBJECT: u64 = 100 * 1000 * 1000;
    /// How long immutable content may stay in the cache (Fastly may evict it sooner).
    const CACHE_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
    const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
    /// The headers a cached object is served with.
    const CACHED_HEADERS: &[&str] = &[
        "content-type",
        "content-length",
        "docker-content-digest",
        "etag",
    ];

    pub fn main() {
        let started = Instant::now();
        let mut client = Request::from_client();
        let method = client.get_method().clone();
        let config = match load_config() {
            Ok(config) => config,
            Err(e) => {
                println!(
                    "{}",
                    serde_json::json!({"msg": "configuration error", "error": e})
                );
                let error = registry_mirror::errors::RegistryError::new(
                    registry_mirror::errors::ErrorCode::Unavailable,
                    "the mirror is misconfigured; see its log",
                );
                send(Response::from(error.into_response().map(Body::from)));
                return;
            }
        };
        let mirror = Mirror::new(config);
        let body = if method == Method::POST {
            let mut bytes = Vec::new();
            let _ = client
                .take_body()
                .take(MAX_REQUEST_BODY as u64 + 1)
                .read_to_end(&mut bytes);
            bytes
        } else {
            Vec::new()
        };
        let scheme = client.get_url().scheme().to_string();
        let (head, _) = http::Request::<Body>::from(client).into_parts();
        let outcome = drive(&mirror, &head, &scheme, &body);
        log(&method, &outcome, started.elapsed());
    }

    struct Outcome {
        status: u16,
        bytes: Option<u64>,
        summary: Summary,
        cache: &'static str,
        upstream_requests: u32,
    }

    impl Outcome {
        fn of(
            response: &Response,
            summary: Summary,
            cache: &'static str,
            upstream_requests: u32,
        ) -> Outcome {
            Outcome {
                status: response.get_status().as_u16(),
                bytes: content_length(response),
                summary,
                cache,
                upstream_requests,
            }
        }
    }

    fn drive(mirror: &Mirror, head: &http::request::Parts, scheme: &str, body: &[u8]) -> Outcome {
        let incoming = Incoming { head, scheme, body };
        let mut step = mirror.start(&incoming, SystemTime::now());
        let mut last_body: Option<Body> = None;
        let mut transaction: Option<Transaction> = None;
        let mut cache = "-";
        let mut upstream_requests = 0;
        loop {
            step = match step {
                Step::Answer(response, summary) => {
                    let response = Response::from(response.map(Body::from));
                    let outcome = Outcome::of(&response, summary, cache, upstream_requests);
                    send(response);
                    return outcome;
                }
                Step::Relay(parts, summary) => {
                    let body = last_body.take().unwrap_or_else(Body::new);
                    let response = Response::from(http::Response::from_parts(parts, body));
                    let mut outcome = Outcome::of(&response, summary, cache, upstream_requests);
                    let storable = head.method == Method::GET
                        && outcome.status == 200
                        && outcome.bytes.is_some_and(|b| b <= MAX_CACHED_OBJECT);
                    match transaction.take() {
                        Some(tx) if storable => {
                            outcome.cache = "miss-stored";
                            serve_and_store(tx, response);
                        }
                        Some(tx) => {
                            let _ = tx.cancel_insert_or_update();
                            send(response);
                        }
                        None => send(response),
                    }
                    return outcome;
                }
                Step::Fetch(fetch) => {
                    if let (Some(key), "-") = (&fetch.cache_key, cache) {
                        cache = "miss";
                        if let Ok(tx) = Transaction::lookup(CacheKey::from(key.clone())).execute() {
                            if let Some(response) = tx
                                .found()
                                .and_then(|found| cached_response(&found, &head.method))
                            {
                                let summary = fetch.pending.into_summary();
                                let outcome =
                                    Outcome::of(&response, summary, "hit", upstream_requests);
                                send(response);
                                return outcome;
                            }
                            if tx.must_insert_or_update() {
                                transaction = Some(tx);
                            }
                        }
                    }
                    if !fetch.delay.is_zero() {
                        std::thread::sleep(fetch.delay);
                    }
                    upstream_requests += 1;
                    match fetch_upstream(fetch.request, fetch.read_body) {
                        Ok((head, small, stream)) => {
                            last_body = stream;
                            mirror.resume(fetch.pending, head, small, SystemTime::now())
                        }
                        Err(error) => mirror.fail(fetch.pending, error),
                    }
                }
            };
        }
    }

    /// An upstream response: its head, its body when it was read, or the body to relay.
    type Fetched = (http::response::Parts, Option<Vec<u8>>, Option<Body>);

    /// Sends one upstream request to the backend for its host.
    fn fetch_upstream(
        request: http::Request<Vec<u8>>,
        read_body: Option<usize>,
    ) -> Result<Fetched, FetchError> {
        let backend = backend_for(request.uri())?;
        let mut request = Request::from(request.map(Body::from));
        request.set_pass(true);
        let response = request.send(backend).map_err(|e| {
            let cause = format!("{:?}", e.root_cause());
            if cause.contains("Timeout") {
                FetchError::Timeout
            } else {
                FetchError::Connect
            }
        })?;
        let (head, body) = http::Response::<Body>::from(response).into_parts();
        match read_body {
            None => Ok((head, None, Some(body))),
            Some(limit) => {
                let mut bytes = Vec::new();
                body.take(limit as u64 + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|_| FetchError::Other)?;
                if bytes.len() > limit {
                    return Err(FetchError::BodyTooLarge);
                }
                Ok((head, Some(bytes), None))
            }
        }
    }

    /// The static backend named for `host:port` (`registry_1_docker_io_443`), or a dynamic one
    /// where the service allows them.
    fn backend_for(url: &http::Uri) -> Result<Backend, FetchError> {
        let host = url.host().ok_or(FetchError::Other)?;
        let https = url.scheme_str() == Some("https");
        let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let name = backend_name(host, port);
        if let Ok(backend) = Backend::from_name(&name) {
            if backend.exists() {
                return Ok(backend);
            }
        }
        let mut builder = Backend::builder(&name, format!("{host}:{port}"))
            .override_host(host)
            .connect_timeout(Duration::from_secs(10))
            .first_byte_timeout(UPSTREAM_TIMEOUT)
            .between_bytes_timeout(Duration::from_secs(60));
        if https {
            builder = builder
                .enable_ssl()
                .sni_hostname(host)
                .check_certificate(host);
        }
        builder.finish().map_err(|e| {
            println!(
                "{}",
                serde_json::json!({
                    "msg": "no backend",
                    "backend": name,
                    "target": format!("{host}:{port}"),
                    "error": format!("{e:?}"),
                    "fix": "declare this backend in the service, or ask Fastly to enable dynamic backends",
                })
            );
            FetchError::NoBackend
        })
    }

    /// A cached object as a response: the stored head, and the body unless the client asked HEAD.
    fn cached_response(found: &fastly::cache::core::Found, method: &Method) -> Option<Response> {
        let headers: Vec<(String, String)> = serde_json::from_slice(&found.user_metadata()).ok()?;
        let mut response = Response::from_status(200);
        for (name, value) in headers {
            response.append_header(name, value);
        }
        response.set_header("docker-distribution-api-version", "registry/2.0");
        if *method != Method::HEAD {
            response.set_body(found.to_stream().ok()?);
        }
        Some(response)
    }

    /// Stores the upstream body in the cache while the client reads it back from there.
    fn serve_and_store(tx: Transaction, mut response: Response) {
        let length = content_length(&response).unwrap_or(0);
        let head: Vec<(String, String)> = CACHED_HEADERS
            .iter()
            .filter_map(|name| {
                response
                    .get_header_str(*name)
                    .map(|v| (name.to_string(), v.to_string()))
            })
            .collect();
        let metadata = serde_json::to_vec(&head).unwrap_or_default();
        let body = response.take_body();
        match tx
            .insert(CACHE_MAX_AGE)
            .known_length(length)
            .user_metadata(metadata.into())
            .execute_and_stream_back()
        {
            Ok((mut writer, found)) => {
                writer.append(body);
                let _ = writer.finish();
                match found.to_stream() {
                    Ok(stream) => response.set_body(stream),
                    Err(_) => response.set_body(Body::new()),
                }
                send(response);
            }
            Err(_) => {
                response.set_body(body);
                send(response);
            }
        }
    }

    fn content_length(response: &Response) -> Option<u64> {
        response
            .get_header_str(header::CONTENT_LENGTH)
            .and_then(|v| v.parse().ok())
    }

    /// Sends the response, keeping `Content-Length` as given (HEAD answers and streamed blobs too).
    fn send(mut response: Response) {
        if response.contains_header(header::CONTENT_LENGTH) {
            response.set_framing_headers_mode(FramingHeadersMode::ManuallyFromHeaders);
        }
        response.send_to_client();
    }

    fn load_config() -> Result<Config, String> {
        let config = ConfigStore::try_open(CONFIG_STORE).ok();
        let secrets = SecretStore::open(SECRET_STORE).ok();
        Config::from_lookup(|key| {
            if key == "TOKEN_SECRET" {
                let secret = secrets.as_ref()?.get(key)?;
                String::from_utf8(secret.plaintext().to_vec()).ok()
            } else {
                config.as_ref()?.get(key)
            }
        })
    }

    /// The same fields as the local server's log line, as JSON on stdout (Fastly's log tailing).
    fn log(method: &Method, outcome: &Outcome, elapsed: Duration) {
        let s = &outcome.summary;
        println!(
            "{}",
            serde_json::json!({
                "msg": "request",
                "method": method.as_str(),
                "route": s.route,
                "repository": s.repository.as_deref().unwrap_or("-"),
                "upstream": s.upstream.as_deref().unwrap_or("-"),
                "status": outcome.status,
                "bytes": outcome.bytes.unwrap_or(0),
                "duration_ms": elapsed.as_secs_f64() * 1000.0,
                "user": s.user.as_deref().unwrap_or("-"),
                "cache": outcome.cache,
                "upstream_requests": outcome.upstream_requests,
            })
        );
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {
    edge::main()
}

/// This binary is for Fastly Compute only.
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("registry-mirror-fastly runs on Fastly Compute: cargo build --release --target wasm32-wasip1 --bin registry-mirror-fastly");
    std::process::exit(2);
}

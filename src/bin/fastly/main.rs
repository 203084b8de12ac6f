//! The Fastly Compute adapter (wasm32-wasip1): takes the client's request, drives the shared core,
//! sends each upstream request to a backend, and answers, streaming bodies host-side.
//!
//! Settings come from one key of the Config Store `registry_mirror_config` (see the core's `edge`
//! module: Fastly limits lookups per request), `TOKEN_SECRET` from the Secret Store
//! `registry_mirror_secrets`. Immutable content (blobs, manifests by digest) is kept in Fastly's
//! cache, so the second pull of a layer at a POP costs no upstream traffic. Backend requests per
//! client request, well under Fastly's 32: at most 6 (a blob through the most redirects).

#[cfg(target_arch = "wasm32")]
mod cache;
#[cfg(target_arch = "wasm32")]
mod upstream;

#[cfg(target_arch = "wasm32")]
mod compute {
    use crate::cache;
    use crate::upstream::fetch_upstream;
    use fastly::cache::core::Transaction;
    use fastly::http::FramingHeadersMode;
    use fastly::{Body, ConfigStore, Request, Response, SecretStore};
    use http::{header, Method};
    use registry_mirror::mirror::{Incoming, Mirror, Step, Summary, MAX_REQUEST_BODY};
    use registry_mirror::platforms::edge::{self, Outcome};
    use registry_mirror::store::StoreSetting;
    use registry_mirror::Config;
    use std::cell::Cell;
    use std::io::Read;
    use std::time::{Instant, SystemTime};

    pub const CONFIG_STORE: &str = "registry_mirror_config";
    pub const SECRET_STORE: &str = "registry_mirror_secrets";

    pub fn main() {
        let started = Instant::now();
        let mut client = Request::from_client();
        let method = client.get_method().clone();
        let lookups = Cell::new(0);
        let config = match load_config(&lookups) {
            Ok(config) => config,
            Err(e) => {
                println!(
                    "{}",
                    serde_json::json!({"msg": "configuration error", "error": registry_mirror::config::redact(&e)})
                );
                let error = registry_mirror::registry::errors::RegistryError::new(
                    registry_mirror::registry::errors::ErrorCode::Unavailable,
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
        let address = client.get_client_ip_addr();
        let (head, _) = http::Request::<Body>::from(client).into_parts();
        let incoming = Incoming {
            head: &head,
            scheme: &scheme,
            body: &body,
            client: address,
        };
        let outcome = drive(&mirror, &incoming);
        cache::keep(&outcome.summary.remember);
        println!(
            "{}",
            outcome.log_line(&method, started.elapsed(), lookups.get())
        );
    }

    fn outcome(response: &Response, summary: Summary, n: u32) -> Outcome {
        Outcome {
            status: response.get_status().as_u16(),
            bytes: content_length(response),
            cache: summary.store.unwrap_or("-"),
            summary,
            upstream_requests: n,
        }
    }

    fn drive(mirror: &Mirror, incoming: &Incoming) -> Outcome {
        let mut step = mirror.start(incoming, SystemTime::now());
        let mut last_body: Option<Body> = None;
        // What a store lookup found, held until it is served; or the miss this request fills.
        let mut found = None;
        let mut transaction: Option<Transaction> = None;
        let mut upstream_requests = 0;
        loop {
            step = match step {
                Step::Answer(response, summary) => {
                    let response = Response::from(response.map(Body::from));
                    let outcome = outcome(&response, summary, upstream_requests);
                    send(response);
                    return outcome;
                }
                Step::Relay(parts, summary) => {
                    let body = last_body.take().unwrap_or_else(Body::new);
                    let response = Response::from(http::Response::from_parts(parts, body));
                    let outcome = outcome(&response, summary, upstream_requests);
                    if let Some(tx) = transaction.take() {
                        let _ = tx.cancel_insert_or_update();
                    }
                    send(response);
                    return outcome;
                }
                Step::RelayAndStore(parts, summary, write) => {
                    let body = last_body.take().unwrap_or_else(Body::new);
                    let response = Response::from(http::Response::from_parts(parts, Body::new()));
                    let outcome = outcome(&response, summary, upstream_requests);
                    match transaction.take() {
                        Some(tx) => cache::relay_and_store(tx, response, body, *write),
                        None => send(response.with_body(body)),
                    }
                    return outcome;
                }
                Step::Lookup(lookup) => {
                    let (hit, tx) = cache::look_up(&lookup.key);
                    transaction = tx;
                    let (object, stored) = hit.unzip();
                    found = object;
                    mirror.resume_lookup(lookup.pending, stored)
                }
                Step::Serve(parts, _key, summary) => {
                    let body = found.as_ref().map_or_else(Body::new, cache::found_body);
                    let response = Response::from(http::Response::from_parts(parts, body));
                    let outcome = outcome(&response, summary, upstream_requests);
                    send(response);
                    return outcome;
                }
                Step::Recall(recall) => {
                    mirror.resume_recall(recall.pending, cache::read_record(&recall.key))
                }
                // Clients are never sent to Fastly's cache itself: the core asks this of buckets.
                Step::Fill(fill) => mirror.resume_filled(fill.pending, false),
                Step::ServeSigned(_, _, summary) => {
                    let error = registry_mirror::registry::errors::RegistryError::new(
                        registry_mirror::registry::errors::ErrorCode::Unavailable,
                        "this runtime has no signed URLs",
                    );
                    let response = Response::from(error.into_response().map(Body::from));
                    let outcome = outcome(&response, summary, upstream_requests);
                    send(response);
                    return outcome;
                }
                Step::Fetch(fetch) => {
                    if !fetch.delay.is_zero() {
                        std::thread::sleep(fetch.delay);
                    }
                    upstream_requests += 1;
                    match fetch_upstream(fetch.request, fetch.read_body) {
                        Ok((head, small, stream)) => {
                            last_body = stream;
                            mirror.resume(fetch.pending, head, small, SystemTime::now())
                        }
                        Err(error) => mirror.fail(fetch.pending, error, SystemTime::now()),
                    }
                }
            };
        }
    }

    pub fn content_length(response: &Response) -> Option<u64> {
        response
            .get_header_str(header::CONTENT_LENGTH)
            .and_then(|v| v.parse().ok())
    }

    /// Sends the response, keeping `Content-Length` as given (HEAD answers and streamed blobs too).
    pub fn send(mut response: Response) {
        if response.contains_header(header::CONTENT_LENGTH) {
            response.set_framing_headers_mode(FramingHeadersMode::ManuallyFromHeaders);
        }
        response.send_to_client();
    }

    /// The settings from the one key that holds them all, in at most [`edge::MAX_LOOKUPS`] store
    /// lookups, each with `try_get` (which answers an error where `get` would panic).
    fn load_config(lookups: &Cell<u32>) -> Result<Config, String> {
        let config = ConfigStore::try_open(CONFIG_STORE).ok();
        let secrets = SecretStore::open(SECRET_STORE).ok();
        let counted = || {
            lookups.set(lookups.get() + 1);
            match lookups.get() <= edge::MAX_LOOKUPS {
                true => Ok(()),
                false => Err("too many store lookups for one request".to_string()),
            }
        };
        let lookup = |key: &str| -> Result<Option<String>, String> {
            counted()?;
            Ok(config.as_ref().and_then(|c| c.try_get(key).ok().flatten()))
        };
        // Fail closed: a whitelist left in a key of its own must not leave the mirror open.
        if lookup("WHITE_LIST")?.is_some() {
            return Err(format!(
                "WHITE_LIST is a key of its own: every setting goes in the {} key",
                edge::SETTINGS_KEY
            ));
        }
        let settings = match lookup(edge::SETTINGS_KEY)? {
            Some(document) => edge::parse_settings(&document)?,
            None => Default::default(),
        };
        let mut secret_values = std::collections::HashMap::new();
        for key in edge::SECRETS {
            counted()?;
            let value = secrets
                .as_ref()
                .and_then(|s| s.try_get(key).ok().flatten())
                .and_then(|s| String::from_utf8(s.plaintext().to_vec()).ok());
            secret_values.insert(*key, value);
        }
        let mut config = Config::from_lookup(|key| match secret_values.get(key) {
            Some(secret) => secret.clone(),
            None => settings.get(key).cloned(),
        })?;
        // Fastly's cache is the store here (`cache`), unless CACHE=none; hashing in the guest
        // bounds what it keeps.
        if config.store != StoreSetting::None {
            config.store = StoreSetting::Edge;
        }
        config.store_max_object = Some(edge::MAX_VERIFIED_OBJECT);
        Ok(config)
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {
    compute::main()
}

/// This binary is for Fastly Compute only.
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("registry-mirror-fastly runs on Fastly Compute: cargo build --release --target wasm32-wasip1 --bin registry-mirror-fastly");
    std::process::exit(2);
}

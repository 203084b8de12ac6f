//! The AWS Lambda adapter: a function URL (`InvokeMode: BUFFERED`, see the core's `lambda` module
//! for why) in front of the shared core, driven by the same async driver as the local server.
//! Every answer goes out as one buffered response (payload format 2.0); there is no streaming path,
//! so the function cannot answer in a mode its URL does not speak.
//!
//! Settings are the local server's environment variables, set by `template.yaml`. `TOKEN_SECRET`
//! is read from Secrets Manager at start (`TOKEN_SECRET_ARN`), never stored in the configuration.
//! Blobs larger than `LARGE_BLOB_BYTES` (at most 4 MiB) are answered with their storage redirect.

#[cfg(not(target_arch = "wasm32"))]
mod secrets;

#[cfg(not(target_arch = "wasm32"))]
mod function {
    use super::secrets;
    use http_body_util::BodyExt;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
    use lambda_http::lambda_runtime;
    use lambda_http::request::LambdaRequest;
    use lambda_http::{service_fn, LambdaEvent};
    use registry_mirror::mirror::MAX_REQUEST_BODY;
    use registry_mirror::native::drive::{Driver, DriverSettings};
    use registry_mirror::native::logging;
    use registry_mirror::native::store::ContentStore;
    use registry_mirror::platforms::lambda;
    use registry_mirror::registry::errors::{ErrorCode, RegistryError};
    use registry_mirror::{config, Mirror};
    use std::collections::HashMap;
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::Instant;

    pub fn main() -> ExitCode {
        let started = Instant::now();
        // rustls needs a process-wide crypto provider before the first client (Secrets Manager).
        let _ = rustls::crypto::ring::default_provider().install_default();
        if let Err(e) = logging::init("json") {
            eprintln!("registry-mirror-lambda: {e}");
            return ExitCode::FAILURE;
        }
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("registry-mirror-lambda: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        runtime.block_on(async {
            let driver = match setup().await {
                Ok(driver) => Arc::new(driver),
                Err(e) => {
                    let e = config::redact(&e);
                    tracing::error!(error = %e, "registry-mirror-lambda cannot start");
                    report_init_error(&e).await;
                    return ExitCode::FAILURE;
                }
            };
            tracing::info!(
                init_ms = started.elapsed().as_secs_f64() * 1000.0,
                "registry-mirror-lambda ready"
            );
            let handler = service_fn(move |event: LambdaEvent<LambdaRequest>| {
                let driver = driver.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&driver, event.payload).await) }
            });
            match lambda_runtime::run(handler).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "the Lambda runtime stopped");
                    ExitCode::FAILURE
                }
            }
        })
    }

    /// The settings, with each secret (`TOKEN_SECRET`, `UPSTREAM_AUTH_<NAME>`) fetched from
    /// Secrets Manager when `<KEY>_ARN` names it.
    async fn setup() -> Result<Driver, String> {
        let mut settings: HashMap<String, String> = std::env::vars().collect();
        let arns: Vec<(String, String)> = settings
            .iter()
            .filter_map(|(k, v)| Some((k.strip_suffix("_ARN")?.to_string(), v.clone())))
            .filter(|(key, arn)| config::is_secret(key) && !arn.is_empty())
            .collect();
        for (key, arn) in arns {
            if settings.get(&key).is_none_or(|v| v.is_empty()) {
                let secret = secrets::get_secret_string(&arn)
                    .await
                    .map_err(|e| format!("{key}_ARN: {e}"))?;
                settings.insert(key, secret);
            }
        }
        let lookup = |key: &str| settings.get(key).cloned();
        let mut config = lambda::config(lookup)?;
        // A store only where CACHE names one (an instance's /tmp is small and its own).
        let store = ContentStore::open_configured(&mut config, None)?;
        let driver = Driver::new(Mirror::new(config), DriverSettings::from_lookup(lookup)?)?;
        Ok(match store {
            Some(store) => driver.with_store(store),
            None => driver,
        })
    }

    /// Tells the Runtime API why the function cannot start (`POST /runtime/init/error`), so that
    /// Lambda answers the waiting request with an error instead of trying again in silence.
    async fn report_init_error(message: &str) {
        let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
            return;
        };
        let diagnostic = serde_json::json!({
            "errorType": "Runtime.InitError",
            "errorMessage": message,
        });
        let _ = reqwest::Client::new()
            .post(format!("http://{api}/2018-06-01/runtime/init/error"))
            .header("lambda-runtime-function-error-type", "Runtime.InitError")
            .body(diagnostic.to_string())
            .send()
            .await;
    }

    async fn answer(driver: &Driver, event: LambdaRequest) -> ApiGatewayV2httpResponse {
        let started = Instant::now();
        // The path and query exactly as the function URL received them: the URI lambda_http
        // builds also takes the Host header in, which must not bend the path.
        let (raw_target, client) = match &event {
            LambdaRequest::ApiGatewayV2(ag) => (
                ag.raw_path.as_ref().map(|path| {
                    match ag.raw_query_string.as_deref().filter(|q| !q.is_empty()) {
                        Some(query) => format!("{path}?{query}"),
                        None => path.clone(),
                    }
                }),
                // The address the function URL saw the client connect from.
                ag.request_context
                    .http
                    .source_ip
                    .as_deref()
                    .and_then(|ip| ip.parse().ok()),
            ),
            _ => (None, None),
        };
        let event: lambda_http::Request = event.into();
        let (mut head, body) = event.into_parts();
        if let Some(uri) = raw_target.and_then(|t| t.parse::<http::Uri>().ok()) {
            head.uri = uri;
        }
        let body: &[u8] = body.as_ref();
        let body = &body[..body.len().min(MAX_REQUEST_BODY + 1)];
        // A function URL is HTTPS; a front in the tests says otherwise.
        let scheme = match head
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
        {
            Some("http") => "http",
            _ => "https",
        };
        let (response, summary) = driver.handle(&head, scheme, body, client).await;
        let response = buffered(response).await;
        logging::request_line(
            &head.method,
            response.status_code as u16,
            logging::content_length(&response.headers),
            started.elapsed(),
            &summary,
        );
        response
    }

    /// The whole answer as payload format 2.0: the body read up to the largest a buffered
    /// response holds, base64-encoded unless it is text.
    async fn buffered(response: http::Response<reqwest::Body>) -> ApiGatewayV2httpResponse {
        let (parts, body) = response.into_parts();
        let mut out = ApiGatewayV2httpResponse::default();
        out.status_code = i64::from(parts.status.as_u16());
        out.headers = parts.headers;
        let limit = lambda::LARGEST_RELAYED_BLOB as usize;
        let bytes = match http_body_util::Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(_) => {
                let error = RegistryError::new(
                    ErrorCode::Unavailable,
                    "the upstream answer was larger than a Lambda response holds, or broke off",
                )
                .into_response();
                out.status_code = 503;
                out.headers = error.headers().clone();
                error.into_body()
            }
        };
        if !bytes.is_empty() {
            out.body = Some(match String::from_utf8(bytes) {
                Ok(text) => lambda_http::Body::Text(text),
                Err(e) => {
                    out.is_base64_encoded = true;
                    lambda_http::Body::Binary(e.into_bytes())
                }
            });
        }
        out
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    function::main()
}

/// This binary is for AWS Lambda only.
#[cfg(target_arch = "wasm32")]
fn main() {}

//! The AWS Lambda adapter: a function URL with response streaming (`InvokeMode: RESPONSE_STREAM`)
//! in front of the shared core, driven by the same async driver as the local server. Blob bodies
//! stream; every other answer (tokens, manifests, errors, HEAD) is a buffered response, since a
//! function URL renames `Content-Length` on streamed ones and dockerd refuses a manifest without it.
//!
//! Settings are the local server's environment variables, set by `template.yaml`. `TOKEN_SECRET`
//! is read from Secrets Manager at start (`TOKEN_SECRET_ARN`), never stored in the configuration.
//! Blobs larger than `LARGE_BLOB_BYTES` are answered with their storage redirect by default
//! (`BLOB_REDIRECTS=large`): Lambda caps a streamed response at 200 MB and slows it to 2 MB/s after
//! the first 6 MB.

#[cfg(not(target_arch = "wasm32"))]
mod secrets;

#[cfg(not(target_arch = "wasm32"))]
mod function {
    use super::secrets;
    use http_body_util::{BodyDataStream, BodyExt};
    use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
    use lambda_http::lambda_runtime::{self, FunctionResponse, MetadataPrelude, StreamResponse};
    use lambda_http::request::LambdaRequest;
    use lambda_http::{service_fn, LambdaEvent};
    use registry_mirror::drive::{Driver, DriverSettings};
    use registry_mirror::mirror::MAX_REQUEST_BODY;
    use registry_mirror::{logging, Config, Mirror};
    use std::collections::HashMap;
    use std::process::ExitCode;
    use std::sync::Arc;
    use std::time::Instant;

    /// The most of a non-blob answer (a manifest, a tag list, an error) read to buffer it; under
    /// Lambda's 6 MB buffered-response cap, and above distribution's 4 MiB manifest limit.
    const MAX_BUFFERED: usize = 5 * 1024 * 1024;

    type Answer = FunctionResponse<ApiGatewayV2httpResponse, BodyDataStream<reqwest::Body>>;

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
                    tracing::error!(error = %e, "registry-mirror-lambda cannot start");
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

    /// The settings, with `TOKEN_SECRET` fetched from Secrets Manager when `TOKEN_SECRET_ARN` names it.
    async fn setup() -> Result<Driver, String> {
        let mut settings: HashMap<String, String> = std::env::vars().collect();
        let arn = settings
            .get("TOKEN_SECRET_ARN")
            .filter(|v| !v.is_empty())
            .cloned();
        if let (Some(arn), None) = (arn, settings.get("TOKEN_SECRET").filter(|v| !v.is_empty())) {
            let secret = secrets::get_secret_string(&arn)
                .await
                .map_err(|e| format!("TOKEN_SECRET_ARN: {e}"))?;
            settings.insert("TOKEN_SECRET".to_string(), secret);
        }
        let lookup = |key: &str| settings.get(key).cloned();
        let config = Config::from_lookup(lookup)?;
        Driver::new(Mirror::new(config), DriverSettings::from_lookup(lookup)?)
    }

    async fn answer(driver: &Driver, event: LambdaRequest) -> Answer {
        let started = Instant::now();
        // The path and query exactly as the function URL received them: the URI lambda_http
        // builds also takes the Host header in, which must not bend the path.
        let raw_target = match &event {
            LambdaRequest::ApiGatewayV2(ag) => ag.raw_path.as_ref().map(|path| {
                match ag.raw_query_string.as_deref().filter(|q| !q.is_empty()) {
                    Some(query) => format!("{path}?{query}"),
                    None => path.clone(),
                }
            }),
            _ => None,
        };
        let event: lambda_http::Request = event.into();
        let (mut head, body) = event.into_parts();
        if let Some(uri) = raw_target.and_then(|t| t.parse::<http::Uri>().ok()) {
            head.uri = uri;
        }
        let body: &[u8] = body.as_ref();
        let body = &body[..body.len().min(MAX_REQUEST_BODY + 1)];
        // A function URL is HTTPS; the emulator and proxies in front say otherwise here.
        let scheme = match head
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
        {
            Some("http") => "http",
            _ => "https",
        };
        let (response, summary) = driver.handle(&head, scheme, body).await;
        let status = response.status();
        let bytes = logging::content_length(response.headers());
        logging::request_line(
            &head.method,
            status.as_u16(),
            bytes,
            started.elapsed(),
            &summary,
        );
        // A function URL renames Content-Length on streamed responses, and dockerd and containerd
        // need it on manifests: everything but a blob's body goes out buffered, which keeps it.
        let stream =
            summary.route == "blob" && head.method == http::Method::GET && status.is_success();
        if stream {
            streamed(response)
        } else {
            buffered(response).await
        }
    }

    fn streamed(response: http::Response<reqwest::Body>) -> Answer {
        let (parts, body) = response.into_parts();
        FunctionResponse::StreamingResponse(StreamResponse {
            metadata_prelude: MetadataPrelude {
                headers: parts.headers,
                status_code: parts.status,
                cookies: Vec::new(),
            },
            stream: BodyDataStream::new(body),
        })
    }

    async fn buffered(response: http::Response<reqwest::Body>) -> Answer {
        let (parts, body) = response.into_parts();
        let mut out = ApiGatewayV2httpResponse::default();
        out.status_code = i64::from(parts.status.as_u16());
        out.headers = parts.headers;
        let bytes = match http_body_util::Limited::new(body, MAX_BUFFERED)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes().to_vec(),
            Err(_) => {
                let error = registry_mirror::errors::RegistryError::new(
                    registry_mirror::errors::ErrorCode::Unavailable,
                    "the upstream answer was too large or broke off",
                )
                .into_response();
                out.status_code = 503;
                out.headers = error.headers().clone();
                error.into_body()
            }
        };
        if !bytes.is_empty() {
            let is_text = std::str::from_utf8(&bytes).is_ok();
            out.is_base64_encoded = !is_text;
            out.body = Some(match String::from_utf8(bytes) {
                Ok(text) => lambda_http::Body::Text(text),
                Err(e) => lambda_http::Body::Binary(e.into_bytes()),
            });
        }
        FunctionResponse::BufferedResponse(out)
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    function::main()
}

/// This binary is for AWS Lambda only.
#[cfg(target_arch = "wasm32")]
fn main() {}

//! The client suite against the Lambda binary behind a function URL as strict as AWS's, in the
//! invoke mode `template.yaml` gives it.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::mirrors::LAMBDA;

client_suite!(LAMBDA);

/// A blob over `LARGE_BLOB_BYTES` reaches the client as a redirect to storage, not through the
/// function; the pull is still whole and right.
#[test]
fn big_layers_take_the_redirect_path() {
    support::suite::big_layers_are_redirected(&MIRRORS);
}

/// Nothing AWS documents says whether a buffered answer to `HEAD` keeps its `Content-Length`; the
/// suite runs where it is dropped. Here dockerd and containerd pull where it is kept as the function
/// set it, and where it becomes the empty body's 0.
mod head_lengths {
    use super::support;
    use support::function_url::HeadLength;
    use support::mirrors::{LambdaFunctionUrl, Mirrors};

    static KEPT: LambdaFunctionUrl = LambdaFunctionUrl {
        template: None,
        head_length: HeadLength::Kept,
    };
    static ZERO: LambdaFunctionUrl = LambdaFunctionUrl {
        template: None,
        head_length: HeadLength::Zero,
    };
    static MIRRORS_KEPT: Mirrors = Mirrors::new(&KEPT);
    static MIRRORS_ZERO: Mirrors = Mirrors::new(&ZERO);

    #[test]
    fn clients_pull_where_a_head_keeps_its_length() {
        support::suite::dockerd_pulls_short_names_through_registry_mirrors(&MIRRORS_KEPT);
        support::suite::ctr_fetches_full_and_short_names(&MIRRORS_KEPT);
    }

    #[test]
    fn clients_pull_where_a_head_length_becomes_zero() {
        support::suite::dockerd_pulls_short_names_through_registry_mirrors(&MIRRORS_ZERO);
        support::suite::ctr_fetches_full_and_short_names(&MIRRORS_ZERO);
    }
}

/// The same binary behind a function URL whose template says `RESPONSE_STREAM`: every answer
/// reaches clients as the raw JSON of a buffered response, and pulls fail. This is what the suite
/// would meet if the template and the binary disagreed.
#[test]
fn a_flipped_invoke_mode_fails_the_pulls() {
    use support::function_url::HeadLength;
    use support::mirrors::{base_settings, LambdaFunctionUrl, Runtime};
    let dir = support::fixture::run_dir().join("flipped-template");
    std::fs::create_dir_all(&dir).unwrap();
    let template = std::fs::read_to_string(LAMBDA.template()).unwrap();
    let flipped = template.replace("InvokeMode: BUFFERED", "InvokeMode: RESPONSE_STREAM");
    assert_ne!(template, flipped, "template.yaml says BUFFERED");
    std::fs::write(dir.join("template.yaml"), flipped).unwrap();
    let runtime = LambdaFunctionUrl {
        template: Some(dir.join("template.yaml")),
        head_length: HeadLength::Dropped,
    };
    let mirror = runtime.start("flipped", &base_settings());
    let (status, out) = support::suite::curl(&mirror, "/v2/", &["-i"]);
    assert_eq!(status, 200, "{out}");
    assert!(out.contains(r#""statusCode":401"#), "{out}");
    // The challenge is inside the JSON, not a header of the answer.
    let head = &out[..out.find("\r\n\r\n").unwrap_or(out.len())];
    assert!(
        !head.to_ascii_lowercase().contains("www-authenticate"),
        "{out}"
    );
    let pulled =
        support::clients::skopeo_copy(&format!("{}/library/alpine:v2s2", mirror.addr), None, &[]);
    let error = pulled.expect_err("skopeo pulled through a function URL in the wrong mode");
    assert!(error.contains("schema version"), "{error}");
}

/// A function that cannot start (here `WHITE_LIST` without `TOKEN_SECRET`) says why through the
/// Runtime API's `init/error`, and the function URL answers 502, as AWS does; the reason is in the
/// function's log.
#[test]
fn a_function_that_cannot_start_answers_502() {
    use support::mirrors::with;
    let settings = with(&[("WHITE_LIST", "alice")]);
    support::suite::refuses_to_serve(&LAMBDA, "cannot-start", &settings, 502, "TOKEN_SECRET");
}

/// The function URL stand-in itself, driven through its Runtime API by hand: the rules the binary
/// never meets (it answers buffered, and within the caps) must hold too.
mod front {
    use super::support::function_url::{self, HeadLength, InvokeMode};

    /// Sends one client request through a front in `mode`, answers it as an instance would with
    /// `payload` (streamed or not), and returns the client's status, headers and body.
    fn exchange(
        mode: InvokeMode,
        streaming: bool,
        payload: Vec<u8>,
    ) -> (u16, http::HeaderMap, Vec<u8>, serde_json::Value) {
        let front = function_url::start(mode, HeadLength::Dropped);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let request = client
                .get(format!("http://127.0.0.1:{}/v2/x?a=1", front.url_port))
                .header("accept", "one")
                .header("accept", "two")
                .header("cookie", "c=1; d=2")
                .send();
            let request = tokio::spawn(request);
            let api = format!("http://{}/2018-06-01/runtime", front.runtime_api);
            let next = client
                .get(format!("{api}/invocation/next"))
                .send()
                .await
                .unwrap();
            let id = next.headers()["lambda-runtime-aws-request-id"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(next.headers().contains_key("lambda-runtime-deadline-ms"));
            let event: serde_json::Value = next.json().await.unwrap();
            let mut post = client
                .post(format!("{api}/invocation/{id}/response"))
                .body(payload);
            if streaming {
                post = post.header("lambda-runtime-function-response-mode", "streaming");
            }
            assert_eq!(post.send().await.unwrap().status(), 202);
            let response = request.await.unwrap().unwrap();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap().to_vec();
            (status, headers, body, event)
        })
    }

    fn streamed_payload() -> Vec<u8> {
        let mut payload =
            br#"{"statusCode":201,"headers":{"content-length":"5","x-a":"b"},"cookies":["k=v"]}"#
                .to_vec();
        payload.extend([0u8; 8]);
        payload.extend(b"hello");
        payload
    }

    #[test]
    fn the_event_is_payload_format_2() {
        let buffered = br#"{"statusCode":200,"body":"ok"}"#.to_vec();
        let (status, _, body, event) = exchange(InvokeMode::Buffered, false, buffered);
        assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["rawPath"], "/v2/x");
        assert_eq!(event["rawQueryString"], "a=1");
        assert_eq!(event["headers"]["accept"], "one,two");
        assert_eq!(event["cookies"], serde_json::json!(["c=1", "d=2"]));
        assert!(event["headers"].get("cookie").is_none());
    }

    #[test]
    fn a_streamed_answer_has_its_content_length_renamed() {
        let (status, headers, body, _) =
            exchange(InvokeMode::ResponseStream, true, streamed_payload());
        assert_eq!(status, 201);
        assert_eq!(headers["x-amzn-remapped-content-length"], "5");
        assert!(!headers.contains_key("content-length"));
        assert_eq!(headers["set-cookie"], "k=v");
        assert_eq!(body, b"hello");
    }

    #[test]
    fn an_answer_in_the_other_mode_reaches_the_client_raw() {
        let (status, _, body, _) = exchange(InvokeMode::Buffered, true, streamed_payload());
        assert_eq!((status, body), (200, streamed_payload()));
        let buffered = br#"{"statusCode":401,"body":"no"}"#.to_vec();
        let (status, _, body, _) = exchange(InvokeMode::ResponseStream, false, buffered.clone());
        assert_eq!((status, body), (200, buffered));
    }

    #[test]
    fn a_buffered_payload_over_6_mb_is_a_502() {
        let body = "a".repeat(6_000_000);
        let payload = serde_json::to_vec(&serde_json::json!({"statusCode": 200, "body": body}));
        let (status, _, _, _) = exchange(InvokeMode::Buffered, false, payload.unwrap());
        assert_eq!(status, 502);
    }
}

/// A `WHITE_LIST` that names nobody must not open the function: it cannot start, and says why.
#[test]
fn a_whitelist_naming_nobody_keeps_the_function_closed() {
    use support::mirrors::{with, TOKEN_SECRET};
    let settings = with(&[("WHITE_LIST", ","), ("TOKEN_SECRET", TOKEN_SECRET)]);
    support::suite::refuses_to_serve(&LAMBDA, "whitelist-nobody", &settings, 502, "names nobody");
}

/// Each instance counts wrong passwords on its own: with three warm instances, at most fifteen
/// reach Docker Hub before every instance answers 429.
#[test]
fn failed_logins_are_throttled() {
    support::suite::failed_logins_are_throttled(&LAMBDA, 15);
}

/// The account comes from Secrets Manager (`UPSTREAM_AUTH_DOCKER_IO_ARN`).
#[test]
fn the_mirrors_account_serves_anonymous_clients() {
    support::suite::the_mirrors_account_serves_anonymous_clients(&LAMBDA);
}

/// The function's settings with its store in a new bucket (under `fn`, as the template's is under
/// `mirror`), and its Docker Hub the fixture behind a fault front of its own; and the bucket.
fn bucket_behind_a_front(
    name: &str,
) -> (support::faults::FaultFront, Vec<(String, String)>, String) {
    let f = support::fixture::fixture();
    let bucket = f.create_bucket(name);
    let front = support::faults::FaultFront::start(&f.registry, f.token_port, f.storage_port);
    let mut settings: Vec<(String, String)> = support::mirrors::with(&[])
        .into_iter()
        .filter(|(k, _)| k != "CACHE" && k != "UPSTREAM_DOCKER_IO")
        .collect();
    settings.extend(f.bucket_settings(&bucket, "fn"));
    settings.push((
        "UPSTREAM_DOCKER_IO".into(),
        format!("http://{}", front.addr),
    ));
    (front, settings, bucket)
}

/// Every blob `GET` the function answered after its first `logged` log lines was a redirect to
/// the bucket.
fn assert_blobs_sent_to_the_bucket(mirror: &support::mirrors::Mirror, logged: usize) {
    let blob_answers: Vec<_> = mirror.requests()[logged..]
        .iter()
        .filter(|r| r["route"] == "blob" && r["method"] == "GET")
        .cloned()
        .collect();
    assert!(!blob_answers.is_empty());
    for answer in blob_answers {
        assert_eq!(
            answer["status"], 307,
            "a stored blob not sent to the bucket: {answer}"
        );
    }
}

/// With a bucket (`CACHE=s3://…`, as the template sets it), layers of any size come through it:
/// a 64 MiB layer, past what a function URL can answer, is copied into the bucket by the function
/// and the client is redirected to a signed URL of it. Pulled again, every stored blob is such a
/// redirect: storage sees no request (counted at a front of this mirror's own), and the function
/// moves no blob.
#[test]
fn layers_of_any_size_come_through_the_bucket() {
    use std::sync::atomic::Ordering;
    use support::fixture::fixture;
    use support::images::{BIG, V2S2};
    use support::mirrors::Runtime;
    use support::suite::assert_same_as_direct;
    let f = fixture();
    let (front, settings, bucket) = bucket_behind_a_front("lambda-store");
    let mirror = LAMBDA.start("bucket", &settings);
    for reference in [BIG, V2S2] {
        assert_same_as_direct(&mirror, reference, &[], None);
    }
    let keys = f.bucket_keys(&bucket, "fn/v1/docker.io/blobs/");
    let big = f.images.get(BIG).blob_digests.clone();
    for blob in &big {
        let hex = blob.split_once(':').unwrap().1;
        assert!(
            keys.iter().any(|k| k.ends_with(hex)),
            "{blob} is not in the bucket"
        );
    }
    let blobs = front.storage_requests.load(Ordering::SeqCst);
    assert!(blobs > 0, "the first pulls fetched nothing from storage");
    let logged = mirror.requests().len();
    for reference in [BIG, V2S2] {
        assert_same_as_direct(&mirror, reference, &[], None);
    }
    assert_eq!(
        front.storage_requests.load(Ordering::SeqCst),
        blobs,
        "blobs were fetched from storage again"
    );
    assert_blobs_sent_to_the_bucket(&mirror, logged);
}

/// The store is the bucket; anonymous clients' tokens are signed (`TOKEN_SECRET`), so that every
/// instance knows them for anonymous.
static LAMBDA_BEHIND_FRONT: support::mirrors::BehindFront =
    support::mirrors::BehindFront::new(&LAMBDA, || {
        let f = support::fixture::fixture();
        let bucket = f.create_bucket("lambda-stale");
        let mut settings = f.bucket_settings(&bucket, "fn");
        settings.push(("TOKEN_SECRET".into(), support::mirrors::TOKEN_SECRET.into()));
        settings
    });

static STALE: support::mirrors::Mirrors = support::mirrors::Mirrors::new(&LAMBDA_BEHIND_FRONT);

#[test]
fn stored_images_pull_while_docker_hub_throttles_or_is_down() {
    support::suite::stored_images_pull_while_docker_hub_fails(&STALE, LAMBDA_BEHIND_FRONT.front());
}

#[test]
fn allowed_networks_pull_without_login() {
    support::suite::allowed_networks_pull_without_login(&LAMBDA);
}

/// The bucket serves a private layer only to whom Docker Hub lets read it, and only under its
/// own repository.
#[test]
fn the_bucket_keeps_private_layers_private() {
    use support::mirrors::Runtime;
    let f = support::fixture::fixture();
    let bucket = f.create_bucket("lambda-private");
    let mut settings: Vec<(String, String)> = support::mirrors::with(&[])
        .into_iter()
        .filter(|(k, _)| k != "CACHE")
        .collect();
    settings.extend(f.bucket_settings(&bucket, "fn"));
    let mirror = LAMBDA.start("bucket-private", &settings);
    support::suite::stored_private_layers_stay_private(&mirror);
}

/// A registry that serves its blobs itself, with no redirect to storage (a self-hosted
/// distribution or Harbor as `UPSTREAM_DOCKER_IO`): with the bucket, a 64 MiB layer is copied
/// into it and the client sent there, so skopeo and dockerd pull it whole; without one, the
/// answer is an error that names the setting that fixes it, given before the body is read.
#[test]
fn layers_from_a_registry_that_serves_its_own_blobs() {
    use support::clients::Dockerd;
    use support::fixture::fixture;
    use support::images::BIG;
    use support::mirrors::Runtime;
    use support::suite::{assert_docker_pulled, assert_same_as_direct, curl, mirror_token};
    let f = fixture();
    let bucket = f.create_bucket("lambda-self-serving");
    let upstream = format!("http://{}", f.self_serving);
    let settings = |bucket: Option<&str>| {
        let mut settings: Vec<(String, String)> = support::mirrors::with(&[])
            .into_iter()
            .filter(|(k, _)| k != "UPSTREAM_DOCKER_IO" && (bucket.is_none() || k != "CACHE"))
            .collect();
        if let Some(bucket) = bucket {
            settings.extend(f.bucket_settings(bucket, "fn"));
        }
        settings.push(("UPSTREAM_DOCKER_IO".into(), upstream.clone()));
        settings
    };
    let mirror = LAMBDA.start("self-serving", &settings(Some(&bucket)));
    assert_same_as_direct(&mirror, BIG, &[], None);
    let dockerd = Dockerd::start(&mirror.addr);
    let (ok, out) = dockerd.docker(None, &["pull", "big"]);
    assert!(ok, "docker pull big: {out}");
    assert_docker_pulled(&dockerd, "big", f.images.get(BIG));
    let keys = f.bucket_keys(&bucket, "fn/v1/docker.io/blobs/");
    let layer = f.images.get(BIG).blob_digests.last().unwrap().clone();
    let hex = layer.split_once(':').unwrap().1;
    assert!(
        keys.iter().any(|k| k.ends_with(hex)),
        "the layer is not in the bucket"
    );

    let plain = LAMBDA.start("self-serving-no-bucket", &settings(None));
    let token = mirror_token(&plain, "/token?scope=repository:library/big:pull", &[]);
    let (status, out) = curl(
        &plain,
        &format!("/v2/library/big/blobs/{layer}"),
        &["-H", &format!("Authorization: Bearer {token}")],
    );
    assert_eq!(status, 503, "{out}");
    assert!(out.contains("CACHE"), "the error names no setting: {out}");
}

/// With the CloudFront relay (`EnableCloudFrontRelay=true`), clients that reach only the relay
/// get stored blobs through it: the function's signed URLs of the bucket are rewritten to the
/// relay's `/_storage/bucket/` path (`STORAGE_RELAY`, as the template sets it), and the relay's
/// bucket origin (a stand-in as strict as CloudFront's: the origin's own Host, the whole query
/// string, no `Authorization`) serves them from the bucket, behind the fixture's front that
/// refuses a second credential. The bucket's host is never asked directly.
#[test]
fn relay_users_reach_stored_blobs_through_the_relay() {
    use std::sync::atomic::Ordering;
    use support::fixture::fixture;
    use support::images::{BIG, V2S2};
    use support::mirrors::{Mirror, Runtime};
    use support::suite::assert_same_as_direct;
    let f = fixture();
    let bucket = f.create_bucket("lambda-relay");
    // The bucket's REST host: moto behind the storage front.
    let bucket_host = format!("127.0.0.1:{}", f.storage_port);
    let relay = support::cloudfront::Relay::start(&bucket_host);
    let mut settings: Vec<(String, String)> = support::mirrors::with(&[])
        .into_iter()
        .filter(|(k, _)| k != "CACHE")
        .collect();
    settings.extend(
        f.bucket_settings(&bucket, "fn")
            .into_iter()
            .filter(|(k, _)| k != "AWS_ENDPOINT_URL"),
    );
    settings.push(("AWS_ENDPOINT_URL".into(), format!("http://{bucket_host}")));
    settings.push(("TRUST_FORWARDED_HEADERS".into(), "true".into()));
    settings.push((
        "STORAGE_RELAY".into(),
        format!("{bucket_host}=/_storage/bucket"),
    ));
    let function = LAMBDA.start("relay", &settings);
    relay.set_function(&function.addr);
    let through_relay = Mirror {
        addr: relay.addr.clone(),
        log: function.log.clone(),
        _processes: Vec::new(),
    };
    for _ in 0..2 {
        for reference in [BIG, V2S2] {
            assert_same_as_direct(&through_relay, reference, &[], None);
        }
    }
    let stored_answers: Vec<_> = function
        .requests()
        .into_iter()
        .filter(|r| r["route"] == "blob" && r["method"] == "GET" && r["status"] == 307)
        .collect();
    assert!(
        !stored_answers.is_empty(),
        "no stored blob was redirected to"
    );
    assert!(
        relay.bucket_requests.load(Ordering::SeqCst) >= stored_answers.len(),
        "stored blobs were fetched past the relay"
    );
}

/// The CloudWatch Logs Insights queries of docs/operations.md name the fields and values of the
/// lines the function writes.
#[test]
fn the_docs_log_queries_read_the_functions_lines() {
    support::suite::skopeo_pulls_short_names(&MIRRORS);
    support::commands::insights_queries_answer_over(&MIRRORS.open().log_text());
}

/// docs/operations.md: the function's bucket is warmed from outside with the same `warm` (as from
/// a laptop): the function then serves every blob of the warmed images from the bucket (a 307 to
/// it), and storage sees no request.
#[test]
fn a_bucket_warmed_from_outside_serves_the_function() {
    use std::sync::atomic::Ordering;
    use support::images::{BIG, V2S2};
    use support::mirrors::Runtime;
    use support::suite::assert_same_as_direct;
    let (front, settings, _) = bucket_behind_a_front("lambda-warmed");
    let (status, out, _) = support::commands::command(&settings, &["warm", "alpine:v2s2", "big"]);
    assert_eq!(status, 0, "{out}");
    let fetched = front.storage_requests.load(Ordering::SeqCst);
    assert!(fetched > 0, "warm fetched nothing");

    let mirror = LAMBDA.start("bucket-warmed", &settings);
    for reference in [BIG, V2S2] {
        assert_same_as_direct(&mirror, reference, &[], None);
    }
    assert_eq!(
        front.storage_requests.load(Ordering::SeqCst),
        fetched,
        "the function fetched a warmed blob from storage"
    );
    assert_blobs_sent_to_the_bucket(&mirror, 0);
}

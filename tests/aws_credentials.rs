//! A bucket store reached with the credentials an operator has after `aws configure` (the shared
//! `credentials` and `config` files, a named profile, a `credential_process`), not only with
//! `AWS_*` variables: the owner's commands on the Lambda's bucket from a laptop. A front before
//! moto records the key and region each request was signed with (moto checks no signature, so
//! the front is what tells which credentials the chain found).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use support::fixture::{fixture, run_dir};
use support::http_front;

/// A front before moto that keeps the `Authorization` header of every request.
fn recording_front() -> (String, Arc<Mutex<Vec<String>>>) {
    let moto = format!("http://127.0.0.1:{}", fixture().moto_port);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (listener, addr) = http_front::bind();
    let client = reqwest::Client::new();
    let kept = seen.clone();
    http_front::serve(
        listener,
        move |request: http::Request<hyper::body::Incoming>| {
            let (client, moto, kept) = (client.clone(), moto.clone(), kept.clone());
            async move {
                use http_body_util::BodyExt;
                let (head, body) = request.into_parts();
                let authorization = head
                    .headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap_or("").to_string())
                    .unwrap_or_default();
                kept.lock().unwrap().push(authorization);
                let body = body
                    .collect()
                    .await
                    .map_err(std::io::Error::other)?
                    .to_bytes();
                let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
                let answer =
                    http_front::forward(&client, &head, format!("{moto}{path}"), body).await?;
                let mut response = http::Response::builder().status(answer.status().as_u16());
                for (name, value) in answer.headers() {
                    if name != "transfer-encoding" && name != "connection" {
                        response = response.header(name, value);
                    }
                }
                let bytes = answer.bytes().await.map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(
                    response
                        .body(
                            http_body_util::Full::new(bytes)
                                .map_err(|e| -> std::io::Error { match e {} })
                                .boxed(),
                        )
                        .unwrap(),
                )
            }
        },
    );
    (format!("http://{addr}"), seen)
}

/// `registry-mirror usage` on `bucket` through `endpoint`, in a home of its own where only the
/// files of `aws` (name, content) are, with no AWS variable but `extra`.
fn usage_with_files(
    label: &str,
    endpoint: &str,
    bucket: &str,
    aws: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> (i32, String) {
    let home = run_dir().join(label);
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    for (name, content) in aws {
        std::fs::write(home.join(".aws").join(name), content).unwrap();
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_registry-mirror"));
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    let out = command
        .arg("usage")
        .env("HOME", &home)
        .env("CACHE", format!("s3://{bucket}/mirror"))
        .env("AWS_ENDPOINT_URL", endpoint)
        // Never ask a metadata endpoint off this machine (the tests dial loopback only).
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(extra.iter().copied())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("$ registry-mirror usage ({label})\n{said}");
    (out.status.code().unwrap_or(-1), said)
}

/// The key and region of the requests signed since `from`.
fn signed_with(seen: &Mutex<Vec<String>>, from: usize) -> Vec<String> {
    seen.lock().unwrap()[from..]
        .iter()
        .map(|a| {
            a.split("Credential=")
                .nth(1)
                .and_then(|c| c.split(',').next())
                .unwrap_or("(unsigned)")
                .to_string()
        })
        .collect()
}

/// Every request the front saw was signed with this key and region (`KEY REGION`).
fn assert_signed_as(seen: &Mutex<Vec<String>>, expected: &str) {
    let signed = signed_with(seen, 0);
    assert!(!signed.is_empty(), "the bucket was not asked");
    for credential in &signed {
        assert_eq!(key_and_region(credential), expected);
    }
}

fn key_and_region(credential: &str) -> String {
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [key, _date, region, "s3", "aws4_request"] => format!("{key} {region}"),
        _ => credential.to_string(),
    }
}

#[test]
fn a_named_profile_in_the_shared_files_reaches_the_bucket() {
    let bucket = fixture().create_bucket("aws-chain-profile");
    let (endpoint, seen) = recording_front();
    let credentials = "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s\n\n\
                       [operator]\naws_access_key_id = AKIAOPERATOR\naws_secret_access_key = s\n";
    let config = "[default]\nregion = us-east-1\n\n[profile operator]\nregion = eu-west-3\n";
    let (status, said) = usage_with_files(
        "aws-chain-profile",
        &endpoint,
        &bucket,
        &[("credentials", credentials), ("config", config)],
        &[("AWS_PROFILE", "operator")],
    );
    assert_eq!(status, 0, "{said}");
    assert_signed_as(&seen, "AKIAOPERATOR eu-west-3");
}

#[test]
fn a_credential_process_reaches_the_bucket() {
    let bucket = fixture().create_bucket("aws-chain-process");
    let (endpoint, seen) = recording_front();
    let json = r#"{"Version": 1, "AccessKeyId": "AKIAPROCESS", "SecretAccessKey": "s", "SessionToken": "t"}"#;
    let config =
        format!("[default]\nregion = ap-east-1\ncredential_process = /bin/echo '{json}'\n");
    let (status, said) = usage_with_files(
        "aws-chain-process",
        &endpoint,
        &bucket,
        &[("config", &config)],
        &[],
    );
    assert_eq!(status, 0, "{said}");
    assert_signed_as(&seen, "AKIAPROCESS ap-east-1");
}

/// The variables, when set, are what a Lambda function and a container are given: they win over
/// any file.
#[test]
fn the_variables_win_over_the_files() {
    let bucket = fixture().create_bucket("aws-chain-variables");
    let (endpoint, seen) = recording_front();
    let credentials = "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s\n";
    let (status, said) = usage_with_files(
        "aws-chain-variables",
        &endpoint,
        &bucket,
        &[("credentials", credentials)],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAVARIABLE"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_REGION", "us-west-2"),
        ],
    );
    assert_eq!(status, 0, "{said}");
    assert_signed_as(&seen, "AKIAVARIABLE us-west-2");
}

/// No credentials anywhere: the command fails and says how to give some.
#[test]
fn no_credentials_say_how_to_give_them() {
    let bucket = fixture().create_bucket("aws-chain-none");
    let (endpoint, _seen) = recording_front();
    let (status, said) = usage_with_files("aws-chain-none", &endpoint, &bucket, &[], &[]);
    assert_ne!(status, 0, "{said}");
    assert!(said.contains("aws configure"), "{said}");
}

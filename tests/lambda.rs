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
    use support::mirrors::{base_settings, Runtime};
    let mut settings = base_settings();
    settings.push(("WHITE_LIST".into(), "alice".into()));
    let mirror = LAMBDA.start("cannot-start", &settings);
    let (status, out) = support::suite::curl(&mirror, "/v2/", &[]);
    assert_eq!(status, 502, "{out}");
    assert!(
        mirror.log_text().contains("TOKEN_SECRET"),
        "{}",
        mirror.log_text()
    );
}

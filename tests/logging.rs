//! `RUST_LOG` is a filter, as docs/settings.md says: a level, or targets and levels. Each module's
//! lines follow their own level; a filter that does not parse stops the server at start.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::mirrors::{with, LocalServer, Runtime};
use support::suite::curl;

/// `warn` keeps the request lines out; `warn,registry_mirror::native::logging=info` lets them in
/// (and nothing else at `info`).
#[test]
fn rust_log_filters_by_module() {
    let quiet = LocalServer.start("log-warn", &with(&[("RUST_LOG", "warn")]));
    curl(&quiet, "/v2/", &[]);
    let requests_only = LocalServer.start(
        "log-requests",
        &with(&[("RUST_LOG", "warn,registry_mirror::native::logging=info")]),
    );
    curl(&requests_only, "/v2/", &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while requests_only.requests().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !requests_only.requests().is_empty(),
        "{}",
        requests_only.log_text()
    );
    // The start line is another module's, at info: out with this filter, in with the default.
    assert!(
        !requests_only
            .log_text()
            .contains("registry-mirror listening"),
        "another module's info line passed: {}",
        requests_only.log_text()
    );
    let default = LocalServer.start("log-default", &with(&[]));
    curl(&default, "/v2/", &[]);
    assert!(
        default.log_text().contains("registry-mirror listening"),
        "{}",
        default.log_text()
    );
    assert!(quiet.requests().is_empty(), "{}", quiet.log_text());
}

#[test]
fn a_filter_that_does_not_parse_stops_the_server() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registry-mirror"))
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "registry_mirror=loud")
        .env("CACHE", "none")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("RUST_LOG"), "{stderr}");
}

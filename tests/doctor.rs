//! `registry-mirror doctor` says what a pull needs and what is wrong with it, from where the
//! server runs: every check passes against a working Docker Hub and store; an upstream that
//! refuses, a name that does not resolve, a wrong account token, a store the user cannot write
//! and a proxy that is not there each fail with the cause and a fix.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::commands::{command, set_up};
use support::fixture::ALICE;

fn with(settings: &[(String, String)], extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = settings.to_vec();
    all.push(("REGISTRIES".to_string(), "docker.io".to_string()));
    all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    all
}

#[test]
fn every_check_passes_against_a_working_hub_and_store() {
    let hub = set_up("doctor-ok");
    let (status, out, err) = command(&hub.settings, &["warm", "alpine:v2s2"]);
    assert_eq!(status, 0, "{out}{err}");
    let account = format!("{}:{}", ALICE.0, ALICE.1);
    let settings = with(&hub.settings, &[("UPSTREAM_AUTH_DOCKER_IO", &account)]);
    let (status, out, _) = command(&settings, &["doctor"]);
    assert_eq!(status, 0, "{out}");
    for said in [
        "ok    settings",
        "ok    docker.io (",
        "token service (127.0.0.1): anonymous: a token",
        "account alice: a token",
        "an object written, read back and deleted",
        "every check passed",
    ] {
        assert!(out.contains(said), "no {said:?} in:\n{out}");
    }
    assert!(!out.contains(ALICE.1), "doctor printed a password:\n{out}");
}

#[test]
fn what_is_wrong_is_said_with_a_fix() {
    let hub = set_up("doctor-wrong");
    let (status, _, _) = command(&hub.settings, &["warm", "alpine:v2s2"]);
    assert_eq!(status, 0);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let refused = format!("http://{dead}");
    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (
            with(&hub.settings, &[("UPSTREAM_DOCKER_IO", &refused)]),
            "refused the connection",
        ),
        (
            with(
                &hub.settings,
                &[("UPSTREAM_DOCKER_IO", "http://registry.invalid")],
            ),
            "its name did not resolve (DNS)",
        ),
        (
            with(
                &hub.settings,
                &[("UPSTREAM_AUTH_DOCKER_IO", "alice:not-her-token")],
            ),
            "account alice: refused",
        ),
        (
            with(&hub.settings, &[("HTTPS_PROXY", &refused)]),
            "HTTPS_PROXY=",
        ),
    ];
    for (settings, said) in cases {
        let (status, out, _) = command(&settings, &["doctor"]);
        assert_eq!(status, 1, "{out}");
        assert!(out.contains(said), "no {said:?} in:\n{out}");
        let failed = out.lines().position(|l| l.starts_with("FAIL")).unwrap();
        assert!(
            out.lines()
                .nth(failed + 1)
                .is_some_and(|l| l.contains("fix: ")),
            "a failure without a fix:\n{out}"
        );
    }
    // A store this user cannot write (made by root, as a root-run command leaves it for a server
    // that runs as another user): the check runs as nobody.
    let nobody = std::process::Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_registry-mirror"))
        .arg("doctor")
        .envs(with(&hub.settings, &[]))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&nobody.stdout);
    eprintln!("$ registry-mirror doctor (as nobody)\n{out}");
    assert_eq!(nobody.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL  store ("), "{out}");
    assert!(out.contains("chown"), "{out}");
}

/// Settings the server would refuse are refused here too, with the reason (exit 2).
#[test]
fn refused_settings_are_said() {
    let hub = set_up("doctor-settings");
    let settings = with(&hub.settings, &[("ALLOW_NETWORKS", "10.0.0.0/8")]);
    let (status, _, err) = command(&settings, &["doctor"]);
    assert_eq!(status, 2, "{err}");
    assert!(err.contains("WHITE_LIST"), "{err}");
}

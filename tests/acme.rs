//! HTTPS in one setting: the local server gets its certificate by ACME (TLS-ALPN-01) from
//! pebble, the ACME test server Debian packages, and serves HTTPS with it; the account and the
//! certificate are kept in the store's directory.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::certs::TestCa;
use support::fixture::run_dir;
use support::mirrors::{with, LocalServer};
use support::process::{free_port, need, run, spawn, wait_for_port};

#[test]
fn a_certificate_from_an_acme_server() {
    let dir = run_dir().join("pebble");
    std::fs::create_dir_all(&dir).unwrap();
    // pebble's own API speaks HTTPS, with a certificate of a test CA the mirror is told to trust.
    let ca = TestCa::new("pebble-api");
    let (api_cert, api_key) = ca.issue("pebble");
    let (api, management, mirror_port) = (free_port(), free_port(), free_port());
    let config = serde_json::json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{api}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": api_cert,
        "privateKey": api_key,
        "httpPort": free_port(),
        "tlsPort": mirror_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    let mut pebble = Command::new(need("pebble"));
    pebble
        .arg("-config")
        .arg(dir.join("pebble.json"))
        // No random waits, no rejected nonces: the test is about the mirror, not its patience.
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0");
    let log = dir.join("pebble.log");
    let _pebble = spawn("pebble", pebble, &log);
    wait_for_port(api, "pebble", &log);

    let store = run_dir().join("acme-store");
    let settings = with(&[
        ("ACME_DOMAINS", "localhost"),
        ("ACME_CONTACT", "admin@example.com"),
        ("ACME_DIRECTORY", &format!("https://127.0.0.1:{api}/dir")),
        ("ACME_CA_ROOT", &ca.ca().display().to_string()),
        ("CACHE", &format!("file://{}", store.display())),
    ]);
    let mirror = LocalServer.start_at(mirror_port, "acme", &settings);

    // pebble's roots sign what it issues: trust them, and wait for the certificate.
    let mut roots = Command::new("curl");
    roots
        .args(["-sf", "--cacert"])
        .arg(ca.ca())
        .arg(format!("https://127.0.0.1:{management}/roots/0"));
    std::fs::write(dir.join("pebble-root.pem"), run(roots)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let output = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(dir.join("pebble-root.pem"))
            .args(["--resolve", &format!("localhost:{mirror_port}:127.0.0.1")])
            .arg(format!("https://localhost:{mirror_port}/v2/"))
            .output()
            .unwrap();
        if String::from_utf8_lossy(&output.stdout) == "401" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no certificate from pebble within a minute; the mirror's log:\n{}\npebble's:\n{}",
            mirror.log_text(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The account and the certificate are kept in the store's directory.
    let kept = std::fs::read_dir(store.join("acme")).map_or(0, |d| d.count());
    assert!(kept >= 2, "the acme directory holds {kept} files");
}

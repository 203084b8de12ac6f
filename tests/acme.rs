//! HTTPS in one setting: the local server gets its certificate by ACME (TLS-ALPN-01) from
//! pebble, the ACME test server Debian packages, and serves HTTPS with it; the account and the
//! certificate are kept in the store's directory.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::fixture::run_dir;
use support::mirrors::{with, LocalServer};
use support::process::{free_port, need, run, spawn, wait_for_port};

#[test]
fn a_certificate_from_an_acme_server() {
    let dir = run_dir().join("pebble");
    std::fs::create_dir_all(&dir).unwrap();
    pebble_api_certificate(&dir);
    let (api, management, mirror_port) = (free_port(), free_port(), free_port());
    let config = serde_json::json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{api}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": dir.join("api.pem"),
        "privateKey": dir.join("api.key"),
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
        ("ACME_CA_ROOT", &dir.join("ca.pem").display().to_string()),
        ("CACHE", &format!("file://{}", store.display())),
    ]);
    let mirror = LocalServer.start_at(mirror_port, "acme", &settings);

    // pebble's roots sign what it issues: trust them, and wait for the certificate.
    let mut roots = Command::new("curl");
    roots
        .args(["-sf", "--cacert"])
        .arg(dir.join("ca.pem"))
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

/// A key and a certificate for pebble's own API (127.0.0.1), and the CA that signed them.
fn pebble_api_certificate(dir: &Path) {
    let openssl = |args: &[&str]| {
        let mut command = Command::new("openssl");
        command.current_dir(dir).args(args);
        run(command);
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=pebble API test CA",
    ]);
    std::fs::write(
        dir.join("api.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "api.key",
        "-out",
        "api.csr",
        "-subj",
        "/CN=pebble",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "api.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "api.pem",
        "-days",
        "2",
        "-extfile",
        "api.ext",
    ]);
}

//! The local server as people run it on their own machines: HTTPS from `TLS_CERT` and `TLS_KEY`
//! (dockerd pulls with the CA in its `certs.d`, without `insecure-registries`; skopeo with
//! `--src-cert-dir`; curl negotiates HTTP/2), a new certificate on `SIGHUP`, and a `SIGTERM` that
//! lets a pull in flight finish.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::certs::TestCa;
use support::clients::Dockerd;
use support::fixture::{fixture, run_dir};
use support::images::{BIG, V2S2};
use support::mirrors::{with, LocalServer, Mirror, Runtime};
use support::process::run;
use support::suite::mirror_token;

/// An HTTPS mirror with the certificate `name` of `ca`, whose certificate files are copies it
/// may replace.
fn https_mirror(label: &str, ca: &TestCa, name: &str) -> (Mirror, PathBuf, PathBuf) {
    let (cert, key) = ca.issue(name);
    let (live_cert, live_key) = (
        ca.dir.join(format!("{label}-live.pem")),
        ca.dir.join(format!("{label}-live.key")),
    );
    std::fs::copy(cert, &live_cert).unwrap();
    std::fs::copy(key, &live_key).unwrap();
    let settings = with(&[
        ("TLS_CERT", &live_cert.display().to_string()),
        ("TLS_KEY", &live_key.display().to_string()),
    ]);
    (LocalServer.start(label, &settings), live_cert, live_key)
}

/// `curl` over HTTPS with the test CA: (HTTP version, status, the certificate's subject line).
fn curl_https(mirror: &Mirror, ca: &TestCa, path: &str, extra: &[&str]) -> (String, u16, String) {
    let mut command = Command::new("curl");
    command
        .args([
            "-sv",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg("--cacert")
        .arg(ca.ca())
        .args(extra)
        .arg(format!("https://{}{path}", mirror.addr));
    let output = command.output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout).to_string();
    let err = String::from_utf8_lossy(&output.stderr).to_string();
    let (version, status) = out.split_once(' ').unwrap_or(("", "0"));
    let subject = err
        .lines()
        .find(|l| l.contains("subject:"))
        .unwrap_or("")
        .to_string();
    (version.to_string(), status.parse().unwrap_or(0), subject)
}

#[test]
fn dockerd_skopeo_and_curl_pull_over_https() {
    let ca = TestCa::new("https");
    let (mirror, _, _) = https_mirror("https", &ca, "mirror-one");
    // HTTP/2 by ALPN, and HTTP/1.1 for clients that ask for it.
    let (version, status, _) = curl_https(&mirror, &ca, "/v2/", &["--http2"]);
    assert_eq!((version.as_str(), status), ("2", 401));
    let (version, status, _) = curl_https(&mirror, &ca, "/v2/", &["--http1.1"]);
    assert_eq!((version.as_str(), status), ("1.1", 401));

    // dockerd, with the CA in certs.d and no insecure-registries.
    let certs_d = Path::new("/etc/docker/certs.d").join(&mirror.addr);
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::copy(ca.ca(), certs_d.join("ca.crt")).unwrap();
    let dockerd = Dockerd::start_with(&format!("https://{}", mirror.addr), &[]);
    let (ok, out) = dockerd.docker(None, &["pull", "alpine:v2s2"]);
    let _ = std::fs::remove_dir_all(&certs_d);
    assert!(ok, "docker pull over https: {out}");
    assert!(
        mirror.count("manifest", 200) > 0,
        "dockerd did not pull through the mirror"
    );

    // skopeo, with the CA in a directory of its own.
    let cert_dir = ca.dir.join("skopeo-certs");
    std::fs::create_dir_all(&cert_dir).unwrap();
    std::fs::copy(ca.ca(), cert_dir.join("ca.crt")).unwrap();
    let dest = run_dir().join("https-skopeo");
    let mut skopeo = Command::new("skopeo");
    skopeo
        .args(["copy", "-q", "--src-no-creds", "--src-cert-dir"])
        .arg(&cert_dir)
        .arg(format!("docker://{}/{V2S2}", mirror.addr))
        .arg(format!("dir:{}", dest.display()));
    run(skopeo);
    let manifest = std::fs::read(dest.join("manifest.json")).unwrap();
    assert!(!manifest.is_empty());
}

#[test]
fn a_new_certificate_is_taken_on_sighup() {
    let ca = TestCa::new("sighup");
    let (mirror, live_cert, live_key) = https_mirror("sighup", &ca, "mirror-one");
    let (_, status, subject) = curl_https(&mirror, &ca, "/healthz", &[]);
    assert_eq!(status, 200);
    assert!(subject.contains("mirror-one"), "{subject}");
    let (cert, key) = ca.issue("mirror-two");
    std::fs::copy(cert, &live_cert).unwrap();
    std::fs::copy(key, &live_key).unwrap();
    signal(&mirror, libc::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, status, subject) = curl_https(&mirror, &ca, "/healthz", &[]);
        if subject.contains("mirror-two") {
            assert_eq!(status, 200);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {subject} after SIGHUP"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A file that does not load leaves the certificate in use.
    std::fs::write(&live_cert, "not a certificate").unwrap();
    signal(&mirror, libc::SIGHUP);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (_, status, subject) = curl_https(&mirror, &ca, "/healthz", &[]);
    assert_eq!(status, 200);
    assert!(subject.contains("mirror-two"), "{subject}");
}

/// `SIGTERM` while a slow client downloads a 64 MiB layer: the download completes whole, new
/// connections are refused, and the server exits.
#[test]
fn sigterm_lets_a_pull_in_flight_finish() {
    let mirror = LocalServer.start("sigterm", &with(&[]));
    let layer = fixture()
        .images
        .get(BIG)
        .blob_digests
        .last()
        .unwrap()
        .clone();
    let token = mirror_token(&mirror, "/token?scope=repository:library/big:pull", &[]);
    let file = run_dir().join("sigterm-layer");
    let download = std::thread::spawn({
        let url = format!("http://{}/v2/library/big/blobs/{layer}", mirror.addr);
        let file = file.clone();
        move || {
            let output = Command::new("curl")
                .args(["-s", "-w", "%{http_code}", "--limit-rate", "16M", "-o"])
                .arg(&file)
                .arg("-H")
                .arg(format!("Authorization: Bearer {token}"))
                .arg(url)
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).to_string()
        }
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    signal(&mirror, libc::SIGTERM);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let refused = std::net::TcpStream::connect(&mirror.addr).is_err();
    assert_eq!(download.join().unwrap(), "200", "the download in flight");
    let mut sha = Command::new("sha256sum");
    sha.arg(&file);
    let sum = run(sha);
    assert_eq!(
        format!("sha256:{}", sum.split_whitespace().next().unwrap()),
        layer,
        "the download in flight is not the whole layer"
    );
    assert!(refused, "a new connection was accepted after SIGTERM");
    assert!(
        mirror.log_text().contains("shutting down"),
        "{}",
        mirror.log_text()
    );
}

fn signal(mirror: &Mirror, signal: i32) {
    let pid = mirror._processes[0].pid;
    unsafe {
        libc::kill(pid, signal);
    }
}

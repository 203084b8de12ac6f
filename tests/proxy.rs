//! Egress through an HTTP proxy (tinyproxy, from Debian): with `HTTP_PROXY`/`HTTPS_PROXY` set,
//! every upstream request (registry, token service, blob storage) goes through the proxy, and
//! `NO_PROXY` keeps the store's bucket direct; without `NO_PROXY` the bucket goes through it too.
//! A proxy that is not there makes a `503` that says so. The upstreams here speak plain HTTP, so
//! the proxy sees `HTTP_PROXY`'s absolute-form requests; an `https://` upstream goes through
//! `HTTPS_PROXY` by `CONNECT`, by the same matcher (hyper-util's, which reqwest follows).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::path::PathBuf;
use std::sync::OnceLock;
use support::fixture::{fixture, run_dir};
use support::images::V2S2;
use support::mirrors::{with, LocalServer, Runtime};
use support::process::{free_port, need, spawn, wait_for_port, Running};
use support::suite::{assert_same_as_direct, curl};

/// tinyproxy on a free port of 127.0.0.1, its log naming every request it relays.
struct Proxy {
    port: u16,
    log: PathBuf,
    _process: Running,
}

fn proxy() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        let program = need("tinyproxy");
        let port = free_port();
        let dir = run_dir().join("tinyproxy");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("tinyproxy.log");
        let config = dir.join("tinyproxy.conf");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 200\nAllow 127.0.0.1\n\
                 LogFile \"{}\"\nLogLevel Info\nDisableViaHeader Yes\n",
                log.display()
            ),
        )
        .unwrap();
        let mut command = std::process::Command::new(program);
        // -d: stay in the foreground, so that the tests stop it by its PID.
        command.arg("-d").arg("-c").arg(&config);
        let process = spawn("tinyproxy", command, &dir.join("tinyproxy.out"));
        wait_for_port(port, "tinyproxy", &dir.join("tinyproxy.out"));
        Proxy {
            port,
            log,
            _process: process,
        }
    })
}

impl Proxy {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests the proxy relayed to `port` so far.
    fn relayed_to(&self, port: u16) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let needle = format!(":{port}/");
        log.lines()
            .filter(|l| l.contains("Request (file descriptor") && l.contains(&needle))
            .count()
    }
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// Every upstream request goes through the proxy; the bucket, named in `NO_PROXY` (as `localhost`,
/// the name its endpoint is given here), is reached directly.
#[test]
fn upstreams_go_through_the_proxy_and_no_proxy_keeps_the_bucket_direct() {
    let f = fixture();
    let proxy = proxy();
    let bucket = f.create_bucket("proxied-store");
    let mut settings = with(&[("HTTP_PROXY", &proxy.url()), ("NO_PROXY", "localhost")]);
    settings.extend(f.bucket_settings(&bucket, "proxied"));
    let endpoint = format!("http://localhost:{}", f.moto_port);
    settings.retain(|(k, _)| k != "AWS_ENDPOINT_URL");
    settings.push(("AWS_ENDPOINT_URL".to_string(), endpoint));
    let registry = port_of(&f.registry);
    let (before_registry, before_token, before_storage, before_moto) = (
        proxy.relayed_to(registry),
        proxy.relayed_to(f.token_port),
        proxy.relayed_to(f.storage_port),
        proxy.relayed_to(f.moto_port),
    );
    let mirror = LocalServer.start("proxied", &settings);
    assert_same_as_direct(&mirror, V2S2, &[], None);
    assert!(
        proxy.relayed_to(registry) > before_registry,
        "no registry request went through the proxy"
    );
    assert!(
        proxy.relayed_to(f.token_port) > before_token,
        "no token request went through the proxy"
    );
    assert!(
        proxy.relayed_to(f.storage_port) > before_storage,
        "no storage request went through the proxy"
    );
    assert_eq!(
        proxy.relayed_to(f.moto_port),
        before_moto,
        "the bucket went through the proxy despite NO_PROXY"
    );
    let stored = f.bucket_keys(&bucket, "proxied/");
    assert!(!stored.is_empty(), "nothing reached the bucket");
}

/// Without `NO_PROXY`, the bucket is reached through the proxy as well.
#[test]
fn without_no_proxy_the_bucket_goes_through_the_proxy_too() {
    let f = fixture();
    let proxy = proxy();
    let bucket = f.create_bucket("proxied-store-all");
    let mut settings = with(&[("HTTP_PROXY", &proxy.url())]);
    settings.extend(f.bucket_settings(&bucket, "all"));
    let before = proxy.relayed_to(f.moto_port);
    let mirror = LocalServer.start("proxied-all", &settings);
    assert_same_as_direct(&mirror, V2S2, &[], None);
    assert!(
        proxy.relayed_to(f.moto_port) > before,
        "the bucket was reached directly"
    );
}

/// A proxy that is not there: the pull fails with a `503` that names the proxy, at once.
#[test]
fn a_proxy_that_is_not_there_is_said() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mirror = LocalServer.start("dead-proxy", &with(&[("HTTP_PROXY", &dead)]));
    let (status, out) = curl(&mirror, "/v2/library/alpine/manifests/v2s2", &[]);
    assert_eq!(status, 503, "{out}");
    assert!(
        out.contains("was not reached through the HTTP proxy"),
        "{out}"
    );
}

//! The client suite against the local server (`cargo run`).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::mirrors::LocalServer;

client_suite!(LocalServer);

/// A `WHITE_LIST` that names nobody must not open the mirror: the server refuses to start, and says
/// why.
#[test]
fn a_whitelist_naming_nobody_refuses_to_start() {
    for nobody in [",", "  "] {
        let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_registry-mirror"))
            .args(["--listen", "127.0.0.1:0"])
            .env("WHITE_LIST", nobody)
            .env("TOKEN_SECRET", support::mirrors::TOKEN_SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = server.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = server.kill();
                panic!("the server started with WHITE_LIST={nobody:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success());
        assert!(stderr.contains("names nobody"), "{stderr}");
    }
}

/// Five wrong passwords a minute from one address, then 429 (the server counts in one process).
#[test]
fn failed_logins_are_throttled() {
    support::suite::failed_logins_are_throttled(&LocalServer, 5);
}

/// A flood of idle connections from one address: past `MAX_CONNECTIONS_PER_IP` they are closed at
/// once, another address is still served, the server's memory stays bounded, and it is back where
/// it was after the flood.
#[test]
fn one_address_cannot_hold_the_server() {
    use std::io::Read;
    const FLOOD: usize = 1000;
    // The test opens more sockets than the usual soft limit of 1024 descriptors allows.
    unsafe {
        let limit = libc::rlimit {
            rlim_cur: 8192,
            rlim_max: 8192,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    let mut settings = support::mirrors::base_settings();
    settings.push(("MAX_CONNECTIONS_PER_IP".into(), "20".into()));
    let mirror = support::mirrors::Runtime::start(&LocalServer, "flood", &settings);
    let pid = mirror._processes[0].pid;
    let health = |from: &str| {
        let (status, out) = support::suite::curl(&mirror, "/healthz", &["--interface", from]);
        assert_eq!(status, 200, "health from {from}: {out}");
    };
    health("127.0.0.1");
    let before = support::measure::rss_mib(pid);
    let flood: Vec<std::net::TcpStream> = (0..FLOOD)
        .map(|_| std::net::TcpStream::connect(&mirror.addr).expect("connect"))
        .collect();
    // The connections past the limit are closed by the server: reading them ends at once.
    let closed = flood
        .iter()
        .filter(|stream| {
            let mut stream: &std::net::TcpStream = stream;
            let wait = std::time::Duration::from_millis(200);
            stream.set_read_timeout(Some(wait)).unwrap();
            match stream.read(&mut [0u8; 1]) {
                Ok(n) => n == 0,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        })
        .count();
    assert!(
        closed >= FLOOD - 20 - 10,
        "only {closed} of {FLOOD} were closed"
    );
    health("127.0.0.2");
    let during = support::measure::rss_mib(pid);
    assert!(
        during < before + 32.0,
        "{before:.1} MiB before, {during:.1} MiB in the flood"
    );
    drop(flood);
    std::thread::sleep(std::time::Duration::from_secs(1));
    health("127.0.0.1");
    let after = support::measure::rss_mib(pid);
    assert!(
        after < before + 8.0,
        "{before:.1} MiB before, {after:.1} MiB after the flood"
    );
}

/// The socket inodes a process holds.
fn socket_inodes(pid: i32) -> std::collections::HashSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|link| {
                    let link = link.to_string_lossy().to_string();
                    Some(
                        link.strip_prefix("socket:[")?
                            .strip_suffix(']')?
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The established TCP connections from process `pid` to `port` on 127.0.0.1.
fn connections_to(pid: i32, port: u16) -> usize {
    let inodes = socket_inodes(pid);
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields[2].rsplit(':').next().unwrap_or("");
            u16::from_str_radix(remote_port, 16) == Ok(port)
                && fields[3] == "01"
                && inodes.contains(fields[9])
        })
        .count()
}

/// A client that stops reading a blob is cut after `CLIENT_IDLE_TIMEOUT_SECS`, and so is the
/// storage connection its body came from.
#[test]
fn a_client_that_stops_reading_is_cut() {
    use std::io::{Read, Write};
    use support::images::BIG;
    let fixture = support::fixture::fixture();
    let mut settings = support::mirrors::base_settings();
    settings.push(("CLIENT_IDLE_TIMEOUT_SECS".into(), "2".into()));
    let mirror = support::mirrors::Runtime::start(&LocalServer, "stalled", &settings);
    let pid = mirror._processes[0].pid;
    let image = fixture.images.get(BIG);
    let layer = image.blob_digests.last().unwrap();
    let name = BIG.split(':').next().unwrap();
    let token = support::suite::mirror_token(
        &mirror,
        &format!("/token?scope=repository:{name}:pull"),
        &[],
    );
    let mut client = std::net::TcpStream::connect(&mirror.addr).unwrap();
    write!(
        client,
        "GET /v2/{name}/blobs/{layer} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
        mirror.addr
    )
    .unwrap();
    let mut head = [0u8; 512];
    let n = client.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    // The client reads no more. While the mirror relays, it holds a storage connection ...
    let held = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        connections_to(pid, fixture.storage_port) > 0
    });
    assert!(held, "the mirror never held a storage connection");
    // ... and within the idle timeout (and a margin for the kernel's buffers to fill), both go.
    let released = (0..300).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        connections_to(pid, fixture.storage_port) == 0
    });
    assert!(
        released,
        "the stalled client still pins a storage connection"
    );
    // The client's connection was closed: reading on finds an end before the blob's end.
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(
        (rest.len() as u64) < 64 * 1024 * 1024,
        "the whole blob arrived: {} bytes",
        rest.len()
    );
}

#[test]
fn the_mirrors_account_serves_anonymous_clients() {
    support::suite::the_mirrors_account_serves_anonymous_clients(&LocalServer);
}

#[test]
fn allowed_networks_pull_without_login() {
    support::suite::allowed_networks_pull_without_login(&LocalServer);
}

/// `METRICS_LISTEN`: OpenMetrics text at `/metrics` on an address of its own (not on the public
/// one), which parses and whose counters move with a pull.
#[test]
fn metrics_parse_and_move_with_a_pull() {
    use support::images::V2S2;
    use support::mirrors::Runtime;
    let port = support::process::free_port();
    let listen = format!("127.0.0.1:{port}");
    let store = support::fixture::run_dir().join("metrics-store");
    let cache = format!("file://{}", store.display());
    let mirror = LocalServer.start(
        "metrics",
        &support::mirrors::with(&[("METRICS_LISTEN", &listen), ("CACHE", &cache)]),
    );
    let scrape = || {
        let out = std::process::Command::new("curl")
            .args(["-sf", &format!("http://{listen}/metrics")])
            .output()
            .unwrap();
        assert!(out.status.success(), "no /metrics on {listen}");
        parse_openmetrics(&String::from_utf8_lossy(&out.stdout))
    };
    let sum = |samples: &[Sample], name: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
            .sum::<f64>()
    };
    support::suite::assert_same_as_direct(&mirror, V2S2, &[], None);
    let first = scrape();
    let manifests = sum(
        &first,
        "registry_mirror_requests_total",
        Some(("route", "manifest")),
    );
    assert!(manifests > 0.0, "{first:?}");
    assert!(sum(&first, "registry_mirror_upstream_requests_total", None) > 0.0);
    assert!(
        sum(
            &first,
            "registry_mirror_counted_pulls_total",
            Some(("registry", "docker.io"))
        ) > 0.0
    );
    assert!(
        sum(
            &first,
            "registry_mirror_store_total",
            Some(("result", "miss"))
        ) > 0.0
    );
    assert!(sum(&first, "registry_mirror_store_bytes", None) > 0.0);
    assert!(sum(&first, "registry_mirror_response_bytes_total", None) > 0.0);
    support::suite::assert_same_as_direct(&mirror, V2S2, &[], None);
    let second = scrape();
    assert!(
        sum(
            &second,
            "registry_mirror_requests_total",
            Some(("route", "manifest"))
        ) > manifests
    );
    assert!(
        sum(
            &second,
            "registry_mirror_store_total",
            Some(("result", "hit"))
        ) > 0.0
    );
    // Not on the public address.
    let (status, _) = support::suite::curl(&mirror, "/metrics", &[]);
    assert_eq!(status, 404);
}

/// An OpenMetrics sample: its name, labels and value.
type Sample = (String, Vec<(String, String)>, f64);

/// Each sample of an OpenMetrics text: its name, labels and value; panics on a line that is not
/// OpenMetrics, or a text that does not end with `# EOF`.
fn parse_openmetrics(text: &str) -> Vec<Sample> {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "{text}");
    let is_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut samples = Vec::new();
    for line in &lines[..lines.len() - 1] {
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let kind = parts.next().unwrap_or("");
            assert!(matches!(kind, "HELP" | "TYPE" | "UNIT"), "{line}");
            assert!(is_name(parts.next().unwrap_or("")), "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let rest = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line}"));
                let labels = rest
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{line}"));
                        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                        assert!(is_name(k), "{line}");
                        (
                            k.to_string(),
                            v.unwrap_or_else(|| panic!("{line}")).to_string(),
                        )
                    })
                    .collect();
                (name, labels)
            }
            None => (series, Vec::new()),
        };
        assert!(is_name(name), "{line}");
        samples.push((name.to_string(), labels, value));
    }
    samples
}

/// `LISTEN=[::]:port` takes IPv4 clients as `::ffff:a.b.c.d`: they are on their IPv4 networks
/// all the same, and an IPv6 client outside them still needs a login.
#[test]
fn a_dual_stack_listener_admits_ipv4_clients_of_allowed_networks() {
    use support::process::{free_port, spawn, wait_for_port};
    let port = free_port();
    let log = support::fixture::run_dir().join("mirror-dual-stack.log");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_registry-mirror"));
    command
        .args(["--listen", &format!("[::]:{port}")])
        .env("LOG_FORMAT", "json");
    let settings = support::mirrors::with(&[
        ("WHITE_LIST", "alice"),
        ("TOKEN_SECRET", support::mirrors::TOKEN_SECRET),
        ("ALLOW_NETWORKS", "127.0.0.0/8"),
    ]);
    for (k, v) in &settings {
        command.env(k, v);
    }
    let _running = spawn("mirror dual-stack", command, &log);
    wait_for_port(port, "the dual-stack mirror", &log);
    let path = "/token?scope=repository:library/alpine:pull&service=mirror";
    let status = |host: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "30",
            ])
            .arg(format!("http://{host}:{port}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(status("127.0.0.1"), "200", "an IPv4 client of 127.0.0.0/8");
    assert_eq!(
        status("[::1]"),
        "401",
        "an IPv6 client outside the networks"
    );
}

/// Behind a trusted proxy every connection is the proxy's: `MAX_CONNECTIONS_PER_IP` then counts
/// the requests of each forwarded address, so one client cannot take every slot and the proxy's
/// other clients are still served.
#[test]
fn behind_a_trusted_proxy_the_limit_is_each_clients() {
    use support::images::BIG;
    let mut settings = support::mirrors::base_settings();
    settings.push(("MAX_CONNECTIONS_PER_IP".into(), "2".into()));
    settings.push(("TRUST_FORWARDED_HEADERS".into(), "true".into()));
    let mirror = support::mirrors::Runtime::start(&LocalServer, "proxied-limit", &settings);
    let name = BIG.split(':').next().unwrap();
    let layer = support::fixture::fixture()
        .images
        .get(BIG)
        .blob_digests
        .last()
        .unwrap()
        .clone();
    let token = support::suite::mirror_token(
        &mirror,
        &format!("/token?scope=repository:{name}:pull"),
        &[],
    );
    let url = format!("http://{}/v2/{name}/blobs/{layer}", mirror.addr);
    let auth = format!("Authorization: Bearer {token}");
    let mut slow: Vec<std::process::Child> = (0..2)
        .map(|_| {
            std::process::Command::new("curl")
                .args(["-s", "-o", "/dev/null", "--limit-rate", "100k"])
                .args(["-H", &auth, "-H", "X-Forwarded-For: 203.0.113.9", &url])
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let from = |client: &str| {
        support::suite::curl(
            &mirror,
            "/healthz",
            &["-H", &format!("X-Forwarded-For: {client}")],
        )
        .0
    };
    let busy = from("203.0.113.9");
    let other = from("198.51.100.4");
    for child in &mut slow {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(busy, 429, "a third request of the busy client");
    assert_eq!(other, 200, "another client of the proxy");
}

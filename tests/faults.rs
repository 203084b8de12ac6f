//! Faults between the mirror and its upstream, injected by a front the tests own: the mirror
//! retries what can still succeed, answers the registry's error within its timeouts otherwise,
//! never passes a broken body off as a whole one, and serves the next pull after each fault.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use support::faults::{Fault, FaultFront};
use support::fixture::fixture;
use support::images::V2S2;
use support::mirrors::{LocalServer, Mirror, Runtime, LAMBDA};
use support::suite::{assert_same_as_direct, curl, curl_blob, mirror_token};

/// One fault at a time: the front is shared by the tests of this binary.
static SERIAL: Mutex<()> = Mutex::new(());

struct Setup {
    front: &'static FaultFront,
    mirror: Mirror,
    runtime: &'static dyn Runtime,
}

fn front() -> &'static FaultFront {
    static FRONT: OnceLock<FaultFront> = OnceLock::new();
    FRONT.get_or_init(|| {
        let f = fixture();
        FaultFront::start(&f.registry, f.token_port, f.storage_port)
    })
}

/// The mirror of `runtime` behind the fault front, started once per runtime.
fn setup(
    runtime: &'static dyn Runtime,
    cell: &'static OnceLock<Setup>,
) -> (MutexGuard<'static, ()>, &'static Setup) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let setup = cell.get_or_init(|| {
        let front = front();
        let settings = vec![
            (
                "UPSTREAM_DOCKER_IO".to_string(),
                format!("http://{}", front.addr),
            ),
            ("UPSTREAM_TIMEOUT_SECS".to_string(), "2".to_string()),
            // Each fault meets the upstream, never a stored copy.
            ("CACHE".to_string(), "none".to_string()),
        ];
        let mirror = runtime.start("faults", &settings);
        Setup {
            front,
            mirror,
            runtime,
        }
    });
    setup.front.set(Fault::None);
    (guard, setup)
}

fn pull(mirror: &Mirror) {
    assert_same_as_direct(mirror, V2S2, &[], None);
}

fn token(mirror: &Mirror) -> String {
    mirror_token(mirror, "/token?scope=repository:library/alpine:pull", &[])
}

fn manifest(mirror: &Mirror, token: Option<&str>) -> (u16, String, Duration) {
    let started = Instant::now();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}"))
        .unwrap_or_else(|| "X-None: 1".to_string());
    let (status, out) = curl(
        mirror,
        "/v2/library/alpine/manifests/v2s2",
        &[
            "-H",
            &auth,
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
        ],
    );
    (status, out, started.elapsed())
}

fn gateway_errors_are_retried(s: &Setup) {
    let before = s
        .front
        .registry_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    s.front.set(Fault::Status {
        status: 503,
        times: 2,
    });
    pull(&s.mirror);
    let seen = s
        .front
        .registry_requests
        .load(std::sync::atomic::Ordering::SeqCst)
        - before;
    assert!(seen >= 3, "the front saw {seen} registry requests");
}

fn dropped_connections_are_retried(s: &Setup) {
    s.front.set(Fault::Drop { times: 2 });
    pull(&s.mirror);
}

fn lasting_upstream_errors_are_answered_at_once(s: &Setup) {
    let token = token(&s.mirror);
    s.front.set(Fault::Status {
        status: 500,
        times: 1000,
    });
    let (status, out, took) = manifest(&s.mirror, Some(&token));
    assert_eq!(status, 503, "{out}");
    assert!(out.contains("\"code\":\"UNAVAILABLE\""), "{out}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    s.front.set(Fault::Status {
        status: 503,
        times: 1000,
    });
    let (status, _, took) = manifest(&s.mirror, Some(&token));
    assert_eq!(status, 503);
    assert!(
        took < Duration::from_secs(5),
        "three attempts with backoff took {took:?}"
    );
    s.front.set(Fault::None);
    pull(&s.mirror);
}

fn a_slow_first_byte_gets_unavailable_within_the_timeout(s: &Setup) {
    let token = token(&s.mirror);
    s.front.set(Fault::SlowHead(Duration::from_secs(8)));
    let (status, out, took) = manifest(&s.mirror, Some(&token));
    assert_eq!(status, 503, "{out}");
    assert!(out.contains("did not answer in time"), "{out}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "took {took:?}"
    );
    s.front.set(Fault::None);
    pull(&s.mirror);
}

fn a_reset_in_the_middle_of_a_blob_reaches_the_client_as_a_failure(s: &Setup) {
    let image = fixture().images.get(V2S2);
    let layer = image.blob_digests.last().unwrap().clone();
    let token = token(&s.mirror);
    s.front.set(Fault::CutBody { after: 100_000 });
    let (whole, printed) = curl_blob(&s.mirror, "library/alpine", &layer, &token, 20);
    let size: u64 = printed.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(size < 1_000_000, "{printed}");
    // curl: exit 18 is "partial file", 56 "failure receiving": either way, not a whole body. A
    // Lambda function answers buffered: it reads the whole body first, and answers a broken one
    // with a complete 503 instead.
    if s.runtime.name() == "lambda" {
        assert!(printed.starts_with("503 "), "{printed}");
    } else {
        assert!(!whole, "curl read a cut blob as complete: {printed}");
    }
    let broken = support::clients::skopeo_copy(&format!("{}/{V2S2}", s.mirror.addr), None, &[]);
    assert!(broken.is_err(), "skopeo accepted a cut layer");
    s.front.set(Fault::None);
    pull(&s.mirror);
}

fn the_token_service_down_is_unavailable_and_passes(s: &Setup) {
    let _ = token(&s.mirror); // the mirror has learnt the realm
    s.front.set(Fault::TokenDown);
    let started = Instant::now();
    let (status, out) = curl(
        &s.mirror,
        "/token?scope=repository:library/alpine:pull",
        &[],
    );
    assert_eq!(status, 503, "{out}");
    assert!(out.contains("token service"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(5));
    s.front.set(Fault::None);
    pull(&s.mirror);
}

fn a_redirect_to_a_dead_storage_host_is_unavailable(s: &Setup) {
    let image = fixture().images.get(V2S2);
    let layer = image.blob_digests.last().unwrap().clone();
    let token = token(&s.mirror);
    s.front.set(Fault::DeadRedirect);
    let (status, out) = curl(
        &s.mirror,
        &format!("/v2/library/alpine/blobs/{layer}"),
        &["-H", &format!("Authorization: Bearer {token}")],
    );
    assert_eq!(status, 503, "{out}");
    assert!(out.contains("blob storage"), "{out}");
    s.front.set(Fault::None);
    pull(&s.mirror);
}

fn an_upstream_429_reaches_the_client_with_retry_after(s: &Setup) {
    let token = token(&s.mirror);
    s.front.set(Fault::TooMany);
    let (status, out, _) = manifest(&s.mirror, Some(&token));
    assert_eq!(status, 429, "{out}");
    assert!(
        out.to_ascii_lowercase().contains("retry-after: 77"),
        "{out}"
    );
    assert!(out.contains("TOOMANYREQUESTS"), "{out}");
    s.front.set(Fault::None);
    pull(&s.mirror);
}

fn a_refused_connection_is_unavailable_at_once(s: &Setup) {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let settings = vec![("UPSTREAM_DOCKER_IO".to_string(), format!("http://{dead}"))];
    let mirror = s.runtime.start("refused", &settings);
    let started = Instant::now();
    let (status, out) = curl(&mirror, "/v2/library/alpine/manifests/v2s2", &[]);
    assert_eq!(status, 503, "{out}");
    assert!(
        out.contains("could not be reached: refused the connection"),
        "{out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_the_log_says(&mirror, &dead, "refused the connection");
}

/// The cause of an unreachable upstream is in the client's `503` and, with the host, in the
/// mirror's log: a name that does not resolve, and a certificate the mirror does not trust.
fn an_unreachable_upstream_says_why(s: &Setup) {
    let cases = [
        (
            "http://registry.invalid".to_string(),
            "registry.invalid",
            "its name did not resolve (DNS)",
        ),
        (
            format!("https://{}", untrusted_tls()),
            "127.0.0.1",
            "failed the TLS handshake",
        ),
    ];
    for (upstream, host, cause) in cases {
        let settings = vec![("UPSTREAM_DOCKER_IO".to_string(), upstream.clone())];
        let mirror = s.runtime.start("unreachable", &settings);
        let (status, out) = curl(&mirror, "/v2/library/alpine/manifests/v2s2", &[]);
        assert_eq!(status, 503, "{upstream}: {out}");
        assert!(out.contains(cause), "{upstream}: {out}");
        assert_the_log_says(&mirror, host, cause);
    }
}

/// A TLS server on loopback with a certificate of the tests' own CA, which the mirror does not
/// trust (a mirror of this program, serving HTTPS).
fn untrusted_tls() -> String {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| {
        let ca = support::certs::TestCa::new("untrusted-upstream");
        let (cert, key) = ca.issue("127.0.0.1");
        let settings = vec![
            ("TLS_CERT".to_string(), cert.display().to_string()),
            ("TLS_KEY".to_string(), key.display().to_string()),
        ];
        let server = LocalServer.start("untrusted-tls", &settings);
        let addr = server.addr.clone();
        std::mem::forget(server);
        addr
    })
    .clone()
}

/// The mirror's log names the host and the cause of an upstream failure.
fn assert_the_log_says(mirror: &Mirror, host: &str, cause: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = mirror.log_text();
        let said = log.lines().any(|l| {
            l.contains("an upstream request failed") && l.contains(host) && l.contains(cause)
        });
        if said {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the log does not say {host} {cause}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The fault cases against one runtime.
macro_rules! fault_cases {
    ($module:ident, $runtime:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            static SETUP: OnceLock<Setup> = OnceLock::new();
            $(
                #[test]
                fn $case() {
                    let (_serial, s) = setup(&$runtime, &SETUP);
                    super::$case(s);
                }
            )*
        }
    };
}

// The Fastly binary is left out: its static backends carry Fastly's own timeouts, not
// UPSTREAM_TIMEOUT_SECS, and Viceroy's backends are the fixture's ports only.
fault_cases!(
    local_server,
    LocalServer,
    [
        gateway_errors_are_retried,
        dropped_connections_are_retried,
        lasting_upstream_errors_are_answered_at_once,
        a_slow_first_byte_gets_unavailable_within_the_timeout,
        a_reset_in_the_middle_of_a_blob_reaches_the_client_as_a_failure,
        the_token_service_down_is_unavailable_and_passes,
        a_redirect_to_a_dead_storage_host_is_unavailable,
        an_upstream_429_reaches_the_client_with_retry_after,
        a_refused_connection_is_unavailable_at_once,
        an_unreachable_upstream_says_why,
    ]
);

fault_cases!(
    lambda,
    LAMBDA,
    [
        gateway_errors_are_retried,
        dropped_connections_are_retried,
        lasting_upstream_errors_are_answered_at_once,
        a_slow_first_byte_gets_unavailable_within_the_timeout,
        a_reset_in_the_middle_of_a_blob_reaches_the_client_as_a_failure,
        the_token_service_down_is_unavailable_and_passes,
        a_redirect_to_a_dead_storage_host_is_unavailable,
        an_upstream_429_reaches_the_client_with_retry_after,
        a_refused_connection_is_unavailable_at_once,
        an_unreachable_upstream_says_why,
    ]
);

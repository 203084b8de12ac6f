//! A Lambda function behind the template's CloudFront relay copies a layer too large for its
//! response into the bucket before it answers; CloudFront waits `OriginReadTimeout` (60 s) for the
//! function's first byte and then answers `504`. A copy that would not end within
//! `COPY_TIMEOUT_SECS` is given up, and the client sent to the upstream's storage instead: no
//! first pull fails behind the relay. The relay's stand-in enforces the timeout; here both times
//! are scaled down (a 4 s relay, a 2 s copy bound) and the upstream's storage slowed so that the
//! 64 MiB layer's copy would take 16 s.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::time::{Duration, Instant};
use support::cloudfront::{template_origin_read_timeout, Relay};
use support::faults::{Fault, FaultFront};
use support::fixture::fixture;
use support::images::BIG;
use support::mirrors::{with, Mirror, Runtime, LAMBDA};
use support::suite::{curl, mirror_token};

/// The function behind a relay of `read_timeout`, its Docker Hub behind a front whose storage
/// sends 4 MB a second, copies bounded by `copy_timeout_secs`.
fn function_behind_a_relay(
    label: &str,
    copy_timeout_secs: &str,
    read_timeout: Duration,
) -> (Relay, Mirror, Mirror, FaultFront) {
    let f = fixture();
    let front = FaultFront::start(&f.registry, f.token_port, f.storage_port);
    front.set(Fault::SlowBody {
        bytes_per_sec: 4_000_000,
    });
    let bucket = f.create_bucket(label);
    let mut settings: Vec<(String, String)> = with(&[])
        .into_iter()
        .filter(|(k, _)| k != "CACHE" && k != "UPSTREAM_DOCKER_IO")
        .collect();
    settings.extend(f.bucket_settings(&bucket, "fn"));
    settings.push((
        "UPSTREAM_DOCKER_IO".into(),
        format!("http://{}", front.addr),
    ));
    settings.push(("COPY_TIMEOUT_SECS".into(), copy_timeout_secs.into()));
    settings.push(("TRUST_FORWARDED_HEADERS".into(), "true".into()));
    let relay = Relay::with_read_timeout(&format!("127.0.0.1:{}", f.moto_port), read_timeout);
    let function = LAMBDA.start(label, &settings);
    relay.set_function(&function.addr);
    let through_relay = Mirror {
        addr: relay.addr.clone(),
        log: function.log.clone(),
        _processes: Vec::new(),
    };
    (relay, function, through_relay, front)
}

/// The layer's `GET` through the relay: its status and how long its head took.
fn layer_through(mirror: &Mirror) -> (u16, String, Duration) {
    let layer = fixture()
        .images
        .get(BIG)
        .blob_digests
        .last()
        .unwrap()
        .clone();
    let token = mirror_token(mirror, "/token?scope=repository:library/big:pull", &[]);
    let started = Instant::now();
    let (status, out) = curl(
        mirror,
        &format!("/v2/library/big/blobs/{layer}"),
        &["-H", &format!("Authorization: Bearer {token}")],
    );
    (status, out, started.elapsed())
}

#[test]
fn a_copy_that_would_outlast_the_relay_sends_the_client_to_storage() {
    let read_timeout = Duration::from_secs(4);
    let (_relay, _function, through_relay, _front) =
        function_behind_a_relay("lambda-copy-bounded", "2", read_timeout);
    let (status, out, took) = layer_through(&through_relay);
    assert_eq!(status, 307, "{out}");
    assert!(took < read_timeout, "the answer took {took:?}");
    let location = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .expect("a Location");
    assert!(
        !location.contains("X-Amz-Signature") || !location.contains("/fn/"),
        "sent to a bucket object that was never finished: {location}"
    );
}

/// The stand-in is as strict as CloudFront: a copy left to run past the relay's timeout costs
/// the client a `504` (what the bound above prevents).
#[test]
fn without_the_bound_the_relay_times_the_function_out() {
    let read_timeout = Duration::from_secs(4);
    let (_relay, _function, through_relay, _front) =
        function_behind_a_relay("lambda-copy-unbounded", "600", read_timeout);
    let (status, out, took) = layer_through(&through_relay);
    assert_eq!(status, 504, "{out}");
    assert!(took >= read_timeout, "took {took:?}");
}

/// The function's default bound stays under the template's timeout, with room for the answer.
#[test]
fn the_default_bound_is_under_the_templates_timeout() {
    let bound = registry_mirror::native::drive::DEFAULT_COPY_TIMEOUT;
    let timeout = template_origin_read_timeout();
    assert!(
        bound + Duration::from_secs(5) <= timeout,
        "{bound:?} against {timeout:?}"
    );
}

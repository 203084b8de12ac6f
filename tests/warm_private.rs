//! `warm --user` of a private image, as an operator warms a private app before a rollout: the
//! store then serves that image to the account's own clients, from the store, and to nobody the
//! upstream would refuse: not from a fresh tag record (`TAG_TTL_SECS`) while Docker Hub is up,
//! not as a stale answer while it is down. On a directory and on a bucket.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::commands::{assert_no_blob_fetched, command, store_settings};
use support::faults::{Fault, FaultFront};
use support::fixture::{fixture, run_dir, ALICE};
use support::images::PRIVATE;
use support::mirrors::{LocalServer, Mirror, Runtime};
use support::suite::{assert_same_as_direct, curl, mirror_token};

const MANIFEST_TYPES: &str = "Accept: application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// What an anonymous client gets for the private manifest by tag: its status.
fn anonymous_manifest_status(mirror: &Mirror) -> u16 {
    let (repository, tag) = PRIVATE.split_once(':').unwrap();
    let token = mirror_token(
        mirror,
        &format!("/token?scope=repository:{repository}:pull"),
        &[],
    );
    let auth = format!("Authorization: Bearer {token}");
    let path = format!("/v2/{repository}/manifests/{tag}");
    curl(mirror, &path, &["-H", &auth, "-H", MANIFEST_TYPES]).0
}

fn warm_as_alice_then_check(label: &str, front: &FaultFront, settings: &[(String, String)]) {
    let mut settings = settings.to_vec();
    settings.push(("TAG_TTL_SECS".into(), "3600".into()));
    let user = format!("{}:{}", ALICE.0, ALICE.1);
    let (status, out, _) = command(&settings, &["warm", "--user", &user, PRIVATE]);
    assert_eq!(status, 0, "{label}: warm failed: {out}");

    // An open mirror on that store, with no account of its own: anonymous clients are refused,
    // as Docker Hub refuses them, while it is up and while it is down.
    let mirror = LocalServer.start(label, &settings);
    let refused = |status: u16| matches!(status, 401 | 403 | 404 | 503);
    let status = anonymous_manifest_status(&mirror);
    assert!(
        refused(status),
        "{label}: anonymous, Docker Hub up: {status}"
    );
    front.set(Fault::Down);
    let status = anonymous_manifest_status(&mirror);
    front.set(Fault::None);
    assert!(
        refused(status),
        "{label}: anonymous, Docker Hub down: {status}"
    );
    let anonymous = support::clients::skopeo_copy(&format!("{}/{PRIVATE}", mirror.addr), None, &[]);
    assert!(
        anonymous.is_err(),
        "{label}: an anonymous pull got the private image"
    );

    // Alice, through the mirror: the whole image, every blob from the store.
    let logged = mirror.requests().len();
    assert_same_as_direct(&mirror, PRIVATE, &[], Some(ALICE));
    assert_no_blob_fetched(&mirror, logged);
}

#[test]
fn a_private_image_warmed_with_an_account_serves_that_account_only() {
    let f = fixture();
    let front = FaultFront::start(&f.registry, f.token_port, f.storage_port);

    let dir = run_dir().join("warm-private-directory");
    warm_as_alice_then_check(
        "warm-private-directory",
        &front,
        &store_settings(&dir, &front),
    );

    let bucket = f.create_bucket("warm-private");
    let mut settings: Vec<(String, String)> = store_settings(&dir, &front)
        .into_iter()
        .filter(|(k, _)| k != "CACHE")
        .collect();
    settings.extend(f.bucket_settings(&bucket, "mirror"));
    warm_as_alice_then_check("warm-private-bucket", &front, &settings);
}

//! The container image (`scripts/build-image`, `deploy/Containerfile`): it builds here with
//! podman, runs as a non-root user with the store on a volume, and the static binary it holds
//! serves pulls against the fixture. (Containers themselves cannot run on this machine: the
//! binary is taken out of the image and run as it is.)
#![cfg(not(target_arch = "wasm32"))]

mod support;

use std::path::Path;
use std::process::Command;
use support::fixture::run_dir;
use support::images::V2S2;
use support::mirrors::{with, LocalServer};
use support::process::run;

const IMAGE: &str = "localhost/registry-mirror:test";

#[test]
fn the_image_builds_and_its_binary_serves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut build = Command::new(root.join("scripts/build-image"));
    build.env("IMAGE", IMAGE);
    run(build);

    let mut inspect = Command::new("podman");
    inspect.args(["image", "inspect", IMAGE, "--format"]).arg(
        "{{.Config.User}}|{{json .Config.Volumes}}|{{json .Config.Entrypoint}}|{{json .Config.Env}}",
    );
    let config = run(inspect);
    let fields: Vec<&str> = config.trim().split('|').collect();
    assert_eq!(fields[0], "65532:65532", "not a non-root user: {config}");
    assert!(fields[1].contains("/var/cache/registry-mirror"), "{config}");
    assert_eq!(fields[2], r#"["/usr/local/bin/registry-mirror"]"#);
    assert!(
        fields[3].contains("CACHE=file:///var/cache/registry-mirror"),
        "{config}"
    );

    // The binary, the CA roots and the store's directory, out of the image.
    let mut mount = Command::new("podman");
    mount.args(["image", "mount", IMAGE]);
    let mounted = run(mount).trim().to_string();
    let files = Path::new(&mounted);
    let program = run_dir().join("image-registry-mirror");
    std::fs::copy(files.join("usr/local/bin/registry-mirror"), &program).unwrap();
    let roots = std::fs::metadata(files.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    let store = std::fs::metadata(files.join("var/cache/registry-mirror")).unwrap();
    let mut unmount = Command::new("podman");
    unmount.args(["image", "unmount", IMAGE]);
    run(unmount);
    assert!(roots.len() > 10_000, "no CA roots in the image");
    use std::os::unix::fs::MetadataExt;
    assert!(
        store.is_dir() && store.uid() == 65532,
        "the store is not the user's"
    );
    let mut ldd = Command::new("ldd");
    ldd.arg(&program);
    let linked = run(ldd);
    assert!(
        linked.contains("statically linked"),
        "not a static binary: {linked}"
    );

    let mirror = LocalServer::start_program(&program, "image", &with(&[]));
    support::suite::assert_same_as_direct(&mirror, V2S2, &[], None);
}

//! Test images, built offline with umoci and pushed to the fixture registry with skopeo: an OCI
//! image, a Docker v2 schema 2 image, an OCI index and a Docker manifest list (amd64 and arm64), a
//! namespaced repository, a private one, and one with a 64 MiB layer.

use super::fixture::PUSHER;
use super::process::{need, run};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

/// What the registry holds for one `repository:tag`.
#[derive(Debug, Clone)]
pub struct Image {
    pub repository: String,
    pub tag: String,
    /// The digest of the manifest (or index) the tag names.
    pub manifest_digest: String,
    /// The config digest of the linux/amd64 image: what dockerd shows as the image ID.
    pub config_digest: String,
    /// The config and layer digests of a single-arch image (empty for lists).
    pub blob_digests: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Images {
    by_reference: BTreeMap<String, Image>,
}

impl Images {
    /// An image by `repository:tag`, as pushed (`library/alpine:oci`).
    pub fn get(&self, reference: &str) -> &Image {
        self.by_reference
            .get(reference)
            .unwrap_or_else(|| panic!("no test image {reference}"))
    }
}

pub const OCI: &str = "library/alpine:oci";
pub const V2S2: &str = "library/alpine:v2s2";
pub const OCI_INDEX: &str = "library/multi:oci-index";
pub const DOCKER_LIST: &str = "library/multi:docker-list";
pub const NAMESPACED: &str = "team/app:1.0";
pub const PRIVATE: &str = "private/secret:1";
pub const BIG: &str = "library/big:latest";
/// On the registry standing in for ghcr.io; `Images::get("ghcr.io/owner/app:1.0")` describes it.
pub const GHCR_APP: &str = "owner/app:1.0";
/// The big image's layer is at least this large.
pub const BIG_LAYER: usize = 64 * 1024 * 1024;

fn umoci(args: &[&str], dir: &Path) {
    let mut command = Command::new(need("umoci"));
    command.args(args).current_dir(dir);
    run(command);
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes
}

/// Makes `tag` in the layout from `base`, with `files` added and the given architecture.
fn make_image(dir: &Path, tag: &str, arch: &str, files: &[(&str, Vec<u8>)]) {
    let bundle = dir.join(format!("bundle-{tag}"));
    umoci(
        &["unpack", "--image", "oci:base", bundle.to_str().unwrap()],
        dir,
    );
    for (name, content) in files {
        std::fs::write(bundle.join("rootfs").join(name), content).unwrap();
    }
    umoci(
        &[
            "repack",
            "--image",
            &format!("oci:{tag}"),
            bundle.to_str().unwrap(),
        ],
        dir,
    );
    umoci(
        &[
            "config",
            "--image",
            &format!("oci:{tag}"),
            "--config.cmd",
            "/hello",
            "--os",
            "linux",
            "--architecture",
            arch,
        ],
        dir,
    );
    std::fs::remove_dir_all(&bundle).unwrap();
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Adds an OCI image index named `name` over the layout's `tags` (amd64 first, then arm64).
fn make_index(dir: &Path, name: &str, tags: &[(&str, &str)]) {
    let layout = dir.join("oci");
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let manifests = index["manifests"].as_array().unwrap().clone();
    let mut entries = Vec::new();
    for (tag, arch) in tags {
        let descriptor = manifests
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == *tag)
            .unwrap_or_else(|| panic!("no {tag} in the layout"));
        entries.push(serde_json::json!({
            "mediaType": descriptor["mediaType"],
            "digest": descriptor["digest"],
            "size": descriptor["size"],
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let blob = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))
    .unwrap();
    let digest = sha256(&blob);
    let hex = digest.trim_start_matches("sha256:");
    std::fs::write(layout.join("blobs/sha256").join(hex), &blob).unwrap();
    index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": blob.len(),
            "annotations": {"org.opencontainers.image.ref.name": name},
        }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

fn push(dir: &Path, registry: &str, tag: &str, destination: &str, extra: &[&str]) {
    let mut command = Command::new(need("skopeo"));
    command
        .arg("copy")
        .arg("-q")
        .arg("--dest-tls-verify=false")
        .arg("--dest-creds")
        .arg(format!("{}:{}", PUSHER.0, PUSHER.1))
        .args(extra)
        .arg(format!("oci:oci:{tag}"))
        .arg(format!("docker://{registry}/{destination}"))
        .current_dir(dir);
    run(command);
}

/// The raw manifest the registry serves for `reference` (a tag or `@digest`).
pub fn raw_manifest(registry: &str, reference: &str) -> Vec<u8> {
    let mut command = Command::new(need("skopeo"));
    command
        .args(["inspect", "--raw", "--tls-verify=false", "--creds"])
        .arg(format!("{}:{}", PUSHER.0, PUSHER.1))
        .arg(format!("docker://{registry}/{reference}"));
    run(command).into_bytes()
}

fn describe(registry: &str, reference: &str) -> Image {
    let raw = raw_manifest(registry, reference);
    let (repository, tag) = reference.split_once(':').unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let config_digest = match manifest["manifests"].as_array() {
        Some(list) => {
            let amd64 = list
                .iter()
                .find(|m| m["platform"]["architecture"] == "amd64")
                .expect("an amd64 entry");
            let child = raw_manifest(
                registry,
                &format!("{repository}@{}", amd64["digest"].as_str().unwrap()),
            );
            let child: serde_json::Value = serde_json::from_slice(&child).unwrap();
            child["config"]["digest"].as_str().unwrap().to_string()
        }
        None => manifest["config"]["digest"].as_str().unwrap().to_string(),
    };
    let blob_digests = match manifest["layers"].as_array() {
        Some(layers) => std::iter::once(config_digest.clone())
            .chain(
                layers
                    .iter()
                    .map(|l| l["digest"].as_str().unwrap().to_string()),
            )
            .collect(),
        None => Vec::new(),
    };
    Image {
        blob_digests,
        repository: repository.to_string(),
        tag: tag.to_string(),
        manifest_digest: sha256(&raw),
        config_digest,
    }
}

pub fn build_and_push(dir: &Path, registry: &str, ghcr: &str) -> Images {
    std::fs::create_dir_all(dir).unwrap();
    umoci(&["init", "--layout", "oci"], dir);
    umoci(&["new", "--image", "oci:base"], dir);
    make_image(
        dir,
        "small",
        "amd64",
        &[
            ("hello.txt", b"hello from the fixture\n".to_vec()),
            ("data.bin", random_bytes(1 << 20)),
        ],
    );
    make_image(
        dir,
        "multi-amd64",
        "amd64",
        &[
            ("arch.txt", b"amd64\n".to_vec()),
            ("data.bin", random_bytes(256 << 10)),
        ],
    );
    make_image(
        dir,
        "multi-arm64",
        "arm64",
        &[
            ("arch.txt", b"arm64\n".to_vec()),
            ("data.bin", random_bytes(256 << 10)),
        ],
    );
    // The private repository's own layer, in no public image: a stored copy of it must not be
    // reachable through a public repository's path.
    make_image(
        dir,
        "secret",
        "amd64",
        &[
            ("secret.txt", b"only alice may read this\n".to_vec()),
            ("data.bin", random_bytes(300 << 10)),
        ],
    );
    make_image(
        dir,
        "big",
        "amd64",
        &[("big.bin", random_bytes(BIG_LAYER + 4096))],
    );
    make_image(
        dir,
        "ghcr-app",
        "amd64",
        &[
            ("app.txt", b"from the ghcr.io stand-in\n".to_vec()),
            ("data.bin", random_bytes(512 << 10)),
        ],
    );
    make_index(
        dir,
        "multi",
        &[("multi-amd64", "amd64"), ("multi-arm64", "arm64")],
    );

    let v2s2: &[&str] = &["--format", "v2s2"];
    push(dir, registry, "small", OCI, &[]);
    push(dir, registry, "small", V2S2, v2s2);
    push(dir, registry, "small", NAMESPACED, v2s2);
    push(dir, registry, "secret", PRIVATE, v2s2);
    push(dir, registry, "big", BIG, v2s2);
    push(dir, registry, "multi", OCI_INDEX, &["--all"]);
    push(
        dir,
        registry,
        "multi",
        DOCKER_LIST,
        &["--all", "--format", "v2s2"],
    );

    push(dir, ghcr, "ghcr-app", GHCR_APP, v2s2);

    let mut by_reference: BTreeMap<String, Image> =
        [OCI, V2S2, NAMESPACED, PRIVATE, BIG, OCI_INDEX, DOCKER_LIST]
            .iter()
            .map(|r| (r.to_string(), describe(registry, r)))
            .collect();
    by_reference.insert(format!("ghcr.io/{GHCR_APP}"), describe(ghcr, GHCR_APP));
    let images = Images { by_reference };
    let list = raw_manifest(registry, DOCKER_LIST);
    assert!(
        String::from_utf8_lossy(&list)
            .contains("application/vnd.docker.distribution.manifest.list.v2+json"),
        "skopeo did not push a Docker manifest list: {}",
        String::from_utf8_lossy(&list)
    );
    images
}

//! The client suite: every case a user cares about, written once and run against each runtime
//! (`client_suite!` in a runtime's test file makes one `#[test]` per case).
//!
//! Each case pulls with a real client through the mirror and checks what it got against a direct
//! pull from the fixture registry: same manifest digests, same config digests, same bytes.

use super::clients::*;
use super::fixture::{fixture, ALICE, BOB, CAROL};
use super::images::*;
use super::mirrors::{Mirror, Mirrors};
use std::process::Command;

/// `library/alpine:oci` → `alpine:oci`: the short name a user types for an official image.
fn short(reference: &str) -> &str {
    reference.strip_prefix("library/").unwrap_or(reference)
}

/// `alpine:oci` → `library/alpine:oci`: the name the upstream registry knows.
fn full(reference: &str) -> String {
    if reference.contains('/') {
        reference.to_string()
    } else {
        format!("library/{reference}")
    }
}

fn via(mirror: &Mirror, reference: &str) -> String {
    format!("{}/{reference}", mirror.addr)
}

/// The token the mirror's `/token` answers (asserting a 200 without a refresh token).
pub fn mirror_token(mirror: &Mirror, path: &str, args: &[&str]) -> String {
    let (status, out) = curl(mirror, path, args);
    assert_eq!(status, 200, "{out}");
    let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
    assert!(!body.contains("refresh_token"), "{body}");
    let answer: serde_json::Value = serde_json::from_str(body).unwrap();
    answer["token"].as_str().unwrap().to_string()
}

pub fn assert_same_as_direct(
    mirror: &Mirror,
    reference: &str,
    extra: &[&str],
    creds: Option<Credentials>,
) {
    let dir = skopeo_copy(&via(mirror, reference), creds, extra)
        .unwrap_or_else(|e| panic!("skopeo through the mirror, {reference}: {e}"));
    let expected = direct_copy(&full(reference), extra);
    assert_eq!(
        dir_digests(&dir),
        expected,
        "{reference} through the mirror differs from a direct pull"
    );
    std::fs::remove_dir_all(dir).ok();
}

pub fn skopeo_pulls_every_image(m: &Mirrors) {
    let mirror = m.open();
    for reference in [OCI, V2S2, NAMESPACED, BIG] {
        assert_same_as_direct(mirror, reference, &[], None);
    }
    for reference in [OCI_INDEX, DOCKER_LIST] {
        assert_same_as_direct(mirror, reference, &["--all"], None);
    }
}

pub fn skopeo_pulls_short_names(m: &Mirrors) {
    let mirror = m.open();
    for reference in [OCI, V2S2, OCI_INDEX] {
        assert_same_as_direct(mirror, short(reference), &[], None);
    }
}

pub fn skopeo_follows_passed_redirects(m: &Mirrors) {
    let mirror = m.pass();
    let before = fixture().storage_blob_gets();
    assert_same_as_direct(mirror, V2S2, &[], None);
    assert!(
        fixture().storage_blob_gets() > before,
        "the client fetched blobs from storage itself"
    );
}

pub fn blobs_come_from_storage_through_the_mirror(m: &Mirrors) {
    let mirror = m.open();
    let before = fixture().storage_blob_gets();
    assert_same_as_direct(mirror, NAMESPACED, &[], None);
    assert!(
        fixture().storage_blob_gets() > before,
        "the blobs did not come through the storage redirect"
    );
}

pub fn private_repositories_need_the_users_credentials(m: &Mirrors) {
    let mirror = m.open();
    assert_same_as_direct(mirror, PRIVATE, &[], Some(ALICE));
    let anonymous = skopeo_copy(&via(mirror, PRIVATE), None, &[]);
    assert!(
        anonymous.is_err(),
        "an anonymous pull of a private repository succeeded"
    );
    let bob = skopeo_copy(&via(mirror, PRIVATE), Some(BOB), &[]);
    assert!(bob.is_err(), "bob pulled alice's private repository");
}

pub fn assert_docker_pulled(dockerd: &Dockerd, local_name: &str, image: &Image) {
    assert_eq!(
        dockerd.image_id(local_name),
        image.config_digest,
        "image ID of {local_name}"
    );
    let digests = dockerd.repo_digests(local_name);
    assert!(
        digests.contains(&image.manifest_digest),
        "{local_name}: {digests} lacks {}",
        image.manifest_digest
    );
}

pub fn dockerd_pulls_short_names_through_registry_mirrors(m: &Mirrors) {
    let mirror = m.open();
    let dockerd = Dockerd::start(&mirror.addr);
    let before = mirror.count("manifest", 200);
    for reference in [OCI, V2S2, OCI_INDEX, DOCKER_LIST, NAMESPACED, BIG] {
        let name = short(reference);
        let (ok, out) = dockerd.docker(None, &["pull", name]);
        assert!(ok, "docker pull {name}: {out}");
        assert_docker_pulled(&dockerd, name, fixture().images.get(reference));
    }
    // Offline, dockerd's silent fallback to Docker Hub cannot succeed: these pulls came through
    // the mirror, and its log says so.
    assert!(
        mirror.count("manifest", 200) >= before + 6,
        "the mirror's log does not show the pulls"
    );
}

pub fn dockerd_pulls_explicit_mirror_names(m: &Mirrors) {
    let mirror = m.open();
    let dockerd = Dockerd::start(&mirror.addr);
    for reference in [
        V2S2.to_string(),
        short(OCI).to_string(),
        NAMESPACED.to_string(),
        short(DOCKER_LIST).to_string(),
    ] {
        let name = via(mirror, &reference);
        let (ok, out) = dockerd.docker(None, &["pull", &name]);
        assert!(ok, "docker pull {name}: {out}");
        assert_docker_pulled(&dockerd, &name, fixture().images.get(&full(&reference)));
    }
}

pub fn podman_pulls_by_name_and_through_a_registries_conf_mirror(m: &Mirrors) {
    let mirror = m.open();
    for reference in [V2S2, OCI_INDEX] {
        let id = podman_pull(&via(mirror, short(reference)), None, None)
            .unwrap_or_else(|e| panic!("podman pull: {e}"));
        assert_eq!(
            format!("sha256:{id}"),
            fixture().images.get(reference).config_digest
        );
    }
    let dir = scratch("podman-conf");
    let conf = write_file(
        &dir,
        "registries.conf",
        &format!(
            "[[registry]]\nprefix = \"docker.io\"\nlocation = \"registry-1.docker.io\"\n\n\
             [[registry.mirror]]\nlocation = \"{}\"\ninsecure = true\n",
            mirror.addr
        ),
    );
    let id = podman_pull(&format!("docker.io/{OCI}"), Some(&conf), None)
        .unwrap_or_else(|e| panic!("podman pull via mirror: {e}"));
    assert_eq!(
        format!("sha256:{id}"),
        fixture().images.get(OCI).config_digest
    );
}

fn assert_ctr_fetched(containerd: &Containerd, ns: &str, image: &Image) {
    let digests = containerd.content_digests(ns);
    for digest in [&image.manifest_digest, &image.config_digest] {
        assert!(
            digests.contains(digest),
            "{ns}: {digest} missing from {digests:?}"
        );
        assert_eq!(&containerd.content_sha256(ns, digest), digest);
    }
}

pub fn ctr_fetches_full_and_short_names(m: &Mirrors) {
    let mirror = m.open();
    let containerd = containerd();
    for reference in [
        OCI.to_string(),
        short(OCI_INDEX).to_string(),
        NAMESPACED.to_string(),
    ] {
        let ns = namespace("ctr");
        let name = via(mirror, &reference);
        let (ok, out) = containerd.ctr(
            &ns,
            &[
                "content",
                "fetch",
                "--plain-http",
                "--platform",
                "linux/amd64",
                &name,
            ],
        );
        assert!(ok, "ctr content fetch {name}: {out}");
        assert_ctr_fetched(containerd, &ns, fixture().images.get(&full(&reference)));
    }
}

pub fn ctr_uses_the_mirror_from_hosts_toml(m: &Mirrors) {
    let mirror = m.open();
    let containerd = containerd();
    let hosts = scratch("hosts-d");
    std::fs::create_dir_all(hosts.join("docker.io")).unwrap();
    write_file(
        &hosts.join("docker.io"),
        "hosts.toml",
        &format!(
            "server = \"https://registry-1.docker.io\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            mirror.addr
        ),
    );
    let ns = namespace("ctr-hosts");
    let (ok, out) = containerd.ctr(
        &ns,
        &[
            "content",
            "fetch",
            "--hosts-dir",
            hosts.to_str().unwrap(),
            "--platform",
            "linux/amd64",
            &format!("docker.io/{DOCKER_LIST}"),
        ],
    );
    assert!(ok, "ctr content fetch through hosts.toml: {out}");
    assert_ctr_fetched(containerd, &ns, fixture().images.get(DOCKER_LIST));
}

pub fn oci_client_pulls_full_and_short_names(m: &Mirrors) {
    let mirror = m.open();
    for (name, reference) in [
        (via(mirror, OCI), OCI),
        (via(mirror, short(V2S2)), V2S2),
        (via(mirror, NAMESPACED), NAMESPACED),
    ] {
        let pulled =
            oci_client_pull(&name, None).unwrap_or_else(|e| panic!("oci-client pull {name}: {e}"));
        let image = fixture().images.get(reference);
        assert_eq!(pulled.manifest_digest, image.manifest_digest, "{name}");
        assert_eq!(pulled.config_digest, image.config_digest, "{name}");
        assert!(!pulled.layers.is_empty());
        for (declared, received) in &pulled.layers {
            assert_eq!(declared, received, "{name}: layer bytes");
        }
    }
}

/// `curl` against the mirror: (status, headers and body).
pub fn curl(mirror: &Mirror, path: &str, args: &[&str]) -> (u16, String) {
    let mut command = Command::new("curl");
    command
        .args(["-s", "-i", "-o", "-", "--max-time", "30"])
        .args(args)
        .arg(format!("http://{}{path}", mirror.addr));
    let out = run_ok(command);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

pub fn push_and_bad_input_get_registry_errors(m: &Mirrors) {
    let mirror = m.open();
    for (method, path, status, code) in [
        (
            "PUT",
            "/v2/library/alpine/manifests/latest",
            405,
            "UNSUPPORTED",
        ),
        (
            "POST",
            "/v2/library/alpine/blobs/uploads/",
            405,
            "UNSUPPORTED",
        ),
        (
            "DELETE",
            "/v2/library/alpine/manifests/latest",
            405,
            "UNSUPPORTED",
        ),
        (
            "GET",
            "/v2/Library/alpine/manifests/latest",
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/library/..%2F..%2Fetc/manifests/latest",
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/library/alpine/manifests/sha256:1234",
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/library/alpine/blobs/not-a-digest",
            400,
            "DIGEST_INVALID",
        ),
        ("GET", "/v2/library/alpine/manifests/-x", 400, "TAG_INVALID"),
    ] {
        let (got, out) = curl(mirror, path, &["-X", method]);
        assert_eq!(got, status, "{method} {path}: {out}");
        assert!(
            out.contains(&format!("\"code\":\"{code}\"")),
            "{method} {path}: {out}"
        );
    }
    let push = Command::new(super::process::need("skopeo"))
        .args(["copy", "--dest-tls-verify=false", "--dest-no-creds"])
        .arg(format!("docker://{}/{V2S2}", mirror.addr))
        .arg(format!("docker://{}/library/pushed:1", mirror.addr))
        .output()
        .unwrap();
    assert!(
        !push.status.success(),
        "a push through the read-only mirror succeeded"
    );
    let (status, _) = curl(mirror, "/v2/library/doesnotexist/manifests/latest", &[]);
    assert!(status == 401 || status == 404, "{status}");
    // The mirror still serves after all that.
    let (status, _) = curl(mirror, "/v2/", &[]);
    assert_eq!(status, 401);
}

// ---- WHITE_LIST ----

pub fn whitelist_admits_listed_users_with_the_right_password(m: &Mirrors) {
    let mirror = m.whitelist();
    assert_same_as_direct(mirror, V2S2, &[], Some(ALICE));
    assert_same_as_direct(mirror, short(OCI), &[], Some(BOB));
    assert_same_as_direct(mirror, PRIVATE, &[], Some(ALICE));
    for (who, creds) in [
        ("alice with a wrong password", Some(("alice", "wrong"))),
        ("carol, who is not listed", Some(CAROL)),
        ("anonymous", None),
    ] {
        let result = skopeo_copy(&via(mirror, V2S2), creds, &[]);
        assert!(
            result.is_err(),
            "{who} pulled through the whitelisted mirror"
        );
    }
    let pulled =
        oci_client_pull(&via(mirror, NAMESPACED), Some(ALICE)).expect("oci-client as alice");
    assert_eq!(
        pulled.manifest_digest,
        fixture().images.get(NAMESPACED).manifest_digest
    );
    assert!(
        oci_client_pull(&via(mirror, NAMESPACED), None).is_err(),
        "oci-client anonymous"
    );
}

pub fn whitelist_refuses_upstream_forged_and_tampered_tokens(m: &Mirrors) {
    let mirror = m.whitelist();
    let path = "/v2/library/alpine/manifests/v2s2";
    let accept = "Accept: application/vnd.docker.distribution.manifest.v2+json";
    // A real mirror token works: the control.
    let token = mirror_token(
        mirror,
        "/token?service=x&scope=repository:library/alpine:pull",
        &["-u", &format!("{}:{}", ALICE.0, ALICE.1)],
    );
    let (status, out) = curl(
        mirror,
        path,
        &[
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            accept,
        ],
    );
    assert_eq!(status, 200, "{out}");

    let upstream = fixture().upstream_token("repository:library/alpine:pull", Some(ALICE));
    let mut tampered = token.clone().into_bytes();
    let at = 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let forged =
        "rm1.eyJzdWIiOiJtYWxsb3J5IiwicmVnIjoiZG9ja2VyLmlvIiwiZXhwIjo5OTk5OTk5OTk5fQ.c2lnbmF0dXJl";
    for (what, token) in [
        ("an upstream token", upstream.as_str()),
        ("a tampered token", &tampered),
        ("a forged token", forged),
    ] {
        let (status, out) = curl(
            mirror,
            path,
            &[
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-H",
                accept,
            ],
        );
        assert_eq!(status, 401, "{what}: {out}");
        assert!(
            out.to_ascii_lowercase()
                .contains("www-authenticate: bearer realm=\"http://"),
            "{what}: {out}"
        );
        let (status, _) = curl(
            mirror,
            "/v2/",
            &["-H", &format!("Authorization: Bearer {token}")],
        );
        assert_eq!(status, 401, "{what} on /v2/");
    }
}

pub fn whitelist_containerd_user_pulls_with_the_oauth_post(m: &Mirrors) {
    let mirror = m.whitelist();
    let containerd = containerd();
    let before = mirror.count("token", 200);
    let ns = namespace("ctr-user");
    let name = via(mirror, OCI);
    let user = format!("{}:{}", ALICE.0, ALICE.1);
    let (ok, out) = containerd.ctr(
        &ns,
        &["content", "fetch", "--plain-http", "--user", &user, &name],
    );
    assert!(ok, "ctr --user alice: {out}");
    assert_ctr_fetched(containerd, &ns, fixture().images.get(OCI));
    let posts = mirror
        .requests()
        .iter()
        .filter(|r| r["method"] == "POST" && r["route"] == "token" && r["status"] == 200)
        .count();
    assert!(
        posts >= 1 && mirror.count("token", 200) > before,
        "containerd did not use the OAuth POST"
    );
    let ns = namespace("ctr-carol");
    let user = format!("{}:{}", CAROL.0, CAROL.1);
    let (ok, _) = containerd.ctr(
        &ns,
        &["content", "fetch", "--plain-http", "--user", &user, &name],
    );
    assert!(
        !ok,
        "carol (not listed) fetched through the whitelisted mirror"
    );
}

pub fn whitelist_docker_login_and_pulls(m: &Mirrors) {
    let mirror = m.whitelist();
    let dockerd = Dockerd::start(&mirror.addr);
    for (who, creds) in [
        ("carol, not listed", CAROL),
        ("alice, wrong password", ("alice", "nope")),
    ] {
        let config = docker_config(&[]);
        let (ok, out) = dockerd.login(&config, &mirror.addr, creds);
        assert!(!ok, "docker login as {who} succeeded: {out}");
    }
    let config = docker_config(&[]);
    let (ok, out) = dockerd.login(&config, &mirror.addr, ALICE);
    assert!(ok, "docker login as alice: {out}");
    let name = via(mirror, V2S2);
    let (ok, out) = dockerd.docker(Some(&config), &["pull", &name]);
    assert!(ok, "docker pull {name} after login: {out}");
    assert_docker_pulled(&dockerd, &name, fixture().images.get(V2S2));
    let (ok, _) = dockerd.docker(
        Some(&docker_config(&[])),
        &["pull", &via(mirror, NAMESPACED)],
    );
    assert!(
        !ok,
        "an anonymous docker pull through the whitelisted mirror succeeded"
    );
}

pub fn whitelist_dockerd_short_names_use_docker_hub_credentials(m: &Mirrors) {
    let mirror = m.whitelist();
    let dockerd = Dockerd::start(&mirror.addr);
    let anonymous = docker_config(&[]);
    let (ok, _) = dockerd.docker(Some(&anonymous), &["pull", short(OCI)]);
    assert!(
        !ok,
        "dockerd pulled through the whitelisted mirror with no credentials"
    );
    let hub = docker_config(&[("https://index.docker.io/v1/", BOB)]);
    for reference in [OCI, DOCKER_LIST] {
        let (ok, out) = dockerd.docker(Some(&hub), &["pull", short(reference)]);
        assert!(
            ok,
            "docker pull {} with Docker Hub credentials: {out}",
            short(reference)
        );
        assert_docker_pulled(&dockerd, short(reference), fixture().images.get(reference));
    }
    assert!(
        mirror.requests().iter().any(|r| r["user"] == "bob"),
        "the mirror's log does not name the user"
    );
}

pub fn secrets_never_reach_the_log(m: &Mirrors) {
    let mirror = m.whitelist();
    let _ = skopeo_copy(&via(mirror, V2S2), Some(ALICE), &[]).expect("a pull as alice");
    let _ = skopeo_copy(&via(mirror, V2S2), Some(("alice", "wrong-password")), &[]);
    let log = mirror.log_text();
    assert!(!log.is_empty());
    for secret in [
        ALICE.1,
        BOB.1,
        "wrong-password",
        super::mirrors::TOKEN_SECRET,
        "rm1.",
        "eyJ",
        "Basic ",
        "Bearer ",
    ] {
        assert!(!log.contains(secret), "the mirror's log holds {secret:?}");
    }
}

/// For runtimes with a shared cache: pulling an image a second time fetches none of its blobs from
/// storage again (counted in the storage front's log), and the mirror's log shows cache hits.
pub fn second_pull_is_served_from_the_cache(m: &Mirrors) {
    let mirror = m.open();
    let image = fixture().images.get(NAMESPACED);
    let blobs = image.blob_digests.clone();
    let fetched = || fixture().storage_gets_of(&blobs);
    assert_same_as_direct(mirror, NAMESPACED, &[], None);
    let after_first = fetched();
    assert!(
        after_first >= blobs.len(),
        "the first pull did not fetch the blobs from storage"
    );
    let hits_before = mirror
        .requests()
        .iter()
        .filter(|r| r["cache"] == "hit")
        .count();
    assert_same_as_direct(mirror, NAMESPACED, &[], None);
    assert_eq!(
        fetched(),
        after_first,
        "the second pull fetched blobs from storage again"
    );
    let hits = mirror
        .requests()
        .iter()
        .filter(|r| r["cache"] == "hit")
        .count()
        - hits_before;
    assert!(
        hits >= blobs.len(),
        "the mirror's log shows {hits} cache hits for {} blobs",
        blobs.len()
    );
}

/// For runtimes that redirect large blobs: the big layer comes as a 307 to storage, the pull is
/// right, and small blobs still stream through the mirror.
pub fn big_layers_are_redirected(m: &Mirrors) {
    let mirror = m.open();
    assert_same_as_direct(mirror, BIG, &[], None);
    let blobs = mirror.requests();
    let blob_lines: Vec<_> = blobs
        .iter()
        .filter(|r| r["route"] == "blob" && r["method"] == "GET")
        .collect();
    assert!(
        blob_lines.iter().any(|r| r["status"] == 307),
        "no blob was redirected: {blob_lines:?}"
    );
    assert!(
        blob_lines.iter().any(|r| r["status"] == 200),
        "no blob was streamed: {blob_lines:?}"
    );
}

/// `HEAD` of a manifest answers its `Content-Length` and `Docker-Content-Digest`, as dockerd and
/// containerd need (without them dockerd refuses the pull, containerd falls back to `GET`).
pub fn head_keeps_content_length(m: &Mirrors) {
    let mirror = m.open();
    let image = fixture().images.get(V2S2);
    let raw = raw_manifest(&fixture().registry, V2S2);
    let token = mirror_token(mirror, "/token?scope=repository:alpine:pull", &[]);
    let ask = |method: &str| {
        let (status, out) = curl(
            mirror,
            "/v2/alpine/manifests/v2s2",
            &[
                if method == "HEAD" { "-I" } else { "-s" },
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-H",
                "Accept: application/vnd.docker.distribution.manifest.v2+json",
            ],
        );
        assert_eq!(status, 200, "{out}");
        let head = out[..out.find("\r\n\r\n").unwrap_or(out.len())].to_ascii_lowercase();
        let length = head.contains(&format!("content-length: {}\r\n", raw.len()))
            || head.ends_with(&format!("content-length: {}", raw.len()));
        let digest = head.contains(&format!("docker-content-digest: {}", image.manifest_digest));
        (length, digest, out)
    };
    // A GET always carries both, as dockerd needs.
    let (length, digest, out) = ask("GET");
    assert!(
        length && digest,
        "GET lacks Content-Length {} or the digest: {out}",
        raw.len()
    );
    let (length, digest, out) = ask("HEAD");
    if m.runtime().name() == "lambda" {
        // Behind a function URL nothing says a HEAD keeps its length (the stand-in drops it): the
        // mirror sends no digest, so dockerd and containerd take the manifest by GET instead.
        assert!(
            !digest,
            "a manifest HEAD behind a function URL names its digest: {out}"
        );
    } else {
        assert!(
            length,
            "HEAD lacks the manifest's Content-Length {}: {out}",
            raw.len()
        );
        assert!(digest, "{out}");
    }
}

// ---- More registries, the page and search ----

/// The ghcr.io stand-in's image, by its full name.
const GHCR_IMAGE: &str = "ghcr.io/owner/app:1.0";

fn ghcr_direct() -> std::collections::BTreeMap<String, String> {
    let dir = skopeo_copy(
        &format!("{}/{GHCR_APP}", fixture().ghcr),
        Some(super::fixture::PUSHER),
        &[],
    )
    .expect("a direct pull from the ghcr.io stand-in");
    let digests = dir_digests(&dir);
    std::fs::remove_dir_all(dir).ok();
    digests
}

fn served_upstream(mirror: &Mirror, upstream: &str) -> usize {
    mirror
        .requests()
        .iter()
        .filter(|r| r["upstream"] == upstream && r["route"] == "manifest" && r["status"] == 200)
        .count()
}

/// With `WHITE_LIST`, who may pull is Docker Hub's to say for every registry: the ghcr.io
/// stand-in's token service hands anyone a token for public images, yet a wrong password is
/// refused, and the user's credentials never reach that token service.
pub fn whitelist_identity_is_docker_hubs_for_every_registry(m: &Mirrors) {
    let mirror = m.whitelist();
    let wrong = skopeo_copy(&via(mirror, GHCR_IMAGE), Some(("alice", "wrong")), &[]);
    assert!(
        wrong.is_err(),
        "alice with a wrong password pulled from ghcr.io"
    );
    let dir = skopeo_copy(&via(mirror, GHCR_IMAGE), Some(ALICE), &[])
        .unwrap_or_else(|e| panic!("alice through the whitelisted mirror: {e}"));
    assert_eq!(dir_digests(&dir), ghcr_direct());
    std::fs::remove_dir_all(dir).ok();
    let log = std::fs::read_to_string(&fixture().token_log).unwrap();
    for line in log
        .lines()
        .filter(|l| l.contains(super::fixture::GHCR_SERVICE))
    {
        assert!(
            !line.contains("\"alice\""),
            "ghcr.io's token service saw alice: {line}"
        );
    }
}

pub fn second_registry_by_path_prefix(m: &Mirrors) {
    let mirror = m.open();
    let image = fixture().images.get(GHCR_IMAGE);
    let dir =
        skopeo_copy(&via(mirror, GHCR_IMAGE), None, &[]).unwrap_or_else(|e| panic!("skopeo: {e}"));
    assert_eq!(
        dir_digests(&dir),
        ghcr_direct(),
        "skopeo through the path prefix"
    );
    let dockerd = Dockerd::start(&mirror.addr);
    let name = via(mirror, GHCR_IMAGE);
    let (ok, out) = dockerd.docker(None, &["pull", &name]);
    assert!(ok, "docker pull {name}: {out}");
    assert_docker_pulled(&dockerd, &name, image);
    assert!(
        served_upstream(mirror, "ghcr.io") >= 2,
        "the mirror's log shows no ghcr.io pulls"
    );
}

pub fn second_registry_through_podman_and_containerd_mirrors(m: &Mirrors) {
    let mirror = m.open();
    let image = fixture().images.get(GHCR_IMAGE);
    // podman: a registries.conf mirror whose location is the mirror's path prefix.
    let dir = scratch("podman-ghcr");
    let conf = write_file(
        &dir,
        "registries.conf",
        &format!(
            "[[registry]]\nprefix = \"ghcr.io\"\nlocation = \"ghcr.io\"\n\n\
             [[registry.mirror]]\nlocation = \"{}/ghcr.io\"\ninsecure = true\n",
            mirror.addr
        ),
    );
    let id = podman_pull(GHCR_IMAGE, Some(&conf), None).unwrap_or_else(|e| panic!("podman: {e}"));
    assert_eq!(format!("sha256:{id}"), image.config_digest);
    // containerd: hosts.toml for ghcr.io, once with the mirror as a host (containerd adds
    // ?ns=ghcr.io), once with the path prefix and override_path.
    let containerd = containerd();
    for (label, host) in [
        ("ns", format!("[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n", mirror.addr)),
        (
            "override-path",
            format!(
                "[host.\"http://{}/v2/ghcr.io\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n",
                mirror.addr
            ),
        ),
    ] {
        let hosts = scratch("hosts-ghcr");
        std::fs::create_dir_all(hosts.join("ghcr.io")).unwrap();
        write_file(&hosts.join("ghcr.io"), "hosts.toml", &format!("server = \"https://ghcr.io\"\n\n{host}"));
        let ns = namespace("ctr-ghcr");
        let (ok, out) = containerd.ctr(
            &ns,
            &["content", "fetch", "--hosts-dir", hosts.to_str().unwrap(), "--platform", "linux/amd64", GHCR_IMAGE],
        );
        assert!(ok, "ctr through hosts.toml ({label}): {out}");
        assert_ctr_fetched(containerd, &ns, image);
    }
}

/// `curl` against the mirror as another host name, resolved to the mirror's address.
fn curl_as(mirror: &Mirror, host: &str, path: &str, args: &[&str]) -> (u16, Vec<u8>) {
    let port = mirror.addr.rsplit(':').next().unwrap();
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "30",
            "-w",
            "\n%{http_code}",
            "--resolve",
        ])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(args)
        .arg(format!("http://{host}:{port}{path}"))
        .output()
        .unwrap();
    let mut body = out.stdout;
    let split = body.iter().rposition(|&b| b == b'\n').unwrap();
    let status = String::from_utf8_lossy(&body[split + 1..])
        .trim()
        .parse()
        .unwrap_or(0);
    body.truncate(split);
    (status, body)
}

pub fn second_registry_by_its_own_host(m: &Mirrors) {
    use sha2::{Digest, Sha256};
    let mirror = m.open();
    let image = fixture().images.get(GHCR_IMAGE);
    let host = super::mirrors::GHCR_HOST;
    let (status, body) = curl_as(mirror, host, "/token?scope=repository:owner/app:pull", &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let auth = format!("Authorization: Bearer {}", token["token"].as_str().unwrap());
    let accept = "Accept: application/vnd.docker.distribution.manifest.v2+json";
    let (status, manifest) = curl_as(
        mirror,
        host,
        "/v2/owner/app/manifests/1.0",
        &["-H", &auth, "-H", accept],
    );
    assert_eq!(status, 200);
    assert_eq!(
        format!("sha256:{:x}", Sha256::digest(&manifest)),
        image.manifest_digest
    );
    for digest in &image.blob_digests {
        let (status, blob) = curl_as(
            mirror,
            host,
            &format!("/v2/owner/app/blobs/{digest}"),
            &["-L", "-H", &auth],
        );
        assert_eq!(status, 200, "blob {digest}");
        assert_eq!(&format!("sha256:{:x}", Sha256::digest(&blob)), digest);
    }
}

pub fn unknown_registries_are_never_dialled(m: &Mirrors) {
    let mirror = m.open();
    let bait = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    bait.set_nonblocking(true).unwrap();
    let target = bait.local_addr().unwrap().to_string();
    for path in [
        format!("/v2/owner/app/manifests/1?ns={target}"),
        format!(
            "/v2/owner/app/manifests/1?ns=localhost:{}",
            bait.local_addr().unwrap().port()
        ),
        "/v2/127.0.0.1/app/manifests/1".to_string(),
        "/v2/localhost/app/manifests/1".to_string(),
        "/token?scope=repository:127.0.0.1/app:pull".to_string(),
    ] {
        let (status, out) = curl(mirror, &path, &[]);
        assert_eq!(status, 404, "{path}: {out}");
        assert!(
            out.contains("NAME_UNKNOWN") && out.contains("docker.io"),
            "{path}: {out}"
        );
    }
    // A Host naming the bait only names the realm clients are sent to; the mirror dials nothing.
    let (_, out) = curl(
        mirror,
        "/v2/library/alpine/manifests/v2s2",
        &["-H", &format!("Host: {target}")],
    );
    assert!(!out.is_empty());
    std::thread::sleep(std::time::Duration::from_millis(300));
    match bait.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the mirror connected to a host that is no configured upstream: {other:?}"),
    }
}

pub fn docker_search_goes_through_the_mirror(m: &Mirrors) {
    let mirror = m.open();
    let (status, out) = curl(mirror, "/v1/search?q=team&n=10", &[]);
    assert_eq!(status, 200, "{out}");
    assert!(out.contains("team/app"), "{out}");
    let dockerd = Dockerd::start(&mirror.addr);
    let (ok, out) = dockerd.docker(None, &["search", &format!("{}/alpine", mirror.addr)]);
    assert!(ok, "docker search: {out}");
    assert!(
        out.contains("alpine") && out.contains("A minimal image for the fixture"),
        "{out}"
    );
}

/// The page in headless Chromium, in both languages, with a search; a screenshot is kept under
/// `target/`.
pub fn the_page_works_in_a_browser(m: &Mirrors) {
    let mirror = m.open();
    let chromium = super::process::need("chromium");
    let browse = |url: &str, extra: &[&str]| -> String {
        let profile = scratch("chromium");
        let out = Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=10000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(url)
            .output()
            .expect("run chromium");
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let base = format!("http://{}/", mirror.addr);
    let english = browse(&format!("{base}?lang=en"), &["--dump-dom"]);
    assert!(
        english.contains(&format!("<code id=\"host\">{}</code>", mirror.addr)),
        "{english}"
    );
    assert!(english.contains("Docker Hub mirror") && english.contains("registry-mirrors"));
    let chinese = browse(
        &base,
        &["--dump-dom", "--lang=zh-CN", "--accept-lang=zh-CN"],
    );
    assert!(
        chinese.contains("Docker Hub 镜像加速"),
        "the page did not follow Accept-Language: {chinese}"
    );
    let searched = browse(&format!("{base}?lang=en&q=alpine"), &["--dump-dom"]);
    assert!(
        searched.contains(&format!("docker pull {}/library/alpine", mirror.addr)),
        "the search showed no result: {searched}"
    );
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("page-{}.png", m.runtime().name()));
    browse(
        &format!("{base}?lang=zh&q=alpine"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1100,1800",
        ],
    );
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "no screenshot at {}",
        shot.display()
    );
}

// ---- The edges: whitelist, health ----

/// With `WHITE_LIST`, search needs a mirror token like every other request.
pub fn whitelist_guards_search(m: &Mirrors) {
    let mirror = m.whitelist();
    let (status, out) = curl(mirror, "/v1/search?q=alpine&n=25", &[]);
    assert_eq!(status, 401, "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{out}"
    );
    let token = mirror_token(
        mirror,
        "/token?scope=repository:alpine:pull",
        &["-u", &format!("{}:{}", ALICE.0, ALICE.1)],
    );
    let (status, out) = curl(
        mirror,
        "/v1/search?q=alpine&n=25",
        &["-H", &format!("Authorization: Bearer {token}")],
    );
    assert_eq!(status, 200, "{out}");
}

/// Taking a user off `WHITE_LIST` revokes the tokens they hold: a mirror with the same secret that
/// lists alice only refuses bob's token, and still takes alice's.
pub fn whitelist_removal_revokes_tokens(m: &Mirrors) {
    let listed = m.whitelist();
    let token_of = |creds: (&str, &str)| {
        mirror_token(
            listed,
            "/token?scope=repository:alpine:pull",
            &["-u", &format!("{}:{}", creds.0, creds.1)],
        )
    };
    let (bob, alice) = (token_of(BOB), token_of(ALICE));
    let alice_only = m.runtime().start(
        "alice-only",
        &super::mirrors::with(&[
            ("WHITE_LIST", "alice"),
            ("TOKEN_SECRET", super::mirrors::TOKEN_SECRET),
        ]),
    );
    let path = "/v2/library/alpine/manifests/v2s2";
    let accept = "Accept: application/vnd.docker.distribution.manifest.v2+json";
    let (status, out) = curl(
        &alice_only,
        path,
        &["-H", &format!("Authorization: Bearer {bob}"), "-H", accept],
    );
    assert_eq!(status, 401, "bob's token after his removal: {out}");
    let (status, out) = curl(
        &alice_only,
        path,
        &[
            "-H",
            &format!("Authorization: Bearer {alice}"),
            "-H",
            accept,
        ],
    );
    assert_eq!(status, 200, "alice's token: {out}");
}

/// A client's mistakes get 4xx, never `503 UNAVAILABLE`: a `Range` past the end of a blob is 416
/// (as storage says), and a digest of an algorithm no registry verifies is 400 DIGEST_INVALID,
/// answered without asking the upstream.
pub fn client_mistakes_are_4xx(m: &Mirrors) {
    let mirror = m.open();
    let image = fixture().images.get(V2S2);
    let layer = image.blob_digests.last().expect("a layer");
    let token = mirror_token(mirror, "/token?scope=repository:alpine:pull", &[]);
    let auth = format!("Authorization: Bearer {token}");
    let path = format!("/v2/library/alpine/blobs/{layer}");
    let (status, out) = curl(
        mirror,
        &path,
        &["-H", &auth, "-H", "Range: bytes=100000000-"],
    );
    assert_eq!(status, 416, "{out}");
    assert!(out.contains("RANGE_INVALID"), "{out}");
    let (status, out) = curl(mirror, &path, &["-H", &auth, "-H", "Range: bytes=0-9"]);
    assert!(
        status == 206 || status == 307,
        "a Range inside the blob: {out}"
    );

    let before = mirror.requests().len();
    let md5 = format!("/v2/library/alpine/blobs/md5:{}", "a".repeat(32));
    let (status, out) = curl(mirror, &md5, &["-H", &auth]);
    assert_eq!(status, 400, "{out}");
    assert!(out.contains("DIGEST_INVALID"), "{out}");
    let answered = mirror.requests();
    let line = answered[before..]
        .iter()
        .find(|r| r["status"] == 400)
        .unwrap_or_else(|| panic!("no log line for the md5 request: {answered:?}"));
    assert!(
        line["upstream"].is_null() || line["upstream"] == "-",
        "the md5 request went upstream: {line}"
    );
}

/// Wrong passwords are throttled per client address and user: after `allowed` of them (5 a minute,
/// in each process that counts), the mirror answers 429 with `Retry-After` without asking Docker
/// Hub; from another address the right password still logs in.
pub fn failed_logins_are_throttled(runtime: &dyn super::mirrors::Runtime, allowed: usize) {
    let mirror = runtime.start(
        "throttle",
        &super::mirrors::with(&[
            ("WHITE_LIST", "alice,bob"),
            ("TOKEN_SECRET", super::mirrors::TOKEN_SECRET),
        ]),
    );
    let path = "/token?scope=repository:alpine:pull";
    let refused_upstream = || {
        let log = std::fs::read_to_string(&fixture().token_log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(r#""user": "bob""#) && l.contains(r#""status": 401"#))
            .count()
    };
    let before = refused_upstream();
    // Every 401 is a password Docker Hub checked; a runtime with several instances (each counting
    // on its own) may answer 401 after another instance's first 429, so the bound is on the 401s
    // over three times as many attempts as are allowed, not on the order of the answers.
    let mut first_throttled = None;
    let mut let_through = 0;
    for attempt in 0..3 * allowed {
        let (status, out) = curl(
            &mirror,
            path,
            &["--interface", "127.0.0.1", "-u", "bob:wrong"],
        );
        match status {
            401 => let_through += 1,
            429 => {
                assert!(out.contains("TOOMANYREQUESTS"), "{out}");
                assert!(out.to_ascii_lowercase().contains("retry-after: "), "{out}");
                first_throttled.get_or_insert(attempt);
            }
            other => panic!("attempt {attempt}: {other}: {out}"),
        }
    }
    let attempt =
        first_throttled.unwrap_or_else(|| panic!("no 429 after {} wrong passwords", 3 * allowed));
    assert!(
        attempt >= 5,
        "throttled after only {attempt} wrong passwords"
    );
    assert!(
        let_through <= allowed,
        "{let_through} wrong passwords were checked, {allowed} allowed"
    );
    assert!(
        refused_upstream() - before <= allowed,
        "Docker Hub was asked {} times",
        refused_upstream() - before
    );
    let right = format!("{}:{}", BOB.0, BOB.1);
    let (status, out) = curl(&mirror, path, &["--interface", "127.0.0.2", "-u", &right]);
    assert_eq!(
        status, 200,
        "the right password from another address: {out}"
    );
}

/// A mirror started with `settings` that must not serve: a pull's first request answers `status`
/// (the runtime's way of saying it cannot run), and the log says `why`.
pub fn refuses_to_serve(
    runtime: &dyn super::mirrors::Runtime,
    label: &str,
    settings: &[(String, String)],
    status: u16,
    why: &str,
) {
    let mirror = runtime.start(label, settings);
    let (answered, out) = curl(&mirror, "/v2/library/alpine/manifests/v2s2", &[]);
    assert_eq!(answered, status, "{out}");
    let log = mirror.log_text();
    assert!(log.contains(why), "the log does not say {why:?}: {log}");
}

/// Load balancers check health with HTTP/1.0 and no Host header.
/// On Fastly the edge picks the service by Host, so a request without one never reaches the
/// mirror (Viceroy closes the connection): there the HTTP/1.0 check names a Host.
pub fn health_checks_need_no_host(m: &Mirrors) {
    let request: &[u8] = match m.runtime().name() {
        "fastly" => b"GET /healthz HTTP/1.0\r\nHost: mirror.example.com\r\n\r\n",
        _ => b"GET /healthz HTTP/1.0\r\n\r\n",
    };
    let (status, body) = raw(m.open(), request);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#"{"status":"ok"}"#), "{body}");
}

/// A blob through the mirror, fetched by curl, which checks nothing: whether curl saw the response
/// end whole, and `"<status> <bytes received>"`.
pub fn curl_blob(
    mirror: &Mirror,
    name: &str,
    digest: &str,
    token: &str,
    max_secs: u32,
) -> (bool, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
        ])
        .args(["--max-time", &max_secs.to_string(), "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://{}/v2/{name}/blobs/{digest}", mirror.addr))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

// ---- Hostile input ----

/// Sends raw bytes on a fresh connection; returns the status and the body.
fn raw(mirror: &Mirror, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&mirror.addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub fn malformed_requests_get_registry_errors(m: &Mirrors) {
    let mirror = m.open();
    let host = &mirror.addr;
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let long_url = format!("/v2/library/alpine/tags/list?x={}", "a".repeat(9000));
    let big_header = format!(
        "GET /v2/ HTTP/1.1\r\nHost: {host}\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(40 * 1024)
    );
    let big_form = "a".repeat(20 * 1024);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("upper-case name", get("/v2/Library/alpine/manifests/latest"), 400),
        // Some HTTP layers (Viceroy's) resolve the dots before the mirror sees the path.
        ("traversal", get("/v2/../../etc/passwd/manifests/latest"), 0),
        ("encoded traversal", get("/v2/library/%2e%2e%2f%2e%2e/manifests/latest"), 400),
        ("not UTF-8", get("/v2/%ff%fe/manifests/latest"), 400),
        ("bad digest", get("/v2/library/alpine/manifests/sha256:zzzz"), 400),
        ("short digest", get("/v2/library/alpine/blobs/sha256:abc"), 400),
        ("NUL in digest", get("/v2/library/alpine/blobs/sha256:%00"), 400),
        ("bad tag", get("/v2/library/alpine/manifests/.hidden"), 400),
        ("name too long", get(&format!("/v2/{}/manifests/latest", "a".repeat(300))), 400),
        ("URL too long", get(&long_url), 414),
        ("headers too large", big_header.into_bytes(), 431),
        ("bad base64", format!("GET /token HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic !!!notbase64\r\nConnection: close\r\n\r\n").into_bytes(), 401),
        ("no colon in Basic", format!("GET /token HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic YWxpY2U=\r\nConnection: close\r\n\r\n").into_bytes(), 401),
        // Viceroy's own HTTP layer closes the connection on such a Host before the mirror runs.
        (
            "bad Host",
            b"GET /v2/ HTTP/1.1\r\nHost: evil/x?y\r\nConnection: close\r\n\r\n".to_vec(),
            if m.runtime().name() == "fastly" { 1 } else { 400 },
        ),
        ("DELETE", format!("DELETE /v2/library/alpine/manifests/latest HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes(), 405),
        ("PUT", format!("PUT /v2/library/alpine/manifests/latest HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}").into_bytes(), 405),
        ("PATCH upload", format!("PATCH /v2/library/alpine/blobs/uploads/x HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes(), 405),
        ("OPTIONS", format!("OPTIONS /v2/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes(), 405),
        ("catalog", get("/v2/_catalog"), 405),
        ("unknown path", get("/etc/passwd"), 404),
        ("unknown ns", get("/v2/library/alpine/manifests/latest?ns=169.254.169.254"), 404),
        ("refresh grant", format!("POST /token HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 40\r\nConnection: close\r\n\r\ngrant_type=refresh_token&refresh_token=x").into_bytes(), 400),
        ("token form too large", format!("POST /token HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big_form}", big_form.len()).into_bytes(), 413),
        ("search without q", get("/v1/search?n=5"), 400),
    ];
    for (what, request, expected) in cases {
        let (status, body) = raw(mirror, &request);
        match expected {
            0 => assert!(status == 400 || status == 404, "{what}: {status} {body}"),
            1 => {
                assert_eq!(status, 0, "{what}: {body}");
                continue;
            }
            _ => assert_eq!(status, expected, "{what}: {body}"),
        }
        let json: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_else(|_| {
            panic!("{what}: the answer is not the registry's JSON error: {body:?}")
        });
        assert!(json["errors"][0]["code"].is_string(), "{what}: {body}");
    }
    let (status, body) = raw(mirror, &get("/healthz"));
    assert_eq!(status, 200, "the mirror stopped serving: {body}");
    let (status, _) = raw(mirror, &get("/v2/"));
    assert_eq!(status, 401);
}

pub fn broken_tokens_are_refused(m: &Mirrors) {
    let mirror = m.whitelist();
    let host = &mirror.addr;
    for (what, auth) in [
        ("truncated mirror token", "Bearer rm1.eyJzdWIiOiJhbGljZSJ9"),
        ("empty signature", "Bearer rm1.eyJzdWIiOiJhbGljZSJ9."),
        ("bad base64", "Bearer rm1.!!!.???"),
        ("spaces", "Bearer not a token at all"),
        ("huge", &format!("Bearer rm1.{}", "A".repeat(20_000))),
        ("basic on a resource", "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ="),
        ("unknown scheme", "Negotiate abc"),
    ] {
        let request = format!(
            "GET /v2/library/alpine/manifests/v2s2 HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = raw(mirror, request.as_bytes());
        assert_eq!(status, 401, "{what}: {body}");
        assert!(body.contains("UNAUTHORIZED"), "{what}: {body}");
    }
}

/// With `UPSTREAM_AUTH_DOCKER_IO`, a client without credentials pulls on the mirror's own
/// account: Docker Hub's token service sees the account log in, and what the account may read
/// is readable (here a private repository: why the README asks for a public read-only token).
/// The account's token never reaches the log.
pub fn the_mirrors_account_serves_anonymous_clients(runtime: &dyn super::mirrors::Runtime) {
    let account = format!("{}:{}", ALICE.0, ALICE.1);
    let mirror = runtime.start(
        "accounts",
        &super::mirrors::with(&[("UPSTREAM_AUTH_DOCKER_IO", &account)]),
    );
    let account_logins = || {
        let log = std::fs::read_to_string(&fixture().token_log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains(r#""user": "alice""#) && l.contains(r#""status": 200"#))
            .count()
    };
    let before = account_logins();
    assert_same_as_direct(&mirror, PRIVATE, &[], None);
    assert!(
        account_logins() > before,
        "the token service saw no login of the account"
    );
    assert!(
        !mirror.log_text().contains(ALICE.1),
        "the account's token reached the log"
    );
}

/// A private layer in a mirror's store is served only to whom the upstream lets read it, and only
/// under its own repository: alice pulls it (so it is stored); anonymous clients, and bob with his
/// own credentials, are refused under the private repository; under a public repository's path it
/// is unknown; alice's next pull is served from the store.
pub fn stored_private_layers_stay_private(mirror: &Mirror) {
    assert_same_as_direct(mirror, PRIVATE, &[], Some(ALICE));
    let private = fixture().images.get(PRIVATE);
    let layer = private.blob_digests.last().unwrap();
    let repository = PRIVATE.split(':').next().unwrap();
    let layer_bytes_sent = |out: &str| out.len() > 2000;
    let scope = format!("/token?scope=repository:{repository}:pull");
    let path = format!("/v2/{repository}/blobs/{layer}");

    // Anonymous, and bob (who may not read it), under the private repository: the upstream
    // refuses, so does the mirror.
    let bob = format!("{}:{}", BOB.0, BOB.1);
    for credentials in [None, Some(bob.as_str())] {
        let args: Vec<&str> = credentials.map(|c| vec!["-u", c]).unwrap_or_default();
        let token = mirror_token(mirror, &scope, &args);
        let auth = format!("Authorization: Bearer {token}");
        let (status, out) = curl(mirror, &path, &["-H", &auth]);
        assert!(
            matches!(status, 401 | 403 | 404),
            "{credentials:?}: {status}: {out}"
        );
        assert!(!layer_bytes_sent(&out), "{credentials:?} got the layer");
    }

    // Under a public repository's path: the upstream has never shown it there.
    let public = mirror_token(mirror, "/token?scope=repository:library/alpine:pull", &[]);
    let auth = format!("Authorization: Bearer {public}");
    let (status, out) = curl(
        mirror,
        &format!("/v2/library/alpine/blobs/{layer}"),
        &["-H", &auth],
    );
    assert_eq!(status, 404, "{out}");
    assert!(!layer_bytes_sent(&out));

    // Alice, who may read it, gets it from the store (served, or a redirect to it on Lambda).
    let hits = || {
        mirror
            .requests()
            .iter()
            .filter(|r| r["cache"] == "hit" && (r["status"] == 200 || r["status"] == 307))
            .count()
    };
    let hits_before = hits();
    assert_same_as_direct(mirror, PRIVATE, &[], Some(ALICE));
    assert!(hits() > hits_before, "{}", mirror.log_text());
}

/// Images pulled once by anonymous clients cost no counted manifest `GET` when pulled again, and
/// keep pulling with dockerd, containerd and skopeo while Docker Hub answers every manifest
/// request with 429, and while it is down altogether (token service included): tags are served
/// from their last digest, marked stale in the log. `front` stands between the mirror and Docker Hub. Small images only: Fastly's cache keeps
/// objects up to 4 MiB.
pub fn stored_images_pull_while_docker_hub_fails(m: &Mirrors, front: &super::faults::FaultFront) {
    use super::faults::Fault;
    let mirror = m.open();
    let pull_all = |round: &str| {
        let dockerd = Dockerd::start(&mirror.addr);
        for reference in [V2S2, OCI_INDEX] {
            let name = short(reference);
            let (ok, out) = dockerd.docker(None, &["pull", name]);
            assert!(ok, "{round}: docker pull {name}: {out}");
            assert_docker_pulled(&dockerd, name, fixture().images.get(reference));
        }
        let containerd = containerd();
        for reference in [OCI, NAMESPACED] {
            let ns = namespace("ctr-stale");
            let name = via(mirror, reference);
            let args = [
                "content",
                "fetch",
                "--plain-http",
                "--platform",
                "linux/amd64",
            ];
            let (ok, out) = containerd.ctr(&ns, &[&args[..], &[name.as_str()]].concat());
            assert!(ok, "{round}: ctr content fetch {name}: {out}");
            assert_ctr_fetched(containerd, &ns, fixture().images.get(reference));
        }
        for reference in [OCI, V2S2] {
            assert_same_as_direct(mirror, short(reference), &[], None);
        }
    };
    front.set(Fault::None);
    pull_all("upstream up");
    // Pulled again: tags by HEAD, everything else from the store; no pull counted.
    let logged = mirror.requests().len();
    pull_all("again");
    let counted: Vec<_> = mirror.requests()[logged..]
        .iter()
        .filter(|r| r["counted_get"] == true)
        .cloned()
        .collect();
    assert!(counted.is_empty(), "counted GETs: {counted:?}");
    for fault in [Fault::TooMany, Fault::Down] {
        let logged = mirror.requests().len();
        front.set(fault.clone());
        pull_all(&format!("{fault:?}"));
        front.set(Fault::None);
        let stale = mirror.requests()[logged..]
            .iter()
            .filter(|r| r["cache"] == "stale")
            .count();
        assert!(stale > 0, "{fault:?}: no stale answer in the log");
    }
}

/// A private mirror serves a cluster by network: with `WHITE_LIST` and `ALLOW_NETWORKS` naming
/// 127.0.0.1, dockerd (which sends no credentials to a mirror it has no login for) pulls; from
/// 127.0.0.2, outside the list, a token still needs docker login.
pub fn allowed_networks_pull_without_login(runtime: &dyn super::mirrors::Runtime) {
    let mirror = runtime.start(
        "allow-networks",
        &super::mirrors::with(&[
            ("WHITE_LIST", "alice"),
            ("TOKEN_SECRET", super::mirrors::TOKEN_SECRET),
            ("ALLOW_NETWORKS", "127.0.0.1/32"),
        ]),
    );
    let dockerd = Dockerd::start(&mirror.addr);
    let name = short(V2S2);
    let (ok, out) = dockerd.docker(None, &["pull", name]);
    assert!(ok, "docker pull {name} from an allowed network: {out}");
    assert_docker_pulled(&dockerd, name, fixture().images.get(V2S2));
    let path = "/token?scope=repository:library/alpine:pull";
    let (status, out) = curl(&mirror, path, &["--interface", "127.0.0.2"]);
    assert_eq!(status, 401, "outside the allowed networks: {out}");
    let (status, out) = curl(&mirror, path, &["--interface", "127.0.0.1"]);
    assert_eq!(status, 200, "inside the allowed networks: {out}");
}

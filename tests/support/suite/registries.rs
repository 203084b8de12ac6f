//! More registries (by path, by `ns`, by host), the page in a browser, search.

use super::*;

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
        .filter(|l| l.contains(crate::support::fixture::GHCR_SERVICE))
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

pub fn second_registry_by_its_own_host(m: &Mirrors) {
    use sha2::{Digest, Sha256};
    let mirror = m.open();
    let image = fixture().images.get(GHCR_IMAGE);
    let host = crate::support::mirrors::GHCR_HOST;
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
    let chromium = crate::support::process::need("chromium");
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

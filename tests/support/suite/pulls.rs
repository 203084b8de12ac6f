//! Pulls with every client: skopeo, dockerd, podman, containerd, oci-client; and bad input.

use super::*;

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
    // The file docs/clients.md gives, for a plain-HTTP mirror as it says.
    let dir = scratch("podman-conf");
    let block = super::doc_block("docs/clients.md", "### podman", "toml");
    assert!(block.contains("## insecure = true"), "{block}");
    let conf = block
        .replace("mirror.example.com", &mirror.addr)
        .replace("## insecure = true", "insecure = true");
    let conf = write_file(&dir, "registries.conf", &conf);
    let id = podman_pull(&format!("docker.io/{OCI}"), Some(&conf), None)
        .unwrap_or_else(|e| panic!("podman pull via mirror: {e}"));
    assert_eq!(
        format!("sha256:{id}"),
        fixture().images.get(OCI).config_digest
    );
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
    // The file docs/clients.md gives, for a plain-HTTP mirror as it says.
    let block = super::doc_block("docs/clients.md", "### containerd", "toml");
    assert!(block.contains("https://mirror.example.com"), "{block}");
    let hosts_toml = block.replace(
        "https://mirror.example.com",
        &format!("http://{}", mirror.addr),
    );
    write_file(&hosts.join("docker.io"), "hosts.toml", &hosts_toml);
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
        (
            "GET",
            "/v2/library/alpine/manifests/-x",
            404,
            "MANIFEST_UNKNOWN",
        ),
    ] {
        let (got, out) = curl(mirror, path, &["-X", method]);
        assert_eq!(got, status, "{method} {path}: {out}");
        assert!(
            out.contains(&format!("\"code\":\"{code}\"")),
            "{method} {path}: {out}"
        );
    }
    let push = Command::new(crate::support::process::need("skopeo"))
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
    // The OCI conformance tests' own case ("Pull" section: a manifest that does not exist is
    // 404, for GET and HEAD), with the name they use.
    for (method, args) in [("GET", &[][..]), ("HEAD", &["-I"][..])] {
        let path = "/v2/library/alpine/manifests/.INVALID_MANIFEST_NAME";
        let (got, out) = curl(mirror, path, args);
        assert_eq!(got, 404, "{method} {path}: {out}");
    }
    // A refused write says what is allowed (RFC 9110 §15.5.6: a 405 MUST carry Allow).
    let (got, out) = curl(
        mirror,
        "/v2/library/alpine/manifests/latest",
        &["-X", "PUT"],
    );
    assert_eq!(got, 405, "{out}");
    assert!(
        out.to_ascii_lowercase().contains("\nallow: get, head"),
        "a 405 without Allow: {out}"
    );
    // The mirror still serves after all that.
    let (status, _) = curl(mirror, "/v2/", &[]);
    assert_eq!(status, 401);
}

//! `WHITE_LIST`: logins, forged and tampered tokens, secrets kept out of the log; and pulls again, big layers, `HEAD`.

use super::*;

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
        crate::support::mirrors::TOKEN_SECRET,
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

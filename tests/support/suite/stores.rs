//! The store on every runtime: the mirror's own account, private layers, stale answers, allowed networks.

use super::*;

/// With `UPSTREAM_AUTH_DOCKER_IO`, a client without credentials pulls on the mirror's own
/// account: Docker Hub's token service sees the account log in, and what the account may read
/// is readable (here a private repository: why the README asks for a public read-only token).
/// The account's token never reaches the log.
pub fn the_mirrors_account_serves_anonymous_clients(
    runtime: &dyn crate::support::mirrors::Runtime,
) {
    let account = format!("{}:{}", ALICE.0, ALICE.1);
    let mirror = runtime.start(
        "accounts",
        &crate::support::mirrors::with(&[("UPSTREAM_AUTH_DOCKER_IO", &account)]),
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
pub fn stored_images_pull_while_docker_hub_fails(
    m: &Mirrors,
    front: &crate::support::faults::FaultFront,
) {
    use crate::support::faults::Fault;
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
        head_by_digest_answers_as_get(mirror, &format!("{fault:?}"));
        front.set(Fault::None);
        let stale = mirror.requests()[logged..]
            .iter()
            .filter(|r| r["cache"] == "stale")
            .count();
        assert!(stale > 0, "{fault:?}: no stale answer in the log");
    }
}

/// A HEAD by digest of stored content (a manifest, a blob) answers 200 with the GET's length and
/// digest (the spec's "checking if content exists": HEAD of existing content MUST be 200), as
/// clients that check before they fetch (BuildKit, crane) ask it when the upstream fails.
fn head_by_digest_answers_as_get(mirror: &Mirror, round: &str) {
    let image = fixture().images.get(V2S2);
    let token = mirror_token(mirror, "/token?scope=repository:library/alpine:pull", &[]);
    let auth = format!("Authorization: Bearer {token}");
    let manifest = format!("/v2/library/alpine/manifests/{}", image.manifest_digest);
    let blob = format!("/v2/library/alpine/blobs/{}", image.config_digest);
    for (path, accept) in [
        (
            &manifest,
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
        (&blob, "*/*"),
    ] {
        let accept = format!("Accept: {accept}");
        let (status, head) = curl(mirror, path, &["-I", "-H", &auth, "-H", &accept]);
        assert_eq!(status, 200, "{round}: HEAD {path}: {head}");
        // The last answer's head (a GET may be redirected to the bucket first).
        let last = |text: &str| -> String {
            text.rsplit("\r\n\r\n")
                .find(|b| b.starts_with("HTTP/"))
                .unwrap_or(text)
                .to_string()
        };
        let (_, got) = curl(mirror, path, &["-H", &auth, "-H", &accept, "-L"]);
        assert!(
            last(&got).starts_with("HTTP/1.1 200"),
            "{round}: GET {path}: {got}"
        );
        let length = |text: &str| {
            last(text).lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().to_string())
            })
        };
        // A Lambda function URL may drop a HEAD answer's Content-Length (docs/lambda.md: not
        // documented, so its stand-in drops it); where the HEAD has one, it is the GET's.
        if let Some(head_length) = length(&head) {
            assert_eq!(
                Some(head_length),
                length(&got),
                "{round}: {path}: {head}\n{got}"
            );
        }
    }
}

/// A private mirror serves a cluster by network: with `WHITE_LIST` and `ALLOW_NETWORKS` naming
/// 127.0.0.1, dockerd (which sends no credentials to a mirror it has no login for) pulls; from
/// 127.0.0.2, outside the list, a token still needs docker login.
pub fn allowed_networks_pull_without_login(runtime: &dyn crate::support::mirrors::Runtime) {
    let mirror = runtime.start(
        "allow-networks",
        &crate::support::mirrors::with(&[
            ("WHITE_LIST", "alice"),
            ("TOKEN_SECRET", crate::support::mirrors::TOKEN_SECRET),
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

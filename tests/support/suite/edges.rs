//! The edges: the whitelist on search, revocation, client mistakes, the login throttle, health.

use super::*;

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
        &crate::support::mirrors::with(&[
            ("WHITE_LIST", "alice"),
            ("TOKEN_SECRET", crate::support::mirrors::TOKEN_SECRET),
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
    assert!(out.contains("SIZE_INVALID"), "{out}");
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
pub fn failed_logins_are_throttled(runtime: &dyn crate::support::mirrors::Runtime, allowed: usize) {
    let mirror = runtime.start(
        "throttle",
        &crate::support::mirrors::with(&[
            ("WHITE_LIST", "alice,bob"),
            ("TOKEN_SECRET", crate::support::mirrors::TOKEN_SECRET),
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
    runtime: &dyn crate::support::mirrors::Runtime,
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

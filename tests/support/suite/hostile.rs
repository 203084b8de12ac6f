//! Hostile input: malformed requests and broken tokens.

use super::*;

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
        // A tag that can name no manifest: 404, as the OCI spec's pull section asks.
        ("bad tag", get("/v2/library/alpine/manifests/.hidden"), 404),
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

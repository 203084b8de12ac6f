//! The table of registries, upstream URLs, and which registry a request is for.

use super::*;

fn table() -> Registries {
    let entry = |name: &str, upstream: &str, ns: Option<&str>, host: Option<&str>| Registry {
        accounts: Vec::new(),
        name: name.into(),
        upstream: UpstreamUrl::parse(upstream).unwrap(),
        official_namespace: ns.map(str::to_string),
        mirror_host: host.map(str::to_string),
    };
    Registries::new(vec![
        entry(
            "docker.io",
            Registry::DOCKER_HUB_UPSTREAM,
            Some("library"),
            None,
        ),
        entry(
            "ghcr.io",
            "https://ghcr.io",
            None,
            Some("ghcr.mirror.example"),
        ),
        entry("quay.io", "https://quay.io", None, None),
    ])
}

#[test]
fn upstream_urls() {
    let u = UpstreamUrl::parse("https://Registry-1.docker.io/").unwrap();
    assert_eq!(u.url("/v2/"), "https://registry-1.docker.io/v2/");
    assert_eq!(
        UpstreamUrl::parse("http://127.0.0.1:5000")
            .unwrap()
            .authority(),
        "127.0.0.1:5000"
    );
    for bad in [
        "ftp://x",
        "registry-1.docker.io",
        "https://x/path",
        "https://u:p@x",
        "https://x/?q",
        "",
    ] {
        assert!(UpstreamUrl::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn docker_hub_names_get_library() {
    let t = table();
    let r = t.select("m", None, "alpine").unwrap();
    assert_eq!(
        (r.registry, r.upstream_name.as_str(), r.scope_name.as_str()),
        (0, "library/alpine", "alpine")
    );
    assert_eq!(
        t.select("m", None, "library/alpine").unwrap().upstream_name,
        "library/alpine"
    );
    assert_eq!(
        t.select("m", None, "bitnami/redis").unwrap().upstream_name,
        "bitnami/redis"
    );
    let prefixed = t.select("m", None, "docker.io/alpine").unwrap();
    assert_eq!(
        (prefixed.registry, prefixed.upstream_name.as_str()),
        (0, "library/alpine")
    );
}

#[test]
fn three_ways_to_a_registry() {
    let t = table();
    // Path prefix.
    let r = t.select("m", None, "ghcr.io/owner/image").unwrap();
    assert_eq!(
        (r.registry, r.upstream_name.as_str(), r.scope_name.as_str()),
        (1, "owner/image", "ghcr.io/owner/image")
    );
    // containerd's ns: the scope carries the registry, so /token finds it.
    let r = t.select("m", Some("ghcr.io"), "owner/image").unwrap();
    assert_eq!(
        (r.registry, r.upstream_name.as_str(), r.scope_name.as_str()),
        (1, "owner/image", "ghcr.io/owner/image")
    );
    assert_eq!(
        t.select("m", Some("docker.io"), "alpine")
            .unwrap()
            .upstream_name,
        "library/alpine"
    );
    // The registry's own host, with or without a port.
    for host in ["ghcr.mirror.example", "GHCR.mirror.example:443"] {
        let r = t.select(host, None, "owner/image").unwrap();
        assert_eq!(
            (r.registry, r.upstream_name.as_str(), r.scope_name.as_str()),
            (1, "owner/image", "owner/image")
        );
    }
    // Single-component names on other registries stay as they are.
    assert_eq!(t.select("m", None, "quay.io/x").unwrap().upstream_name, "x");
}

#[test]
fn unknown_registries_are_refused_by_name() {
    let t = table();
    for (ns, name) in [
        (Some("127.0.0.1"), "x"),
        (Some("evil.example"), "x"),
        (None, "127.0.0.1/x/y"),
        (None, "evil.example/x"),
        (None, "localhost/x"),
    ] {
        let err = t.select("m", ns, name).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("docker.io, ghcr.io, quay.io"), "{message}");
    }
    let without_hub = Registries::new(vec![table().get(1).clone()]);
    assert!(without_hub.select("m", None, "alpine").is_err());
    assert!(without_hub.select("m", None, "ghcr.io/a/b").is_ok());
}

#[test]
fn token_scopes_pick_one_registry() {
    let t = table();
    // containerd adds its own plain scope beside the challenge's prefixed one.
    assert_eq!(
        t.select_for_token("m", &["ghcr.io/owner/app", "owner/app"]),
        Ok((1, vec!["owner/app".to_string(), "owner/app".to_string()]))
    );
    assert_eq!(
        t.select_for_token("m", &["alpine"]),
        Ok((0, vec!["library/alpine".to_string()]))
    );
    assert_eq!(
        t.select_for_token("ghcr.mirror.example", &["owner/app"]),
        Ok((1, vec!["owner/app".to_string()]))
    );
    assert_eq!(t.select_for_token("m", &[]), Ok((0, vec![])));
    assert_eq!(
        t.select_for_token("ghcr.mirror.example", &[]),
        Ok((1, vec![]))
    );
    assert_eq!(
        t.select_for_token("m", &["ghcr.io/a/b", "quay.io/c"]),
        Err(SelectError::Several)
    );
    assert!(matches!(
        t.select_for_token("m", &["evil.example/a"]),
        Err(SelectError::Unknown(_))
    ));
}

#[test]
fn builtin_settings() {
    assert_eq!(upstream_setting("ghcr.io"), "UPSTREAM_GHCR_IO");
    assert_eq!(
        upstream_setting("public.ecr.aws"),
        "UPSTREAM_PUBLIC_ECR_AWS"
    );
    assert_eq!(upstream_setting("docker.io"), "UPSTREAM_DOCKER_IO");
    assert_eq!(BUILTIN.len(), 9);
    for b in BUILTIN {
        UpstreamUrl::parse(b.upstream).unwrap();
    }
}

#[test]
fn a_routed_name_reads_as_the_upstream_knows_it() {
    let t = table();
    assert_eq!(
        t.upstream_repository("docker.io", "alpine"),
        "library/alpine"
    );
    assert_eq!(
        t.upstream_repository("docker.io", "docker.io/library/alpine"),
        "library/alpine"
    );
    assert_eq!(t.upstream_repository("docker.io", "team/app"), "team/app");
    assert_eq!(
        t.upstream_repository("ghcr.io", "ghcr.io/owner/app"),
        "owner/app"
    );
    assert_eq!(t.upstream_repository("ghcr.io", "owner/app"), "owner/app");
    assert_eq!(t.upstream_repository("nowhere", "a/b"), "a/b");
}

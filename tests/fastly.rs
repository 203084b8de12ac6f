//! The client suite against the Fastly binary under Viceroy, and the edge cache.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::mirrors::Viceroy;

client_suite!(Viceroy);

/// The second pull of an image is served from the edge cache: no blob reaches storage again.
#[test]
fn second_pull_is_served_from_the_edge_cache() {
    support::suite::second_pull_is_served_from_the_cache(&MIRRORS);
}

/// Fastly allows a bounded number of Config Store lookups per request (`get` panics past it, and
/// Viceroy does not count): every request, a pull's and a whitelisted login's, stays within the
/// mirror's budget, which its log line reports.
#[test]
fn every_request_makes_few_store_lookups() {
    support::suite::skopeo_pulls_short_names(&MIRRORS);
    support::suite::whitelist_admits_listed_users_with_the_right_password(&MIRRORS);
    for mirror in [MIRRORS.open(), MIRRORS.whitelist()] {
        let requests = mirror.requests();
        assert!(requests.len() > 5, "{}", mirror.log_text());
        for request in requests {
            let lookups = request["config_lookups"].as_u64().expect("config_lookups");
            assert!(
                (1..=u64::from(registry_mirror::platforms::edge::MAX_LOOKUPS)).contains(&lookups),
                "{request}"
            );
        }
    }
}

/// A `WHITE_LIST` left in a Config Store key of its own (not in `SETTINGS`) must not leave the
/// mirror open: every request is refused, and the log says where the setting belongs.
#[test]
fn a_whitelist_outside_the_settings_key_closes_the_mirror() {
    let settings = support::mirrors::with(&[("store-key:WHITE_LIST", "alice")]);
    support::suite::refuses_to_serve(&Viceroy, "stray-whitelist", &settings, 503, "SETTINGS");
}

/// A `WHITE_LIST` that names nobody must not open the mirror: every request is refused, and the
/// log says why.
#[test]
fn a_whitelist_naming_nobody_keeps_the_mirror_closed() {
    use support::mirrors::{with, TOKEN_SECRET};
    let settings = with(&[("WHITE_LIST", ","), ("TOKEN_SECRET", TOKEN_SECRET)]);
    support::suite::refuses_to_serve(&Viceroy, "whitelist-nobody", &settings, 503, "names nobody");
}

/// The account comes from the Secret Store (`UPSTREAM_AUTH_DOCKER_IO`).
#[test]
fn the_mirrors_account_serves_anonymous_clients() {
    support::suite::the_mirrors_account_serves_anonymous_clients(&Viceroy);
}

/// Fastly's cache serves a private layer only to whom the upstream lets read it (every hit is
/// authorised with a `HEAD`), and only under its own repository.
#[test]
fn the_edge_cache_keeps_private_layers_private() {
    support::suite::stored_private_layers_stay_private(MIRRORS.open());
}

/// The store is Fastly's cache; anonymous clients' tokens are signed (`TOKEN_SECRET`), since
/// every request starts afresh.
static FASTLY_BEHIND_FRONT: support::mirrors::BehindFront =
    support::mirrors::BehindFront::new(&Viceroy, || {
        vec![("TOKEN_SECRET".into(), support::mirrors::TOKEN_SECRET.into())]
    });

static STALE: support::mirrors::Mirrors = support::mirrors::Mirrors::new(&FASTLY_BEHIND_FRONT);

#[test]
fn stored_images_pull_while_docker_hub_throttles_or_is_down() {
    support::suite::stored_images_pull_while_docker_hub_fails(&STALE, FASTLY_BEHIND_FRONT.front());
}

#[test]
fn allowed_networks_pull_without_login() {
    support::suite::allowed_networks_pull_without_login(&Viceroy);
}

/// The `jq` queries docs/operations.md gives for Fastly's streamed logs answer over the lines
/// this binary writes.
#[test]
fn the_docs_log_queries_read_the_edges_lines() {
    support::suite::skopeo_pulls_short_names(&MIRRORS);
    support::commands::jq_queries_answer_over(&MIRRORS.open().log_text());
}

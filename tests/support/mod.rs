//! The end-to-end harness: the fixture standing in for Docker Hub, the real clients, and the
//! client suite that every runtime passes.
#![allow(dead_code)]

pub mod certs;
pub mod clients;
pub mod cloudfront;
pub mod commands;
pub mod faults;
pub mod fixture;
pub mod function_url;
pub mod http_front;
pub mod images;
pub mod measure;
pub mod mirrors;
pub mod process;
pub mod pull_client;
pub mod suite;

/// One `#[test]` per case of the client suite, against the runtime `$runtime`.
#[macro_export]
macro_rules! client_suite {
    ($runtime:expr) => {
        static MIRRORS: support::mirrors::Mirrors = support::mirrors::Mirrors::new(&$runtime);
        client_suite!(@cases
            skopeo_pulls_every_image,
            skopeo_pulls_short_names,
            skopeo_follows_passed_redirects,
            blobs_come_from_storage_through_the_mirror,
            private_repositories_need_the_users_credentials,
            dockerd_pulls_short_names_through_registry_mirrors,
            dockerd_pulls_explicit_mirror_names,
            podman_pulls_by_name_and_through_a_registries_conf_mirror,
            ctr_fetches_full_and_short_names,
            ctr_uses_the_mirror_from_hosts_toml,
            oci_client_pulls_full_and_short_names,
            push_and_bad_input_get_registry_errors,
            head_keeps_content_length,
            whitelist_admits_listed_users_with_the_right_password,
            whitelist_refuses_upstream_forged_and_tampered_tokens,
            whitelist_containerd_user_pulls_with_the_oauth_post,
            whitelist_docker_login_and_pulls,
            whitelist_dockerd_short_names_use_docker_hub_credentials,
            whitelist_identity_is_docker_hubs_for_every_registry,
            whitelist_guards_search,
            whitelist_removal_revokes_tokens,
            health_checks_need_no_host,
            client_mistakes_are_4xx,
            secrets_never_reach_the_log,
            second_registry_by_path_prefix,
            second_registry_through_podman_and_containerd_mirrors,
            second_registry_by_its_own_host,
            unknown_registries_are_never_dialled,
            docker_search_goes_through_the_mirror,
            the_page_works_in_a_browser,
            malformed_requests_get_registry_errors,
            broken_tokens_are_refused,
        );
    };
    (@cases $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                support::suite::$case(&MIRRORS);
            }
        )*
    };
}

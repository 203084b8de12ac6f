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

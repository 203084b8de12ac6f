//! The client suite against the Lambda binary behind a function URL as strict as AWS's, in the
//! invoke mode `template.yaml` gives it.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::mirrors::LAMBDA;

client_suite!(LAMBDA);

/// A blob over `LARGE_BLOB_BYTES` reaches the client as a redirect to storage, not through the
/// function; the pull is still whole and right.
#[test]
fn big_layers_take_the_redirect_path() {
    support::suite::big_layers_are_redirected(&MIRRORS);
}

//! The client suite against the Lambda binary under cargo-lambda's emulator.
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::mirrors::LambdaEmulator;

client_suite!(LambdaEmulator);

/// A blob over `LARGE_BLOB_BYTES` reaches the client as a redirect to storage, not through the
/// function's stream; the pull is still whole and right.
#[test]
fn big_layers_take_the_redirect_path() {
    support::suite::big_layers_are_redirected(&MIRRORS);
}

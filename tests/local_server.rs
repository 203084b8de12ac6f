//! The client suite against the local server (`cargo run`).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::mirrors::LocalServer;

client_suite!(LocalServer);

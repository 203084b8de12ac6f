//! The client suite against the local server (`cargo run`).

mod support;

use support::mirrors::LocalServer;

client_suite!(LocalServer);

//! The native runtimes' I/O (the local server and the Lambda binary; never built for wasm32):
//! the core decides, this does.
//!
//! - `drive`: runs the core's steps with one HTTP client and streams bodies;
//! - `server`: the local server's listener, TLS, ACME, connection limits and metrics;
//! - `store`: the content store in a directory or a bucket, single flight, the body that stores
//!   as it relays;
//! - `logging`: the log, as text or JSON lines.

pub mod commands;
pub mod drive;
pub mod logging;
pub mod said_once;
pub mod server;
pub mod store;

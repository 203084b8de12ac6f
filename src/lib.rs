//! registry-mirror: a pull-through mirror of Docker Hub that speaks the Docker Registry HTTP API v2.
//!
//! The crate has two halves, and a file's path says which it is in:
//!
//! - **The core** (every folder but `native/`): it decides and does no I/O. [`Mirror::start`]
//!   takes a client's request and says what to do (answer, or fetch from an upstream, or look in
//!   the store); [`Mirror::resume`] takes what the upstream said. It builds for wasm32-wasip1,
//!   which `.ci/run` checks: no tokio, no sockets, no files.
//!   - `registry/`: the upstream registries, the reference grammar, routes, what crosses to an
//!     upstream, the registry's JSON errors;
//!   - `auth/`: who the client is: credentials, the mirror's tokens, the mirror's own accounts,
//!     the login throttle, the client's address;
//!   - `mirror/`: a request's steps (route, admit, upstream request, upstream answer, store,
//!     stale answers);
//!   - `store/`: what is stored, under which key, and how its bytes are checked;
//!   - `platforms/`: what Fastly's edge and a Lambda function URL allow;
//!   - `config.rs` (every setting), `page.rs` (the page at `/`).
//! - **The native I/O** (`native/`, native targets only): the driver that runs the core's steps
//!   with an HTTP client, the local server (listener, TLS, ACME, connection limits, metrics), the
//!   stores in a directory and in a bucket, and the log.
//!
//! Each runtime is a thin binary over them: the local server (`main.rs`), Fastly Compute
//! (`bin/fastly`, its own I/O through the fastly crate) and AWS Lambda (`bin/lambda`).

pub mod auth;
pub mod config;
pub mod mirror;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
pub mod page;
pub mod platforms;
pub mod registry;
pub mod store;

pub use config::Config;
pub use mirror::{Fetch, FetchError, Incoming, Mirror, Pending, Step, Summary};

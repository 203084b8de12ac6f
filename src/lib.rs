//! registry-mirror: a pull-through mirror of Docker Hub that speaks the Docker Registry HTTP API v2.
//!
//! This library is the proxy core that every runtime shares (the local server, Fastly Compute, AWS
//! Lambda). It does no I/O: [`Mirror::start`] takes a client's request and says what to do (answer,
//! or fetch from an upstream), [`Mirror::resume`] takes what the upstream said. Each runtime's
//! adapter does the fetching and the streaming, so the behaviour is the same everywhere.

pub mod accounts;
#[cfg(not(target_arch = "wasm32"))]
pub mod acme;
pub mod anonymous_tokens;
pub mod auth;
#[cfg(not(target_arch = "wasm32"))]
pub mod bucket_store;
pub mod client_address;
pub mod config;
#[cfg(not(target_arch = "wasm32"))]
pub mod connections;
#[cfg(not(target_arch = "wasm32"))]
pub mod content_store;
#[cfg(not(target_arch = "wasm32"))]
pub mod disk_store;
#[cfg(not(target_arch = "wasm32"))]
pub mod drive;
pub mod edge;
pub mod errors;
#[cfg(not(target_arch = "wasm32"))]
pub mod in_flight;
pub mod lambda;
#[cfg(not(target_arch = "wasm32"))]
pub mod logging;
#[cfg(not(target_arch = "wasm32"))]
pub mod metrics;
pub mod mirror;
pub mod page;
pub mod reference;
pub mod registry;
pub mod route;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
pub mod store;
#[cfg(not(target_arch = "wasm32"))]
pub mod storing_body;
pub mod throttle;
#[cfg(not(target_arch = "wasm32"))]
pub mod tls;
pub mod token;
pub mod upstream;

pub use config::Config;
pub use mirror::{Fetch, FetchError, Incoming, Mirror, Pending, Step, Summary};

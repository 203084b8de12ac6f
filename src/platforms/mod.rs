//! What each platform the mirror runs on allows, and the settings the core takes there: Fastly's
//! edge (its cache as the store) and an AWS Lambda function URL. Decisions only: the adapters in
//! `bin/` do the platforms' I/O.

pub mod edge;
pub mod lambda;

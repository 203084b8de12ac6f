//! placeholder
#[derive(clap::Args)]
pub struct Args {}
pub fn run(_: Args) -> std::process::ExitCode { std::process::ExitCode::FAILURE }

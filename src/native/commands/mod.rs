//! The owner's subcommands of the local server's binary, each on the store `CACHE` names (a
//! directory or a bucket), beside a server that may be running on it:
//!
//! - `warm`: fetches images into the store before clients ask for them, as an anonymous pull
//!   through the mirror would (the same core, in-process);
//! - `purge`: forgets tags (and, with `--blobs`, the objects only they used);
//! - `verify`: re-hashes every stored object, deletes those that do not match;
//! - `usage`: what the store holds, by registry and repository;
//! - `doctor`: what a pull needs, checked from here (settings, proxy, upstreams, clock, store).
//!
//! Each prints what it did on standard output, its progress on standard error (a terminal only),
//! and exits 0 when all went well, 1 when something failed or was found wrong, 2 on bad input.

pub mod doctor;
mod manifests;
pub mod purge;
pub mod usage;
pub mod verify;
pub mod warm;

use crate::Config;
use std::process::ExitCode;

/// Exit status: bad arguments or settings, nothing done.
pub const BAD_INPUT: u8 = 2;

/// The settings from the environment, with `overrides` in place of what it says.
pub fn config_with(overrides: &[(&str, Option<String>)]) -> Result<Config, String> {
    Config::from_lookup(|key| match overrides.iter().find(|(k, _)| *k == key) {
        Some((_, value)) => value.clone(),
        None => std::env::var(key).ok(),
    })
}

/// A runtime for one command, and its log (warnings, on standard error).
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    crate::native::logging::init_for_command()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Says why `command` could not start, and exits with [`BAD_INPUT`].
pub fn refuse(command: &str, why: &str) -> ExitCode {
    eprintln!("registry-mirror {command}: {}", crate::config::redact(why));
    ExitCode::from(BAD_INPUT)
}

/// A size for people: `1.5 MB`.
pub fn bytes(n: u64) -> String {
    indicatif::DecimalBytes(n).to_string()
}

/// A progress bar on standard error, drawn only on a terminal.
pub fn progress(what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{{spinner}} {what} {{pos}}/{{len}} {{wide_msg}} {{elapsed}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// A line of the command's report on standard output, around the progress bar.
pub fn report(bar: &indicatif::ProgressBar, line: String) {
    bar.suspend(|| println!("{line}"));
}

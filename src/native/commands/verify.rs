//! `registry-mirror verify`: after a disk scare (a crash, a full disk, a bad sector), re-hashes
//! every stored blob and manifest against the digest its key names and the length it holds, and
//! deletes those that do not match, so that the server fetches them again. Records (tags, what
//! was public) hold no content and are left as they are. Like `fsck`, it exits 1 when it found
//! anything wrong, 0 when every object matched.

use super::{bytes, progress, refuse, report};
use crate::native::store::ContentStore;
use crate::native::store::Listed;
use crate::store::keys::Key;
use crate::store::verify::Verifier;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use std::process::ExitCode;

/// Re-hash every stored object, deleting those that do not match their digest
#[derive(clap::Args)]
#[command(
    after_help = "Exit status: 0 when every object matched, 1 when some did not (deleted, \
    unless --dry-run), 2 on bad settings."
)]
pub struct Args {
    /// Report what does not match, delete nothing
    #[arg(long)]
    dry_run: bool,
    /// How many objects to read at once
    #[arg(long, default_value_t = 2, value_name = "N")]
    jobs: usize,
}

/// What became of one object.
enum Checked {
    Matched(u64),
    /// Did not match: its size, and why.
    Wrong(u64, String),
    /// Could not be read (a bucket that did not answer, an I/O error): left in place, since a
    /// failed read says nothing of the bytes.
    Unreadable(u64, String),
    /// A record or a key of no kind the store writes: not content.
    NotContent,
}

pub fn run(args: Args) -> ExitCode {
    let store =
        super::config_with(&[]).and_then(|mut c| ContentStore::open_for_command(&mut c, false));
    let store = match store {
        Ok(store) => store,
        Err(e) => return refuse("verify", &e),
    };
    let runtime = match super::runtime() {
        Ok(runtime) => runtime,
        Err(e) => return refuse("verify", &e),
    };
    runtime.block_on(async {
        let listed = match store.list().await {
            Ok(listed) => listed,
            Err(e) => return refuse("verify", &e),
        };
        let bar = progress("objects");
        bar.set_length(listed.len() as u64);
        let results: Vec<Checked> = futures_util::stream::iter(listed)
            .map(|object| {
                let (store, bar) = (&store, &bar);
                async move {
                    let checked = check(store, &object).await;
                    bar.inc(1);
                    if let Checked::Unreadable(size, why) = &checked {
                        let line = format!("unread   {} ({}): {why}; kept", object.key, bytes(*size));
                        report(bar, line);
                    }
                    if let Checked::Wrong(size, why) = &checked {
                        let done = match args.dry_run {
                            true => "kept (--dry-run)".to_string(),
                            false => match store.remove(&object.key).await {
                                Ok(()) => "deleted".to_string(),
                                Err(e) => format!("could not be deleted: {e}"),
                            },
                        };
                        let line = format!("mismatch {} ({}): {why}; {done}", object.key, bytes(*size));
                        report(bar, line);
                    }
                    checked
                }
            })
            .buffer_unordered(args.jobs.max(1))
            .collect()
            .await;
        bar.finish_and_clear();
        let (mut matched, mut matched_bytes, mut wrong, mut wrong_bytes) = (0, 0, 0, 0);
        let mut unread = 0;
        for result in &results {
            match result {
                Checked::Matched(size) => (matched, matched_bytes) = (matched + 1, matched_bytes + size),
                Checked::Wrong(size, _) => (wrong, wrong_bytes) = (wrong + 1, wrong_bytes + size),
                Checked::Unreadable(..) => unread += 1,
                Checked::NotContent => {}
            }
        }
        let fate = match args.dry_run {
            true => "kept (--dry-run)",
            false => "deleted",
        };
        println!(
            "verify: {} object(s) checked in {}: {matched} matched ({}), {wrong} did not ({}, {fate}), \
             {unread} could not be read",
            matched + wrong + unread,
            store.describe(),
            bytes(matched_bytes),
            bytes(wrong_bytes),
        );
        match wrong + unread {
            0 => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        }
    })
}

/// Reads one object whole and checks it against its key's digest.
async fn check(store: &ContentStore, object: &Listed) -> Checked {
    let digest = match Key::parse(&object.key) {
        Some(Key::Blob { digest, .. } | Key::Manifest { digest, .. }) => digest,
        _ => return Checked::NotContent,
    };
    let Some((mut body, stored)) = store.read_unmarked(&object.key).await else {
        return Checked::Unreadable(object.bytes, "not readable as a stored object".into());
    };
    let Some(mut verifier) = Verifier::new(&digest, stored.length) else {
        return Checked::Wrong(object.bytes, "a digest of no known algorithm".into());
    };
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    verifier.update(&data);
                }
            }
            Err(e) => return Checked::Unreadable(object.bytes, e.to_string()),
        }
    }
    match verifier.finish() {
        Ok(()) => Checked::Matched(stored.length),
        Err(mismatch) => Checked::Wrong(object.bytes, mismatch.to_string()),
    }
}

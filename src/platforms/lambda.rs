//! What an AWS Lambda function URL allows, and the settings the core takes there.
//!
//! A function URL honours one invoke mode for every response (AWS: "Lambda streams all response
//! payloads for invocations that come through the function's URL until you change the invoke mode
//! to BUFFERED"). The mirror's function is `BUFFERED` ([`INVOKE_MODE`], the value `template.yaml`
//! must give `InvokeMode`; a test holds the two together):
//! - every answer keeps its status and headers, `Content-Length` included (under `RESPONSE_STREAM`
//!   a function URL renames it `x-amzn-remapped-content-length`, and dockerd refuses a manifest
//!   without it);
//! - the whole payload is at most 6 MB, binary bodies base64-encoded inside it, so a blob is
//!   relayed only up to [`LARGEST_RELAYED_BLOB`]; larger ones are answered with their storage
//!   redirect (`BLOB_REDIRECTS=large`, or `pass`); a registry that serves its blobs itself has
//!   no such redirect, so larger blobs from it are copied into the bucket first (with one), or
//!   refused with the setting that fixes it ([`Config::largest_answer`]);
//! - whether a function URL keeps the `Content-Length` a buffered answer to `HEAD` sets is not
//!   documented; on the safe side a manifest `HEAD` is answered without `Docker-Content-Digest`,
//!   which sends dockerd and containerd to a `GET`, whose length the function URL sets itself.

use crate::config::{BlobRedirects, Config};
use crate::store::StoreSetting;

/// The function URL's invoke mode: `template.yaml`'s `FunctionUrlConfig.InvokeMode`.
pub const INVOKE_MODE: &str = "BUFFERED";

/// A buffered response's payload cap ("6 MB", Lambda quotas; AWS's own errors name 6,291,556
/// bytes). The smaller reading is taken: 6,000,000 bytes.
pub const PAYLOAD_LIMIT: usize = 6_000_000;

/// The largest body the function answers with: base64 makes 4 MiB of blob 5,592,408 bytes,
/// which leaves room in [`PAYLOAD_LIMIT`] for the JSON and the headers. It is also
/// distribution's manifest limit.
pub const LARGEST_RELAYED_BLOB: u64 = 4 * 1024 * 1024;

/// The settings as a function URL needs them: `BLOB_REDIRECTS` is `large` unless it says `pass`.
/// A missing key is filled in; `follow`, or `LARGE_BLOB_BYTES` over [`LARGEST_RELAYED_BLOB`], is
/// refused with a message for the start-up log.
pub fn config(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
    let unset = |key: &str| lookup(key).is_none_or(|v| v.trim().is_empty());
    let blob_redirects_unset = unset("BLOB_REDIRECTS");
    let mut config = Config::from_lookup(|key| match key {
        "BLOB_REDIRECTS" if blob_redirects_unset => Some("large".to_string()),
        _ => lookup(key),
    })?;
    match config.blob_redirects {
        BlobRedirects::Pass => {}
        BlobRedirects::Large(limit) if limit <= LARGEST_RELAYED_BLOB => {}
        BlobRedirects::Large(limit) => {
            return Err(format!(
                "LARGE_BLOB_BYTES: {limit} is more than a Lambda function URL can answer \
                 ({LARGEST_RELAYED_BLOB} bytes of blob in a 6 MB buffered response)"
            ))
        }
        BlobRedirects::Follow => {
            return Err(
                "BLOB_REDIRECTS: follow cannot work on Lambda, whose buffered responses \
                        hold at most 6 MB: use large (the default) or pass"
                    .to_string(),
            )
        }
    }
    config.head_lengths_kept = false;
    config.largest_answer = Some(LARGEST_RELAYED_BLOB);
    // With a bucket, stored blobs are answered by a redirect to a signed URL of the bucket, and
    // blobs too large for a response are copied into it first: no layer is limited by the cap.
    config.store_redirects = matches!(config.store, StoreSetting::Bucket { .. });
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config(move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()))
    }

    #[test]
    fn large_redirects_are_the_default() {
        let c = with(&[]).unwrap();
        assert_eq!(
            c.blob_redirects,
            BlobRedirects::Large(crate::config::DEFAULT_LARGE_BLOB_BYTES)
        );
        assert!(!c.head_lengths_kept);
        assert_eq!(
            with(&[("BLOB_REDIRECTS", "pass")]).unwrap().blob_redirects,
            BlobRedirects::Pass
        );
    }

    #[test]
    fn what_a_buffered_response_cannot_hold_is_refused() {
        let follow = with(&[("BLOB_REDIRECTS", "follow")]).unwrap_err();
        assert!(follow.contains("BLOB_REDIRECTS"), "{follow}");
        let big = with(&[("BLOB_REDIRECTS", "large"), ("LARGE_BLOB_BYTES", "4194305")]);
        assert!(big.unwrap_err().contains("LARGE_BLOB_BYTES"));
        assert!(with(&[("LARGE_BLOB_BYTES", "4194304"), ("BLOB_REDIRECTS", "large")]).is_ok());
    }

    #[test]
    fn the_largest_blob_fits_the_payload_base64_encoded() {
        let encoded = (LARGEST_RELAYED_BLOB as usize).div_ceil(3) * 4;
        // Headers and the JSON around the body take a few KiB at most.
        assert!(encoded + 64 * 1024 <= PAYLOAD_LIMIT, "{encoded}");
    }
}

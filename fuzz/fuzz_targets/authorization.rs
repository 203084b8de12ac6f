//! Basic and Bearer parsing: never a panic; Basic credentials round-trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_mirror::auth::{parse_authorization, Authorization};

fuzz_target!(|data: &[u8]| {
    if let Ok(Authorization::Basic(creds)) = parse_authorization(data) {
        let header = creds.header_value();
        assert_eq!(parse_authorization(header.as_bytes()), Ok(Authorization::Basic(creds)));
    }
});

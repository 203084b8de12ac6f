//! `WWW-Authenticate` parsing, and the round trip through the mirror's own challenge.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_mirror::auth::{challenge_header, parse_challenge};

fuzz_target!(|text: &str| {
    if let Some(c) = parse_challenge(text) {
        let header = challenge_header(&c.realm, c.service.as_deref().unwrap_or(""), c.scope.as_deref());
        let again = parse_challenge(&header).expect("the mirror's challenge parses");
        assert_eq!(again.realm, c.realm);
    }
});

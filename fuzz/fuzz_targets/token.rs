//! Mirror token verification: never a panic, and nothing but a token signed with the secret is
//! accepted.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_mirror::auth::token::{MirrorToken, TokenSecret};

fuzz_target!(|text: &str| {
    let secret = TokenSecret::new("fuzzing-secret-0123456789").unwrap();
    if let Ok(token) = MirrorToken::verify(text, &secret, 0) {
        // What verifies, signed again, verifies to the same claims.
        let again = MirrorToken::verify(&token.sign(&secret), &secret, 0);
        assert_eq!(again.as_ref().map(|t| &t.user), Ok(&token.user));
    }
});

//! The name, tag and digest grammar: never a panic, and a valid name is one the router takes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_mirror::registry::reference::{is_valid_digest, is_valid_name, is_valid_tag, Reference};

fuzz_target!(|text: &str| {
    let name = is_valid_name(text);
    let _ = is_valid_tag(text);
    let _ = is_valid_digest(text);
    let _ = Reference::parse(text);
    if name {
        assert!(!text.contains(".."), "a valid name holds '..': {text:?}");
        assert!(!text.starts_with('/') && !text.contains('?') && !text.contains('%'));
    }
});

//! The router, with any method and path.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&m, path)) = data.split_first() else { return };
    let method = [http::Method::GET, http::Method::HEAD, http::Method::POST, http::Method::PUT, http::Method::DELETE]
        [m as usize % 5]
        .clone();
    if let Ok(path) = std::str::from_utf8(path) {
        let _ = registry_mirror::registry::route::route(&method, path);
    }
});

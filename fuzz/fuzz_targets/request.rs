//! Whole requests through the core's first step: any path, query and headers, open and
//! whitelisted; never a panic, and every answer the core makes is a 4xx or a challenge.
#![no_main]
use libfuzzer_sys::fuzz_target;
use registry_mirror::{Config, Incoming, Mirror, Step};
use std::sync::OnceLock;
use std::time::SystemTime;

fn mirrors() -> &'static [Mirror; 2] {
    static M: OnceLock<[Mirror; 2]> = OnceLock::new();
    M.get_or_init(|| {
        let open = Config::from_lookup(|_| None).unwrap();
        let private = Config::from_lookup(|k| match k {
            "WHITE_LIST" => Some("alice".into()),
            "TOKEN_SECRET" => Some("fuzzing-secret-0123456789".into()),
            _ => None,
        })
        .unwrap();
        [Mirror::new(open), Mirror::new(private)]
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or("/");
    let mut builder = http::Request::builder().method(if data.len() % 3 == 0 { "POST" } else { "GET" });
    builder = builder.uri(target);
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            builder = builder.header(k.trim(), v.trim());
        }
    }
    let Ok(request) = builder.body(()) else { return };
    let (head, ()) = request.into_parts();
    for mirror in mirrors() {
        let incoming = Incoming { head: &head, scheme: "https", body: data };
        if let Step::Answer(response, _) = mirror.start(&incoming, SystemTime::now()) {
            let status = response.status().as_u16();
            assert!(status < 500, "the core answered {status} to {target:?}");
        }
    }
});

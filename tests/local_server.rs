//! The client suite against the local server (`cargo run`).
#![cfg(not(target_arch = "wasm32"))]

mod support;

use support::mirrors::LocalServer;

client_suite!(LocalServer);

/// A `WHITE_LIST` that names nobody must not open the mirror: the server refuses to start, and says
/// why.
#[test]
fn a_whitelist_naming_nobody_refuses_to_start() {
    for nobody in [",", "  "] {
        let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_registry-mirror"))
            .args(["--listen", "127.0.0.1:0"])
            .env("WHITE_LIST", nobody)
            .env("TOKEN_SECRET", support::mirrors::TOKEN_SECRET)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = server.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = server.kill();
                panic!("the server started with WHITE_LIST={nobody:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success());
        assert!(stderr.contains("names nobody"), "{stderr}");
    }
}

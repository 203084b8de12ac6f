//! Processes the tests start: each in its own process group, recorded by PID, and stopped when the
//! test binary exits (or earlier, by its guard). Nothing the tests start outlives them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static CLEANUP: Once = Once::new();

extern "C" fn stop_all_at_exit() {
    let pids: Vec<i32> = RUNNING.lock().map(|v| v.clone()).unwrap_or_default();
    for pid in pids {
        stop_group(pid);
    }
}

/// Stops a process group: SIGTERM, then SIGKILL if it is still there after a few seconds.
pub fn stop_group(pid: i32) {
    unsafe {
        libc::kill(-pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        let alive = unsafe { libc::kill(-pid, 0) } == 0;
        if !alive {
            break;
        }
        reap(pid);
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    reap(pid);
    if let Ok(mut running) = RUNNING.lock() {
        running.retain(|p| *p != pid);
    }
}

fn reap(pid: i32) {
    unsafe {
        let mut status = 0;
        libc::waitpid(pid, &mut status, libc::WNOHANG);
    }
}

/// A started process; stops its whole group when dropped.
pub struct Running {
    pub pid: i32,
    pub name: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        stop_group(self.pid);
    }
}

/// Starts `command` in a new process group, its output appended to `log`.
pub fn spawn(name: &str, mut command: Command, log: &Path) -> Running {
    use std::os::unix::process::CommandExt;
    CLEANUP.call_once(|| unsafe {
        libc::atexit(stop_all_at_exit);
    });
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
    let err = out.try_clone().expect("clone log handle");
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let child: Child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", command.get_program()));
    let pid = child.id() as i32;
    // The child is reaped by pid; dropping the handle does not kill it.
    std::mem::forget(child);
    RUNNING.lock().unwrap().push(pid);
    Running {
        pid,
        name: name.to_string(),
    }
}

/// Runs a command to completion; panics with its output if it fails.
pub fn run(mut command: Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", command.get_program()));
    if !output.status.success() {
        panic!(
            "{:?} failed ({}):\n{}\n{}",
            command,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command to completion; returns whether it succeeded and its output.
pub fn try_run(mut command: Command) -> (bool, String) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", command.get_program()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// A port on 127.0.0.1 that was free a moment ago, for programs that cannot bind port 0 and say.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{what} did not listen on 127.0.0.1:{port}; its log:\n{text}");
}

/// Waits for a line starting with `prefix` in `log`, and returns the rest of it.
pub fn wait_for_line(log: &Path, prefix: &str, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(log) {
            if let Some(line) = text.lines().find_map(|l| l.strip_prefix(prefix)) {
                return line.trim().to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{what} did not say {prefix:?}; its log:\n{text}");
}

/// The path of a program the tests need; a clear failure (never a skip) when it is missing.
pub fn need(program: &str) -> String {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
        let path = format!("{dir}/{program}");
        if Path::new(&path).exists() {
            return path;
        }
    }
    panic!(
        "{program} is not installed. The end-to-end tests use the real tools; \
         run ./scripts/test (it installs them) or install the Debian package that has {program}."
    );
}

/// Every file under `dir`.
pub fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.metadata().is_ok_and(|m| m.is_dir()) {
            true => found.extend(files(&entry.path())),
            false => found.push(entry.path()),
        }
    }
    found
}

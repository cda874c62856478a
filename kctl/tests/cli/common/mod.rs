//! The harness: the mock kcored ([`Server`]: [`mock`] answering from a [`World`] with
//! kcored's own messages, [`texts`]) and running kctl against it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod mock;
mod pki;
mod server;
pub mod texts;
pub mod world;

pub use mock::{Mock, Records, recorded};
pub use pki::Pki;
pub use server::Server;
pub use world::*;

pub const KCTL: &str = env!("CARGO_BIN_EXE_kctl");

/// The local socket kctl tries in the tests: none is there (the machine's own
/// /run/kcore/kcore.sock is never tried).
pub fn no_local_socket(home: &Path) -> PathBuf {
    home.join("run/kcore.sock")
}

/// kctl with a clean environment: no KCORE_* variables but KCORE_SOCKET (a path in the
/// temp dir where no kcored listens), HOME in a temp dir.
pub fn kctl_command(home: &Path) -> Command {
    let mut command = Command::new(KCTL);
    command
        .env_clear()
        .env("HOME", home)
        .env("KCORE_SOCKET", no_local_socket(home))
        .current_dir(home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs a command with the given stdin, failing the test if it takes over 20 s.
pub fn run(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command.spawn().expect("spawn kctl");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).expect("write stdin");
    }
    wait(child, Duration::from_secs(20))
}

pub fn wait(mut child: Child, limit: Duration) -> Output {
    // Drain the pipes while waiting: a child writing more than a pipe holds (a completion
    // script) would otherwise never exit.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status: status.unwrap_or_else(|| child.wait().expect("wait")),
        stdout: stdout.join().expect("stdout thread"),
        stderr: stderr.join().expect("stderr thread"),
    };
    assert!(
        status.is_some(),
        "kctl did not exit in time; stdout: {}; stderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// Collects a child's stdout on a thread; each receive gives everything read so far.
pub fn stdout_watcher(child: &mut Child) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut seen = Vec::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if tx.send(seen.clone()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits until the watched stdout contains `needle`.
pub fn wait_for(rx: &std::sync::mpsc::Receiver<Vec<u8>>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let seen = text(&rx.recv_timeout(left).expect("output in time"));
        if seen.contains(needle) {
            return seen;
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "kctl failed: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[track_caller]
pub fn failed(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected exit 1; stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

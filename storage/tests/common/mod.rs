//! Helpers shared by the integration tests: required tools, qemu-io, a tiny HTTP server.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;

use kcore_storage::{DirBackend, SystemRunner};

/// Fail (never skip) if `program` cannot be run, naming the Debian package to install.
pub fn require(program: &str, version_arg: &str, package: &str) {
    match Command::new(program).arg(version_arg).output() {
        Ok(_) => {}
        Err(e) => panic!(
            "{program} is required by this test and cannot be run ({e}): apt-get install -y {package}"
        ),
    }
}

pub fn require_qemu() {
    require("qemu-img", "--version", "qemu-utils");
    require("qemu-io", "--version", "qemu-utils");
}

/// Run a command that must succeed; return its stdout.
pub fn sh(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a qemu-io command (`-c CMD`) on an image; true if it succeeded and verified.
pub fn qemu_io(path: &Path, format: &str, cmd: &str) -> bool {
    let out = Command::new("qemu-io")
        .args(["-f", format, "-c", cmd])
        .arg(path)
        .output()
        .expect("run qemu-io");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // qemu-io exits 0 even when a pattern check fails; it prints "Pattern verification failed".
    out.status.success() && !stdout.contains("failed") && !stdout.contains("error")
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A dir pool in a fresh tempdir.
pub fn dir_pool() -> (tempfile::TempDir, DirBackend) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pool = DirBackend::open(tmp.path(), Arc::new(SystemRunner)).expect("open pool");
    (tmp, pool)
}

/// A qcow2 file of `size` with `data_mib` MiB of 0xcd written at offset 1 MiB.
pub fn make_qcow2(dir: &Path, file: &str, size: &str, data_mib: u32) -> PathBuf {
    let path = dir.join(file);
    sh(&["qemu-img", "create", "-q", "-f", "qcow2", p(&path), size]);
    if data_mib > 0 {
        assert!(qemu_io(
            &path,
            "qcow2",
            &format!("write -P 0xcd 1M {data_mib}M")
        ));
    }
    path
}

/// Names of the entries of a directory, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// How the test server answers.
#[derive(Debug, Clone)]
pub enum Serve {
    /// 200 with the whole body.
    Full(Vec<u8>),
    /// 200 announcing the whole length, then only `cut` bytes and a closed connection.
    Truncated(Vec<u8>, usize),
    /// 404.
    NotFound,
}

/// Serve exactly one HTTP request on 127.0.0.1; returns the URL and the server thread.
pub fn serve_once(mode: Serve) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
        }
        let _ = match mode {
            Serve::Full(body) => stream
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                )
                .and_then(|_| stream.write_all(&body)),
            Serve::Truncated(body, cut) => stream
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                )
                .and_then(|_| stream.write_all(&body[..cut])),
            Serve::NotFound => stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
            ),
        };
        let _ = stream.flush();
        // Dropping the stream closes the connection.
    });
    (format!("http://{addr}/image.img"), handle)
}

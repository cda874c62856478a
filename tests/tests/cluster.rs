//! A cluster over TCP with mutual TLS: client certificates issued by the controller
//! (`kctl cert issue`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kcore_tests::{Run, bin};

/// A kcored process in its own temp dirs with `--listen 127.0.0.1:<port>`, killed when
/// dropped.
struct Kcored {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Kcored {
    /// `kcored <args> --data-dir D/data --run-dir D/run --listen 127.0.0.1:<port>`; waits
    /// for the unix API socket (bound after the TCP listener).
    fn start(args: &[&str]) -> Kcored {
        let dir = tempfile::Builder::new()
            .prefix("kcore-cluster-")
            .tempdir()
            .expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("kcored.log")).expect("log");
        let child = Command::new(bin("kcored"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--run-dir")
            .arg(dir.path().join("run"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn kcored");
        let mut d = Kcored { dir, port, child };
        d.wait_for(&d.dir.path().join("run/kcore.sock"));
        d
    }

    fn wait_for(&mut self, socket: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("kcored exited ({st}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "kcored did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kcored.log")).unwrap_or_default()
    }

    fn pki(&self, file: &str) -> PathBuf {
        self.dir.path().join("data/pki").join(file)
    }

    /// kctl over TLS with the CA and the given client certificate and key.
    fn kctl(&self, cert: &Path, key: &Path, args: &[&str]) -> Run {
        let out = Command::new(bin("kctl"))
            .arg("--endpoint")
            .arg(format!("https://127.0.0.1:{}", self.port))
            .args(args)
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env_remove("KCORE_ENDPOINT")
            .env("KCORE_CA_CERT", self.pki("ca.crt"))
            .env("KCORE_CLIENT_CERT", cert)
            .env("KCORE_CLIENT_KEY", key)
            .stdin(Stdio::null())
            .output()
            .expect("run kctl");
        Run {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn admin(&self, args: &[&str]) -> Run {
        self.kctl(&self.pki("admin.crt"), &self.pki("admin.key"), args)
    }
}

impl Drop for Kcored {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

#[test]
fn issued_viewer_cert_lists_but_may_not_create() {
    let d = Kcored::start(&["all-in-one", "--accel", "tcg", "--node-name", "n1"]);
    let out = d.dir.path().join("certs");
    let run = d
        .admin(&[
            "cert",
            "issue",
            "alice",
            "--role",
            "viewer",
            "--out",
            out.to_str().expect("utf-8"),
        ])
        .expect_ok("cert issue");
    let (cert, key, ca) = (
        out.join("alice.crt"),
        out.join("alice.key"),
        out.join("ca.crt"),
    );
    for p in [&cert, &key, &ca] {
        assert!(
            run.stdout.contains(p.to_str().expect("utf-8")),
            "{}",
            run.stdout
        );
    }
    assert_eq!(mode(&key), 0o600);
    assert_eq!(
        std::fs::read(&ca).expect("ca"),
        std::fs::read(d.pki("ca.crt")).expect("ca")
    );

    d.kctl(&cert, &key, &["-o", "json", "vm", "list"])
        .expect_ok("vm list as the issued viewer");
    d.kctl(&cert, &key, &["node", "list"])
        .expect_ok("node list as the issued viewer");
    d.kctl(
        &cert,
        &key,
        &[
            "vm",
            "create",
            "v1",
            "--vcpu",
            "1",
            "--memory",
            "128",
            "--kernel",
            "/nonexistent/vmlinuz",
        ],
    )
    .expect_err(
        "vm create as the issued viewer",
        &["role viewer may not call CreateVM", "PermissionDenied"],
    );
    // A viewer may not issue certificates either.
    let out2 = d.dir.path().join("certs2");
    d.kctl(
        &cert,
        &key,
        &[
            "cert",
            "issue",
            "mallory",
            "--role",
            "admin",
            "--out",
            out2.to_str().expect("utf-8"),
        ],
    )
    .expect_err(
        "cert issue as a viewer",
        &[
            "role viewer may not call IssueCertificate",
            "PermissionDenied",
        ],
    );
    assert!(!out2.join("mallory.key").exists());
    // Join tokens: admin only, printed alone.
    let token = d
        .admin(&["node", "join-token", "--ttl", "60"])
        .expect_ok("node join-token")
        .stdout;
    assert_eq!(token.lines().count(), 1, "{token:?}");
    let token = token.trim();
    assert!(
        token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()),
        "{token:?}"
    );
    d.kctl(&cert, &key, &["node", "join-token"]).expect_err(
        "join-token as a viewer",
        &[
            "role viewer may not call CreateJoinToken",
            "PermissionDenied",
        ],
    );
    // Existing files are not replaced.
    d.admin(&[
        "cert",
        "issue",
        "alice",
        "--role",
        "admin",
        "--out",
        out.to_str().expect("utf-8"),
    ])
    .expect_err("cert issue over existing files", &["alice.crt exists"]);
}

//! Several kcored processes on loopback: a controller with `--listen 127.0.0.1:<port>`
//! and nodes that join it with one-time tokens, each in its own data and run dirs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Run, alive, bin};

/// A kcored process in its own temp dirs with `--listen 127.0.0.1:<port>`. Dropping it
/// kills it and the QEMUs it started.
pub struct Kcored {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub child: Child,
    socket: PathBuf,
}

impl Kcored {
    /// `kcored <args> --data-dir D/data --run-dir D/run --listen 127.0.0.1:<port>`; waits
    /// for the unix API socket (bound after the TCP listener).
    pub fn start(args: &[&str]) -> Kcored {
        Self::start_waiting(args, "kcore.sock")
    }

    /// Like [`Kcored::start`], waiting for `<run-dir>/<socket>`.
    pub fn start_waiting(args: &[&str], socket: &str) -> Kcored {
        let dir = tempfile::Builder::new()
            .prefix("kcore-cluster-")
            .tempdir()
            .expect("tempdir");
        // Like /var/lib/kcore: traversable, so the unprivileged QEMU reaches its volumes.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod tempdir");
        }
        let port = free_port();
        let child = spawn(dir.path(), port, args);
        let socket = dir.path().join("run").join(socket);
        let mut d = Kcored {
            dir,
            port,
            child,
            socket,
        };
        d.wait_for(&d.socket.clone());
        d
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL the daemon (its QEMUs keep running).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kill and start again in the same dirs on the same port with `args`.
    pub fn restart(&mut self, args: &[&str]) {
        self.kill9();
        // The socket of the killed process must not count as the new one being up.
        let _ = std::fs::remove_file(&self.socket);
        self.child = spawn(self.dir.path(), self.port, args);
        self.wait_for(&self.socket.clone());
    }

    /// SIGSTOP (true) or SIGCONT (false): a hung host whose connections stay open.
    pub fn freeze(&self, stop: bool) {
        let sig = if stop {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig)
            .expect("signal kcored");
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kcored.log")).unwrap_or_default()
    }

    pub fn pki(&self, file: &str) -> PathBuf {
        self.dir.path().join("data/pki").join(file)
    }

    /// The ids of the VMs this node keeps a definition of (`<data-dir>/vms/<id>`).
    pub fn defined_vms(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.dir.path().join("data/vms"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Live QEMU processes of this node, by VM id (from `<run-dir>/vms/<id>/qemu.pid`).
    pub fn qemus(&self) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("run/vms")) {
            for e in entries.flatten() {
                if let Ok(s) = std::fs::read_to_string(e.path().join("qemu.pid"))
                    && let Ok(p) = s.trim().parse::<u32>()
                    && alive(p)
                {
                    out.push((e.file_name().to_string_lossy().into_owned(), p));
                }
            }
        }
        out.sort();
        out
    }

    /// kctl over TLS with the CA and the given client certificate and key.
    pub fn kctl(&self, cert: &Path, key: &Path, args: &[&str]) -> Run {
        let out = self
            .kctl_command(cert, key, args)
            .stdin(Stdio::null())
            .output()
            .expect("run kctl");
        Run::from(out)
    }

    /// The kctl command `kctl` runs, to spawn it in the background.
    pub fn kctl_command(&self, cert: &Path, key: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("kctl"));
        cmd.arg("--endpoint")
            .arg(format!("https://127.0.0.1:{}", self.port))
            .args(args)
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env_remove("KCORE_ENDPOINT")
            .env("KCORE_CA_CERT", self.pki("ca.crt"))
            .env("KCORE_CLIENT_CERT", cert)
            .env("KCORE_CLIENT_KEY", key);
        cmd
    }

    pub fn admin(&self, args: &[&str]) -> Run {
        self.kctl(&self.pki("admin.crt"), &self.pki("admin.key"), args)
    }

    /// kctl over this daemon's local unix socket (`<run-dir>/kcore.sock`), as root.
    pub fn kctl_unix(&self, args: &[&str]) -> Run {
        let out = Command::new(bin("kctl"))
            .args(args)
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env(
                "KCORE_ENDPOINT",
                format!(
                    "unix://{}",
                    self.dir.path().join("run/kcore.sock").display()
                ),
            )
            .stdin(Stdio::null())
            .output()
            .expect("run kctl");
        Run::from(out)
    }

    /// `kctl cert issue NAME --role ROLE --out <dir>/certs` as admin: the run, and the
    /// certificate's and key's paths.
    pub fn issue_cert(&self, name: &str, role: &str) -> (Run, PathBuf, PathBuf) {
        let out = self.dir.path().join("certs");
        let run = self
            .admin(&[
                "cert",
                "issue",
                name,
                "--role",
                role,
                "--out",
                out.to_str().expect("utf-8"),
            ])
            .expect_ok("cert issue");
        (
            run,
            out.join(format!("{name}.crt")),
            out.join(format!("{name}.key")),
        )
    }

    /// A fresh join token (10 minutes).
    pub fn join_token(&self) -> String {
        self.admin(&["node", "join-token", "--ttl", "600"])
            .expect_ok("join-token")
            .stdout
            .trim()
            .to_string()
    }

    /// `kctl -o json node list`, as (name, state) pairs.
    pub fn node_states(&self) -> Vec<(String, String)> {
        let v = self
            .admin(&["-o", "json", "node", "list"])
            .expect_ok("node list")
            .json();
        v["nodes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|n| {
                        (
                            n["name"].as_str().unwrap_or_default().to_string(),
                            n["state"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The READY nodes' names.
    pub fn ready_nodes(&self) -> Vec<String> {
        self.node_states()
            .into_iter()
            .filter(|(_, s)| s == "NODE_STATE_READY")
            .map(|(n, _)| n)
            .collect()
    }

    /// `kctl -o json vm list`: the VMs.
    pub fn vms(&self) -> Vec<Value> {
        let v = self
            .admin(&["-o", "json", "vm", "list"])
            .expect_ok("vm list")
            .json();
        v["vms"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Kcored {
    fn drop(&mut self) {
        let qemus = self.qemus();
        self.kill9();
        for (_, p) in qemus {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn spawn(dir: &Path, port: u16, args: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("kcored.log"))
        .expect("log");
    Command::new(bin("kcored"))
        .args(args)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--run-dir")
        .arg(dir.join("run"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
        .expect("spawn kcored")
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// The args of a joined node: `node --accel tcg --name NAME --controller 127.0.0.1:<port>
/// --ca-cert CA --import-dir <the test guest's dir>`, plus `extra`. Over TLS, the kernel and
/// initrd a VM names must be under an import dir of its node.
pub fn node_args(ctl: &Kcored, name: &str, extra: &[&str]) -> Vec<String> {
    let guest_dir = crate::guest()
        .kernel
        .parent()
        .expect("the guest kernel is in a directory")
        .to_str()
        .expect("utf-8")
        .to_string();
    let mut a: Vec<String> = [
        "node",
        "--accel",
        "tcg",
        "--name",
        name,
        "--controller",
        &format!("127.0.0.1:{}", ctl.port),
        "--ca-cert",
        ctl.pki("ca.crt").to_str().expect("utf-8"),
        "--import-dir",
        &guest_dir,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// A node that joins `ctl` with `token`, with `extra` args (e.g. `--cpus 2`).
pub fn start_node(ctl: &Kcored, name: &str, token: &str, extra: &[&str]) -> Kcored {
    let mut a = node_args(ctl, name, extra);
    a.push("--join-token".into());
    a.push(token.into());
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    Kcored::start_waiting(&refs, "node.sock")
}

/// Wait until `cond` holds, or panic after `secs` with `what` and the result of `explain`.
pub fn wait_until(
    secs: u64,
    what: &str,
    mut cond: impl FnMut() -> bool,
    explain: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            explain()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

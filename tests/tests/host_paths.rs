//! Host paths a request names (an image import's source, a VM's kernel) are read only if
//! the caller may: over the local socket with the caller's own uid and groups, over TLS
//! (or from a controller on another host) only under the node's `--import-dir`. FIFOs,
//! devices and directories are refused at once. Import errors carry the OS's reason.
//!
//! The local-socket tests run the real kctl as a non-root member of group `kcore` (the user
//! is made with useradd if absent) through `setpriv`.

use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kcore_tests::cluster::{Kcored, start_node, wait_until};
use kcore_tests::{Daemon, Run, bin, guest, run_tool};

/// The unprivileged test user.
const USER: &str = "kcore-path-test";

/// The test user's uid and gid: a system user with a group of its own, also in `kcore`.
fn test_user() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        run_tool("groupadd", &["-f", "kcore"]).expect_ok("groupadd -f kcore");
        if !run_tool("id", &["-u", USER]).ok {
            let made = run_tool(
                "useradd",
                &[
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    USER,
                ],
            );
            // Another test process may have made it in between.
            assert!(
                made.ok || run_tool("id", &["-u", USER]).ok,
                "useradd {USER}: {}",
                made.stderr
            );
        }
        run_tool("usermod", &["-aG", "kcore", USER]).expect_ok("usermod -aG kcore");
        let id = |flag: &str| {
            run_tool("id", &[flag, USER])
                .expect_ok("id")
                .stdout
                .trim()
                .parse::<u32>()
                .expect("numeric id")
        };
        (id("-u"), id("-g"))
    })
}

/// The real kctl over `d`'s unix socket: as the test user (its own uid, gid and groups,
/// through setpriv) or as root.
fn kctl_cmd(d: &Daemon, as_user: bool, args: &[&str]) -> Command {
    let mut cmd = if as_user {
        let (uid, gid) = test_user();
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &gid.to_string(),
            "--init-groups",
            "--",
        ])
        .arg(bin("kctl"));
        c
    } else {
        Command::new(bin("kctl"))
    };
    cmd.args(args)
        .env("KCORE_ENDPOINT", format!("unix://{}", d.socket().display()))
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Run `cmd`, killing it (and failing the test) if it is not done within `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> Run {
    let mut child = cmd.spawn().expect("run kctl (setpriv is in util-linux)");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait for kctl").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("kctl output");
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The real kctl as the test user.
fn kctl_as_user(d: &Daemon, args: &[&str]) -> Run {
    run_bounded(kctl_cmd(d, true, args), Duration::from_secs(60))
}

/// A directory (made) with an owner and a mode.
fn dir(path: &Path, uid: u32, gid: u32, mode: u32) -> PathBuf {
    std::fs::create_dir_all(path).expect("mkdir");
    chown(path, Some(uid), Some(gid)).expect("chown");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path.to_path_buf()
}

/// A 1 MiB raw disk image (zeros) with an owner and a mode.
fn image(path: &Path, uid: u32, gid: u32, mode: u32) -> String {
    std::fs::write(path, vec![0u8; 1 << 20]).expect("write image");
    chown(path, Some(uid), Some(gid)).expect("chown");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path.to_str().expect("utf-8").to_string()
}

fn gid_of_kcore() -> u32 {
    run_tool("getent", &["group", "kcore"])
        .expect_ok("getent group kcore")
        .stdout
        .split(':')
        .nth(2)
        .and_then(|g| g.parse().ok())
        .expect("gid of kcore")
}

/// The names of the images the daemon has.
fn images(d: &Daemon) -> Vec<String> {
    let v = d
        .kctl(&["-o", "json", "image", "list"])
        .expect_ok("image list")
        .json();
    v["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_local_user_imports_only_what_it_may_read() {
    let (uid, gid) = test_user();
    let kcore = gid_of_kcore();
    let d = Daemon::start();
    // The user reaches the socket by its group, as any member of kcore would.
    kctl_as_user(&d, &["image", "list"]).expect_ok("image list as a kcore member");

    let top = tempfile::Builder::new()
        .prefix("kcore-paths-")
        .tempdir()
        .expect("tempdir");
    dir(top.path(), 0, 0, 0o755);
    let root_only = dir(&top.path().join("root-0700"), 0, 0, 0o700);
    let users = dir(&top.path().join("user-0700"), uid, gid, 0o700);
    let group = dir(&top.path().join("kcore-0750"), 0, kcore, 0o750);
    let secret = image(&root_only.join("secret.raw"), 0, 0, 0o600);
    let mine = image(&users.join("mine.raw"), uid, gid, 0o600);
    let shared = image(&group.join("shared.raw"), 0, kcore, 0o640);

    // Root's file in root's 0700 directory: refused, naming the path; no image is made.
    kctl_as_user(&d, &["image", "import", "stolen", &secret]).expect_err(
        "import of a root-only file",
        &["PermissionDenied", &secret, "permission denied", USER],
    );
    assert!(images(&d).is_empty(), "{:?}", images(&d));
    // Its own file (0600 in its 0700 dir), and a file it reads through group kcore.
    kctl_as_user(&d, &["image", "import", "mine", &mine]).expect_ok("import of its own file");
    kctl_as_user(&d, &["image", "import", "shared", &shared])
        .expect_ok("import of a file of its group");
    assert_eq!(images(&d), ["mine", "shared"]);

    // The same rule for a kernel: root's copy is refused, the world-readable one is fine.
    let kernel = root_only.join("vmlinuz");
    std::fs::copy(&guest().kernel, &kernel).expect("copy kernel");
    let kernel = kernel.to_str().expect("utf-8");
    let define = |k: &str, name: &str| {
        kctl_as_user(
            &d,
            &[
                "vm",
                "create",
                name,
                "--vcpu",
                "1",
                "--memory",
                "64",
                "--kernel",
                k,
                "--start=false",
            ],
        )
    };
    define(kernel, "k1").expect_err("a root-only kernel", &["PermissionDenied", kernel]);
    define(guest().kernel.to_str().expect("utf-8"), "k2").expect_ok("a readable kernel");

    // Root may read anything.
    d.kctl(&["image", "import", "by-root", &secret])
        .expect_ok("root imports a root-only file");

    // A missing file: the OS's reason.
    let missing = users.join("missing.raw");
    kctl_as_user(
        &d,
        &["image", "import", "gone", missing.to_str().expect("utf-8")],
    )
    .expect_err(
        "import of a missing file",
        &["No such file or directory", "InvalidArgument"],
    );
}

#[test]
fn a_fifo_device_or_directory_is_refused_at_once() {
    let (uid, gid) = test_user();
    let d = Daemon::start();
    let top = tempfile::Builder::new()
        .prefix("kcore-paths-")
        .tempdir()
        .expect("tempdir");
    dir(top.path(), 0, 0, 0o755);
    let users = dir(&top.path().join("user"), uid, gid, 0o700);
    let fifo = users.join("fifo");
    run_tool("mkfifo", &[fifo.to_str().expect("utf-8")]).expect_ok("mkfifo");
    chown(&fifo, Some(uid), Some(gid)).expect("chown");
    let fifo = fifo.to_str().expect("utf-8");
    for (what, path) in [
        ("FIFO", fifo),
        ("character device", "/dev/zero"),
        ("directory", users.to_str().expect("utf-8")),
    ] {
        for as_user in [true, false] {
            let t = Instant::now();
            // A FIFO used to block the import (and kctl) forever.
            let run = run_bounded(
                kctl_cmd(&d, as_user, &["image", "import", "x", path]),
                Duration::from_secs(10),
            );
            run.expect_err(
                "import of a special file",
                &[
                    &format!("is a {what}, not a regular file"),
                    "InvalidArgument",
                ],
            );
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "{path}: refused only after {:?}",
                t.elapsed()
            );
        }
    }
    assert!(images(&d).is_empty(), "{:?}", images(&d));
}

/// Files for the TLS tests: `import/ok.raw` and `outside/world.raw` (world-readable, so only
/// the import-dir rule can refuse it).
fn import_tree() -> (tempfile::TempDir, PathBuf, String, String) {
    let top = tempfile::Builder::new()
        .prefix("kcore-import-")
        .tempdir()
        .expect("tempdir");
    dir(top.path(), 0, 0, 0o755);
    let import = dir(&top.path().join("import"), 0, 0, 0o755);
    let outside = dir(&top.path().join("outside"), 0, 0, 0o755);
    let ok = image(&import.join("ok.raw"), 0, 0, 0o644);
    let world = image(&outside.join("world.raw"), 0, 0, 0o644);
    (top, import, ok, world)
}

#[test]
fn over_tls_only_the_import_dirs_may_be_named() {
    let (_top, import, ok, world) = import_tree();
    let import_s = import.to_str().expect("utf-8");
    let d = Kcored::start(&[
        "all-in-one",
        "--accel",
        "tcg",
        "--node-name",
        "node1",
        "--import-dir",
        import_s,
    ]);
    d.admin(&["image", "import", "inside", &ok])
        .expect_ok("import from the import dir over TLS");
    d.admin(&["image", "import", "outside", &world]).expect_err(
        "import from outside the import dir over TLS",
        &[
            "PermissionDenied",
            &world,
            "is not under an import dir of node node1",
            import_s,
        ],
    );
    // Kernels too.
    let kernel = import.join("vmlinuz");
    std::fs::copy(&guest().kernel, &kernel).expect("copy kernel");
    let define = |k: &str, name: &str| {
        d.admin(&[
            "vm",
            "create",
            name,
            "--vcpu",
            "1",
            "--memory",
            "64",
            "--kernel",
            k,
            "--start=false",
        ])
    };
    define(kernel.to_str().expect("utf-8"), "in").expect_ok("a kernel in the import dir");
    let outside_kernel = guest().kernel.to_str().expect("utf-8");
    define(outside_kernel, "out").expect_err(
        "a kernel outside the import dir over TLS",
        &["PermissionDenied", outside_kernel],
    );
    // The same file is fine for root on the local socket: the rule follows the caller.
    d.kctl_unix(&["image", "import", "local", &world])
        .expect_ok("root imports it over the local socket");
}

#[test]
fn a_local_caller_of_a_controller_on_another_host_gets_the_import_dirs() {
    let (_top, import, ok, world) = import_tree();
    let ctl = Kcored::start(&["controller"]);
    let token = ctl.join_token();
    let _n1 = start_node(
        &ctl,
        "n1",
        &token,
        &["--import-dir", import.to_str().expect("utf-8")],
    );
    wait_until(30, "n1 READY", || ctl.ready_nodes() == ["n1"], || ctl.log());
    // Root on the controller's socket: its uid means nothing on the node's host.
    ctl.kctl_unix(&["image", "import", "outside", &world])
        .expect_err(
            "import from outside the import dir via a remote node",
            &["PermissionDenied", "controller is on another host"],
        );
    ctl.kctl_unix(&["image", "import", "inside", &ok])
        .expect_ok("import from the node's import dir");
}

/// A small tmpfs mounted at a path, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mkdir");
        let p = path.to_str().expect("utf-8");
        run_tool(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "kcore-test",
                p,
            ],
        )
        .expect_ok("mount tmpfs");
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let r = run_tool("umount", &["-l", self.0.to_str().unwrap_or_default()]);
        if !r.ok {
            eprintln!("umount {}: {}", self.0.display(), r.stderr);
        }
    }
}

#[test]
fn an_import_into_a_full_pool_says_the_disk_is_full() {
    let top = tempfile::Builder::new()
        .prefix("kcore-full-")
        .tempdir()
        .expect("tempdir");
    dir(top.path(), 0, 0, 0o755);
    let mnt = top.path().join("tiny");
    let _tmpfs = Tmpfs::mount(&mnt, "1m");
    let d = Daemon::start_with(&["--pool", &format!("tiny=dir:{}", mnt.display())]);
    let src = top.path().join("big.raw");
    std::fs::write(&src, vec![0u8; 4 << 20]).expect("write image");
    d.kctl(&[
        "image",
        "import",
        "big",
        src.to_str().expect("utf-8"),
        "--pool",
        "tiny",
    ])
    .expect_err(
        "import into a full pool",
        &["No space left on device", "ResourceExhausted"],
    );
    // Nothing is left of it.
    let left: Vec<_> = std::fs::read_dir(mnt.join("images"))
        .expect("the pool's images dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(d);
}

//! Hardening, driven as a user (or a hostile local user) would: one daemon per data dir and
//! run dir, never two QEMUs of one VM, disks and state nobody else can read, a QEMU uid of
//! its own per VM, and limits checked when a VM is created or started.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kcore_tests::{Daemon, alive, bin, guest};

/// Start a second `kcored all-in-one` on these dirs; it must exit at once. Returns its
/// stderr.
fn second_daemon(data: &Path, run: &Path) -> String {
    let mut child = Command::new(bin("kcored"))
        .args(["all-in-one", "--accel", "tcg", "--node-name", "node2"])
        .arg("--data-dir")
        .arg(data)
        .arg("--run-dir")
        .arg(run)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kcored");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            assert!(!st.success(), "the second daemon must fail");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the second daemon did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn kill(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("signal");
}

#[test]
fn a_second_daemon_on_the_same_dirs_is_refused_and_changes_nothing() {
    let d = Daemon::start();
    let vm = d.create_guest("first", "", &[]);
    let pid = vm["pid"].as_u64().expect("pid") as u32;
    let spec = std::fs::read(
        d.data_dir()
            .join("vms")
            .join(vm["id"].as_str().expect("id"))
            .join("spec.json"),
    )
    .expect("spec");

    // Same data dir, another run dir.
    let other_run = d.dir.path().join("run2");
    let err = second_daemon(&d.data_dir(), &other_run);
    assert!(
        err.contains(&format!("in use by another kcored (pid {})", d.pid())),
        "{err}"
    );
    assert!(err.contains("--data-dir"), "{err}");
    // Same run dir, another data dir.
    let err = second_daemon(&d.dir.path().join("data2"), &d.run_dir());
    assert!(
        err.contains(&format!("in use by another kcored (pid {})", d.pid())),
        "{err}"
    );
    assert!(err.contains("--run-dir"), "{err}");
    // Nothing of the first daemon's changed.
    let after = d.vm("first");
    assert_eq!(after["status"], "VM_STATUS_RUNNING", "{after}");
    assert_eq!(after["pid"].as_u64(), Some(u64::from(pid)));
    assert!(alive(pid));
    assert_eq!(
        std::fs::read(
            d.data_dir()
                .join("vms")
                .join(vm["id"].as_str().expect("id"))
                .join("spec.json")
        )
        .expect("spec"),
        spec
    );
    assert!(
        !other_run.join("vms").exists(),
        "the refused daemon made nothing"
    );
}

#[test]
fn a_second_qemu_of_a_vm_is_never_started() {
    let mut d = Daemon::start();
    let vm = d.create_guest("solo", "", &[]);
    let pid = vm["pid"].as_u64().expect("pid") as u32;
    let id = vm["id"].as_str().expect("id").to_string();
    // The daemon loses track of the QEMU (its pidfile is gone): after a restart the node
    // thinks the VM is stopped, but its QEMU still runs.
    d.kill9();
    std::fs::remove_file(d.run_dir().join("vms").join(&id).join("qemu.pid")).expect("rm pidfile");
    d.restart();
    assert_eq!(d.vm("solo")["status"], "VM_STATUS_STOPPED");
    d.kctl(&["vm", "start", "solo"]).expect_err(
        "second QEMU",
        &[
            &format!("a QEMU of this VM is still running (pid {pid})"),
            "FailedPrecondition",
        ],
    );
    let running: Vec<u32> = kcore_tests::qemus_with_uuid(&id);
    assert_eq!(running, vec![pid], "still exactly one QEMU of the VM");
    kill(pid, nix::sys::signal::Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    d.kctl(&["vm", "start", "solo"])
        .expect_ok("start once the old QEMU is gone");
}

/// `cat FILE` as uid:gid without supplementary groups; true if it could read.
fn can_read_as(uid: u32, gid: u32, file: &Path) -> bool {
    Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            "cat",
        ])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("setpriv (util-linux)")
        .success()
}

fn qemu_uid_gid(pid: u32) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| -> u32 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {status}"))
    };
    (field("Uid:"), field("Gid:"))
}

fn volume_path(d: &Daemon, vm: &str) -> PathBuf {
    let vols = d
        .kctl(&["-o", "json", "volume", "list"])
        .expect_ok("volume list")
        .json();
    let path = vols["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["vm"] == vm)
        .and_then(|v| v["path"].as_str())
        .unwrap_or_else(|| panic!("no volume of {vm}: {vols}"));
    PathBuf::from(path)
}

fn mode(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.mode() & 0o777)
}

#[test]
fn disks_and_state_are_private_and_each_qemu_has_its_own_uid() {
    let mut d = Daemon::start();
    let a = d.create_guest("priv-a", "", &["--disk", "default:1"]);
    let b = d.create_guest("priv-b", "", &["--disk", "default:1"]);
    let (pa, pb) = (
        a["pid"].as_u64().expect("pid") as u32,
        b["pid"].as_u64().expect("pid") as u32,
    );
    let (va, vb) = (volume_path(&d, "priv-a"), volume_path(&d, "priv-b"));
    // Both booted (their first boot is on their consoles).
    for vm in ["priv-a", "priv-b"] {
        d.wait_console(vm, "KCORE-GUEST-READY", 1, Duration::from_secs(120));
    }

    // Files: root's alone.
    assert_eq!(mode(&va), (0, 0o600), "volume {}", va.display());
    assert_eq!(mode(va.parent().expect("dir")), (0, 0o700), "volumes dir");
    let spec = d
        .data_dir()
        .join("vms")
        .join(a["id"].as_str().expect("id"))
        .join("spec.json");
    assert_eq!(mode(&spec), (0, 0o600), "spec.json (holds the cmdline)");
    assert_eq!(mode(&d.data_dir().join("controller.db")).1, 0o600);
    let run = d.run_dir().join("vms").join(a["id"].as_str().expect("id"));
    assert_eq!(mode(&run), (0, 0o700), "run dir");
    for f in ["qemu.log", "console.log", "qmp.log", "qemu.argv"] {
        assert_eq!(mode(&run.join(f)).1, 0o600, "{f}");
    }

    // Another local user reads none of it.
    let nobody = 65534;
    for f in [&va, &vb, &spec, &run.join("console.log")] {
        assert!(
            !can_read_as(nobody, nobody, f),
            "nobody read {}",
            f.display()
        );
    }

    // Each QEMU runs as a uid of its own, after kcore-qemu's, in kcore-qemu's group.
    let base = nix::unistd::User::from_name("kcore-qemu")
        .expect("getpwnam")
        .expect("user kcore-qemu (scripts/deps.sh makes it)");
    let (ua, ga) = qemu_uid_gid(pa);
    let (ub, gb) = qemu_uid_gid(pb);
    assert_ne!(ua, ub, "two VMs, two uids");
    for u in [ua, ub] {
        assert!(
            u > base.uid.as_raw() && u <= base.uid.as_raw() + 4096,
            "{u}"
        );
    }
    assert_eq!((ga, gb), (base.gid.as_raw(), base.gid.as_raw()));
    // A QEMU that escaped its guest cannot open another VM's disk (nor, by path, its own:
    // it holds its disks as descriptors the daemon opened).
    assert!(!can_read_as(ua, ga, &vb), "VM a's uid read VM b's disk");
    assert!(!can_read_as(ub, gb, &va), "VM b's uid read VM a's disk");
    let fds: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pa}/fd"))
        .expect("fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect();
    assert!(fds.contains(&va), "QEMU holds its disk: {fds:?}");

    // The uid is the VM's for good: the same after a stop and start, and after a daemon
    // restart.
    d.kctl(&["vm", "stop", "priv-a", "--force"])
        .expect_ok("stop");
    let a2 = d
        .kctl(&["-o", "json", "vm", "start", "priv-a"])
        .expect_ok("start")
        .json();
    assert_eq!(qemu_uid_gid(a2["pid"].as_u64().expect("pid") as u32).0, ua);
    d.restart();
    d.kctl(&["vm", "stop", "priv-b", "--force"])
        .expect_ok("stop");
    let b2 = d
        .kctl(&["-o", "json", "vm", "start", "priv-b"])
        .expect_ok("start")
        .json();
    assert_eq!(qemu_uid_gid(b2["pid"].as_u64().expect("pid") as u32).0, ub);
    // And it boots again as that uid.
    d.wait_console("priv-b", "KCORE-GUEST-READY", 2, Duration::from_secs(120));
}

#[test]
fn limits_are_checked_at_create_and_start() {
    // A node offering 512 MiB: two 256 MiB VMs fill it.
    let d = Daemon::start_with(&["--memory", "512"]);
    let g = guest();
    let create = |name: &str, extra: &[&str]| {
        let mut a = vec![
            "vm",
            "create",
            name,
            "--vcpu",
            "1",
            "--memory",
            "256",
            "--kernel",
            g.kernel.to_str().expect("utf8"),
            "--initrd",
            g.initrd.to_str().expect("utf8"),
            "--cmdline",
            "console=ttyS0 quiet",
            "--ready-pattern",
            "KCORE-GUEST-READY",
        ];
        a.extend_from_slice(extra);
        d.kctl(&a)
    };
    // 30 disks or 30 NICs do not fit a q35 machine: refused before anything is made.
    let thirty_disks: Vec<&str> = std::iter::repeat_n(["--disk", "default:1"], 30)
        .flatten()
        .collect();
    create("many-disks", &thirty_disks).expect_err(
        "30 disks",
        &["30 disks and 0 NICs", "room for 26", "InvalidArgument"],
    );
    let thirty_nics: Vec<&str> = std::iter::repeat_n(["--nic", "lan"], 30)
        .flatten()
        .collect();
    create("many-nics", &thirty_nics).expect_err(
        "30 NICs",
        &["0 disks and 30 NICs", "room for 26", "InvalidArgument"],
    );
    create(
        "micro",
        &[&["--machine", "microvm"][..], &thirty_disks[..50]].concat(),
    )
    .expect_err("25 disks on microvm", &["room for 24"]);
    let vols = d
        .kctl(&["-o", "json", "volume", "list"])
        .expect_ok("volumes")
        .json();
    assert_eq!(vols["volumes"].as_array().map(Vec::len), Some(0), "{vols}");

    // One pool-space rule: a new disk, a growth, live or not, must fit the pool's free
    // space; nothing is ever above 64 TiB.
    let free = d
        .kctl(&["-o", "json", "pool", "list"])
        .expect_ok("pools")
        .json()["pools"][0]["free_bytes"]
        .as_str()
        .and_then(|s| s.parse::<u64>().ok())
        .expect("free bytes");
    let too_big = (free >> 30) + 10;
    create("huge", &["--disk", &format!("default:{too_big}")]).expect_err(
        "disk above the free space",
        &["pool default has", "GiB free", "ResourceExhausted"],
    );
    create("a", &["--disk", "default:1"]).expect_ok("a");
    d.kctl(&["vm", "disk", "resize", "a", "vda", &too_big.to_string()])
        .expect_err(
            "live resize above the free space",
            &["more than pool default has free", "ResourceExhausted"],
        );
    d.kctl(&["vm", "disk", "resize", "a", "vda", "99328"])
        .expect_err("97 TiB", &["64 TiB", "InvalidArgument"]);
    d.kctl(&["vm", "disk", "attach", "a", &format!("default:{too_big}")])
        .expect_err("attach above the free space", &["ResourceExhausted"]);

    // Starting a stopped VM checks the node's room again.
    create("b", &["--start=false"]).expect_ok("b defined");
    create("c", &["--start=false"]).expect_ok("c defined");
    d.kctl(&["vm", "start", "b"]).expect_ok("b fits");
    d.kctl(&["vm", "start", "c"]).expect_err(
        "no room for c",
        &[
            "node node1 has no room to start the VM",
            "ResourceExhausted",
        ],
    );
    assert_eq!(d.vm("c")["status"], "VM_STATUS_STOPPED");
    d.kctl(&["vm", "stop", "b", "--force"]).expect_ok("stop b");
    d.kctl(&["vm", "start", "c"]).expect_ok("now c fits");
}

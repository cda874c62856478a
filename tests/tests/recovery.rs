//! Nothing is lost or doubled when the daemon dies: a create cut short is undone at the next
//! start, a live QEMU that does not answer QMP stays known (UNKNOWN, its pid and taps kept,
//! never started twice), the restart policy applies to what died while the daemon was
//! down and keeps trying when a restart fails, autostart VMs start when the node boots, and
//! volumes kept from a deleted VM can be attached again or deleted.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kcore_tests::{Daemon, NetNs, alive, bin, guest};
use nix::sys::signal::Signal;

const BOOT: Duration = Duration::from_secs(120);

fn kill(pid: u32, sig: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("signal");
}

fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_create_killed_midway_leaves_nothing_and_the_name_can_be_used_again() {
    const DISKS: usize = 8;
    let mut d = Daemon::start();
    let g = guest();
    let volumes = d.data_dir().join("pools/default/volumes");
    let mut args = vec![
        "vm".to_string(),
        "create".into(),
        "big".into(),
        "--vcpu".into(),
        "1".into(),
        "--memory".into(),
        "128".into(),
        "--kernel".into(),
        g.kernel.display().to_string(),
        "--initrd".into(),
        g.initrd.display().to_string(),
    ];
    // Eight 1 GiB disks: enough for the kill to land between two of them, few enough that
    // the pool's free space (which placement checks) is there on a CI machine.
    for _ in 0..DISKS {
        args.extend(["--disk".to_string(), "default:1".to_string()]);
    }
    let kctl = Command::new(bin("kctl"))
        .args(&args)
        .env("KCORE_ENDPOINT", format!("unix://{}", d.socket().display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kctl");
    // Kill -9 the daemon as soon as the create has made its first volumes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut kctl = kctl;
    while files_in(&volumes).is_empty() {
        if Instant::now() >= deadline || matches!(kctl.try_wait(), Ok(Some(_))) {
            let _ = kctl.kill();
            let out = kctl.wait_with_output().expect("kctl's output");
            panic!(
                "no volume was ever made; kctl said: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    d.kill9();
    let made = files_in(&volumes).len();
    assert!(
        (1..DISKS).contains(&made),
        "the kill must land mid-create: {made} of {DISKS} volumes made"
    );
    let _ = kctl.wait_with_output();

    d.restart();
    assert_eq!(files_in(&volumes), Vec::<String>::new(), "orphan volumes");
    assert_eq!(files_in(&d.data_dir().join("vms")), Vec::<String>::new());
    assert_eq!(files_in(&d.run_dir().join("vms")), Vec::<String>::new());
    // The controller's row of the create the node never finished goes too.
    wait_until("the half-made VM is gone", Duration::from_secs(30), || {
        d.kctl(&["-o", "json", "vm", "list"])
            .expect_ok("list")
            .json()["vms"]
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    let vm = d.create_guest("big", "", &["--disk", "default:1", "--disk", "default:1"]);
    assert_eq!(vm["status"], "VM_STATUS_RUNNING", "{vm}");
    assert_eq!(vm["disks"].as_array().map(Vec::len), Some(2), "{vm}");
}

#[test]
fn kept_volumes_can_be_attached_again_or_deleted() {
    let d = Daemon::start();
    d.create_guest("keep", "kcore.echo=off", &["--disk", "default:1"]);
    d.wait_console("keep", "KCORE-GUEST-SHELL", 1, BOOT);
    d.type_until(
        "keep",
        // fsync: the guest's flush makes QEMU write the qcow2 metadata out too.
        "echo KEPT-DATA-42 | dd of=/dev/vda conv=fsync 2>/dev/null; echo wrote-it",
        "wrote-it",
        Duration::from_secs(3),
    );
    d.kctl(&["vm", "delete", "keep", "--force", "--keep-disks"])
        .expect_ok("delete, keeping disks");
    let vols = d
        .kctl(&["-o", "json", "volume", "list"])
        .expect_ok("volumes")
        .json();
    assert_eq!(vols["volumes"][0]["name"], "keep-disk1", "{vols}");
    assert_eq!(vols["volumes"][0]["vm"], "", "no VM uses it now: {vols}");

    // A new VM gets the kept volume, data and all.
    d.create_guest("again", "kcore.echo=off", &["--disk", "default:keep-disk1"]);
    d.wait_console("again", "KCORE-GUEST-SHELL", 1, BOOT);
    d.type_until(
        "again",
        "head -c 12 /dev/vda; echo",
        "KEPT-DATA-42",
        Duration::from_secs(3),
    );
    d.kctl(&["volume", "delete", "keep-disk1"]).expect_err(
        "delete while attached",
        &["is a disk of VM again", "FailedPrecondition"],
    );
    d.create_guest_run("third", None, "", &["--disk", "default:keep-disk1"])
        .expect_err(
            "one volume, two VMs",
            &["is a disk of VM again", "FailedPrecondition"],
        );
    d.kctl(&["volume", "delete", "nosuch"])
        .expect_err("unknown volume", &["NotFound"]);
    d.kctl(&["vm", "delete", "again", "--force", "--keep-disks"])
        .expect_ok("delete again");
    d.kctl(&["volume", "delete", "keep-disk1"])
        .expect_ok("delete the volume");
    let vols = d
        .kctl(&["-o", "json", "volume", "list"])
        .expect_ok("volumes")
        .json();
    assert_eq!(vols["volumes"].as_array().map(Vec::len), Some(0), "{vols}");
}

#[test]
fn a_live_qemu_without_qmp_is_unknown_and_never_forgotten() {
    let ns = NetNs::create();
    let mut d = Daemon::start_in_netns(&ns);
    d.kctl(&[
        "network",
        "create",
        "lan",
        "--mode",
        "nat",
        "--subnet",
        "10.91.0.0/24",
    ])
    .expect_ok("network");
    let vm = d.create_guest("frozen", "", &["--nic", "lan"]);
    let pid = vm["pid"].as_u64().expect("pid") as u32;
    let tap = vm["nics"][0]["tap"].as_str().expect("tap").to_string();
    assert!(ns.links().contains(&tap));

    kill(pid, Signal::SIGSTOP);
    d.restart();
    let vm = d.wait_status("frozen", "VM_STATUS_UNKNOWN", Duration::from_secs(20));
    let reason = vm["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "QEMU pid {pid} is running but QMP does not answer"
        )),
        "{vm}"
    );
    assert_eq!(vm["pid"].as_u64(), Some(u64::from(pid)), "the pid is kept");
    assert!(ns.links().contains(&tap), "its tap is kept: {}", ns.links());
    d.kctl(&["vm", "start", "frozen"]).expect_err(
        "start while its QEMU lives",
        &["UNKNOWN", "FailedPrecondition"],
    );
    assert_eq!(
        kcore_tests::qemus_with_uuid(vm["id"].as_str().expect("id")),
        vec![pid]
    );

    // It answers again: the node finds it by itself.
    kill(pid, Signal::SIGCONT);
    let vm = d.wait_status("frozen", "VM_STATUS_RUNNING", Duration::from_secs(60));
    assert_eq!(vm["pid"].as_u64(), Some(u64::from(pid)), "the same QEMU");
    assert!(ns.links().contains(&tap));
    d.kctl(&["vm", "qmp", "frozen", r#"{"execute":"query-status"}"#])
        .expect_ok("QMP works again");

    // An UNKNOWN VM can still be stopped: by signal.
    kill(pid, Signal::SIGSTOP);
    d.restart();
    d.wait_status("frozen", "VM_STATUS_UNKNOWN", Duration::from_secs(20));
    d.kctl(&["vm", "stop", "frozen", "--timeout", "1"])
        .expect_ok("stop an UNKNOWN VM");
    wait_gone(pid);
    assert_eq!(d.vm("frozen")["status"], "VM_STATUS_STOPPED");
}

/// A copy of the test kernel in a dir of the test's, so the test can take it away.
fn own_kernel(d: &Daemon) -> PathBuf {
    let dir = d.dir.path().join("boot");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let k = dir.join("vmlinuz");
    std::fs::copy(&guest().kernel, &k).expect("copy kernel");
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    k
}

#[test]
fn the_restart_policy_covers_a_daemon_restart_and_failed_restarts() {
    let mut d = Daemon::start();
    let kernel = own_kernel(&d);
    let vm = d
        .create_guest_run("phoenix", Some(&kernel), "", &["--restart", "on-failure"])
        .expect_ok("create")
        .json();
    let first = vm["pid"].as_u64().expect("pid") as u32;

    // QEMU dies while the daemon is down: at the restart it is a crash, and the policy
    // starts it again.
    d.kill9();
    kill(first, Signal::SIGKILL);
    wait_gone(first);
    d.restart();
    let vm = d.wait_status("phoenix", "VM_STATUS_RUNNING", Duration::from_secs(30));
    let second = vm["pid"].as_u64().expect("pid") as u32;
    assert_ne!(second, first);

    // A restart that fails (the kernel went away) leaves ERROR with the reason and the
    // next attempt's time, and the node keeps trying until it works.
    std::fs::set_permissions(&kernel, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    kill(second, Signal::SIGKILL);
    // (Attempts count since the VM last ran for a minute: it crashed twice in a row now.)
    let vm = d.wait_status("phoenix", "VM_STATUS_ERROR", Duration::from_secs(20));
    let reason = vm["status_reason"].as_str().unwrap_or_default().to_string();
    let attempt: u32 = reason
        .strip_prefix("restart attempt ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{vm}"));
    assert!(reason.contains("not readable by the QEMU user"), "{vm}");
    assert!(
        reason.ends_with(&format!("next attempt in {} s", 1u32 << attempt)),
        "{vm}"
    );
    wait_until("another failed attempt", Duration::from_secs(30), || {
        d.vm("phoenix")["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("restart attempt {} failed", attempt + 1)))
    });
    std::fs::set_permissions(&kernel, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let vm = d.wait_status("phoenix", "VM_STATUS_RUNNING", Duration::from_secs(30));
    assert_ne!(vm["pid"].as_u64(), Some(u64::from(second)));

    // An operator's stop ends the policy's attempts.
    std::fs::set_permissions(&kernel, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    kill(vm["pid"].as_u64().expect("pid") as u32, Signal::SIGKILL);
    d.wait_status("phoenix", "VM_STATUS_ERROR", Duration::from_secs(20));
    d.kctl(&["vm", "stop", "phoenix"])
        .expect_ok("stop cancels the restarts");
    std::fs::set_permissions(&kernel, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(d.vm("phoenix")["status"], "VM_STATUS_STOPPED");
}

#[test]
fn autostart_vms_start_when_the_node_boots() {
    let mut d = Daemon::start();
    let auto = d.create_guest("auto", "", &["--autostart"]);
    assert_eq!(auto["spec"]["autostart"], true, "{auto}");
    let manual = d.create_guest("manual", "", &[]);
    // The host reboots: every QEMU is gone, and so is the run dir (a tmpfs).
    d.kill9();
    for vm in [&auto, &manual] {
        let pid = vm["pid"].as_u64().expect("pid") as u32;
        kill(pid, Signal::SIGKILL);
        wait_gone(pid);
    }
    std::fs::remove_dir_all(d.run_dir()).expect("rm run dir");
    d.restart();
    let vm = d.wait_status("auto", "VM_STATUS_RUNNING", Duration::from_secs(30));
    assert_ne!(vm["pid"], auto["pid"]);
    assert_eq!(d.vm("manual")["status"], "VM_STATUS_STOPPED");
    // A daemon restart is not a boot: what the operator stopped stays stopped.
    d.kctl(&["vm", "stop", "auto", "--force"]).expect_ok("stop");
    d.restart();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(d.vm("auto")["status"], "VM_STATUS_STOPPED");
}

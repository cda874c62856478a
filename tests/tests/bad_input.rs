//! Bad input gets a clear error that names the problem and leaves nothing behind: no row,
//! no run dir, no spec, no QEMU process.

use kcore_tests::{Daemon, guest};

fn assert_nothing_left(d: &Daemon) {
    let list = d
        .kctl(&["-o", "json", "vm", "list"])
        .expect_ok("list")
        .json();
    assert_eq!(list["vms"].as_array().map(|v| v.len()), Some(0), "{list}");
    for dir in [d.run_dir().join("vms"), d.data_dir().join("vms")] {
        let n = std::fs::read_dir(&dir).map(|r| r.count()).unwrap_or(0);
        assert_eq!(n, 0, "{} is not empty", dir.display());
    }
    assert!(d.qemu_pids().is_empty());
    assert_eq!(d.children(), Vec::<u32>::new(), "no QEMU left running");
}

#[test]
fn bad_input_is_refused_cleanly() {
    let d = Daemon::start();
    let g = guest();
    let k = g.kernel.to_str().expect("utf8");
    let i = g.initrd.to_str().expect("utf8");
    let create = |name: &str, vcpu: &str, mem: &str, kernel: &str| {
        d.kctl(&[
            "vm",
            "create",
            name,
            "--vcpu",
            vcpu,
            "--memory",
            mem,
            "--kernel",
            kernel,
            "--initrd",
            i,
            "--cmdline",
            "console=ttyS0",
        ])
    };
    let long = "a".repeat(64);
    for bad in ["Bad_Name", "", long.as_str(), "../x"] {
        create(bad, "1", "128", k).expect_err(
            &format!("name {bad:?}"),
            &["invalid VM name", "InvalidArgument"],
        );
    }
    create("m0", "1", "0", k).expect_err("memory 0", &["memory", "InvalidArgument"]);
    create("mbig", "1", "100000000", k)
        .expect_err("memory beyond host", &["memory", "InvalidArgument"]);
    create("c0", "0", "128", k).expect_err("vcpu 0", &["vcpu", "InvalidArgument"]);
    create("cbig", "4096", "128", k).expect_err("vcpu beyond host", &["vcpu", "InvalidArgument"]);
    create("nokernel", "1", "128", "/nonexistent/vmlinuz").expect_err(
        "missing kernel",
        &["/nonexistent/vmlinuz", "InvalidArgument"],
    );
    d.kctl(&["vm", "get", "ghost"])
        .expect_err("unknown VM", &["ghost", "NotFound"]);
    d.kctl(&["vm", "start", "ghost"])
        .expect_err("unknown VM", &["NotFound"]);
    d.kctl(&["vm", "delete", "ghost"])
        .expect_err("unknown VM", &["NotFound"]);
    d.kctl(&["vm", "qmp", "ghost", "{\"execute\":\"query-status\"}"])
        .expect_err("unknown VM", &["NotFound"]);
    assert_nothing_left(&d);

    // A create that fails late: QEMU itself refuses the kernel (not a kernel image). The
    // error carries QEMU's words and every step before it is undone.
    let not_a_kernel = d.dir.path().join("not-a-kernel");
    std::fs::write(&not_a_kernel, vec![0u8; 4096]).expect("write");
    // The QEMU user must be able to read it, so the failure is QEMU's and not ours.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let r = create("late", "1", "128", not_a_kernel.to_str().expect("utf8")).expect_err(
        "QEMU refuses",
        &["QEMU failed to start", "kernel", "FailedPrecondition"],
    );
    let _ = r;
    assert_nothing_left(&d);

    // Wrong state and duplicates, on a real VM.
    d.kctl(&[
        "vm",
        "create",
        "dup",
        "--vcpu",
        "1",
        "--memory",
        "128",
        "--kernel",
        k,
        "--initrd",
        i,
        "--cmdline",
        "console=ttyS0",
        "--start=false",
    ])
    .expect_ok("define only");
    assert_eq!(d.vm("dup")["status"], "VM_STATUS_STOPPED");
    create("dup", "1", "128", k).expect_err("duplicate", &["already exists", "AlreadyExists"]);
    d.kctl(&["vm", "pause", "dup"])
        .expect_err("pause stopped", &["STOPPED", "FailedPrecondition"]);
    d.kctl(&["vm", "stop", "dup"])
        .expect_err("stop stopped", &["FailedPrecondition"]);
    d.kctl(&["vm", "resume", "dup"])
        .expect_err("resume stopped", &["FailedPrecondition"]);
    d.kctl(&["vm", "qmp", "dup", "{\"execute\":\"query-status\"}"])
        .expect_err("qmp on stopped", &["FailedPrecondition"]);
    d.kctl(&["vm", "delete", "dup"]).expect_ok("delete stopped");
    assert_nothing_left(&d);
}

#[test]
fn a_kernel_the_qemu_user_cannot_read_is_named() {
    let d = Daemon::start();
    let g = guest();
    // A root-only (0700) directory: a copy of the kernel there is unreadable for QEMU.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let k = d.dir.path().join("vmlinuz");
    std::fs::copy(&g.kernel, &k).expect("copy kernel");
    d.kctl(&[
        "vm",
        "create",
        "private",
        "--vcpu",
        "1",
        "--memory",
        "128",
        "--kernel",
        k.to_str().expect("utf8"),
    ])
    .expect_err(
        "unreadable kernel",
        &["not readable by the QEMU user", "InvalidArgument"],
    );
    assert_nothing_left(&d);
}

/// Daemon flags out of range are refused before anything is made: the message names the
/// flag, and no data or run dir appears.
#[test]
fn bad_daemon_flags_are_refused_before_anything_is_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (role, flags, needle) in [
        (
            "controller",
            &["--heartbeat-interval", "0"][..],
            "--heartbeat-interval 0",
        ),
        (
            "controller",
            &["--heartbeat-interval", "5", "--node-timeout", "2"][..],
            "--node-timeout 2 must be longer than --heartbeat-interval 5",
        ),
        (
            "controller",
            &["--cpu-overcommit", "0"][..],
            "--cpu-overcommit 0",
        ),
        (
            "controller",
            &["--node-cert-lifetime", "1"][..],
            "--node-cert-lifetime 1",
        ),
        (
            "all-in-one",
            &["--node-timeout", "nan"][..],
            "--node-timeout",
        ),
        ("all-in-one", &["--cpus", "0"][..], "--cpus"),
        ("all-in-one", &["--memory", "10"][..], "--memory"),
    ] {
        let data = dir.path().join("data");
        let run = dir.path().join("run");
        let out = std::process::Command::new(kcore_tests::bin("kcored"))
            .arg(role)
            .args(flags)
            .arg("--data-dir")
            .arg(&data)
            .arg("--run-dir")
            .arg(&run)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .expect("run kcored");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{role} {flags:?} started");
        assert!(err.contains(needle), "{role} {flags:?}: {err}");
        assert!(
            !data.exists() && !run.exists(),
            "{role} {flags:?} made its dirs"
        );
    }
}

//! QMP passthrough (`kctl vm qmp`) is accounted for: every command is an event naming the
//! caller, a command outside `query-*` marks the VM tainted until its next start, and a
//! passthrough `quit` is a stop (not a crash the restart policy would undo). Over TLS the
//! caller is the client certificate.

use std::time::Duration;

use kcore_tests::cluster::Kcored;
use kcore_tests::{Daemon, alive};

fn qmp(d: &Daemon, vm: &str, json: &str) -> String {
    d.kctl(&["vm", "qmp", vm, json]).expect_ok("vm qmp").stdout
}

#[test]
fn passthrough_is_recorded_taints_and_quit_is_a_stop() {
    let d = Daemon::start();
    let created = d.create_guest("q", "", &["--restart", "on-failure"]);
    let pid = created["pid"].as_u64().expect("pid") as u32;
    d.wait_console("q", "KCORE-GUEST-READY", 1, Duration::from_secs(120));

    // A query does not taint.
    let status = qmp(&d, "q", r#"{"execute":"query-status"}"#);
    assert!(status.contains("running"), "{status}");
    assert_eq!(d.vm("q")["tainted"], false);

    // Anything else does, and vm get says so (json and table).
    qmp(&d, "q", r#"{"execute":"stop"}"#);
    let vm = d.wait_status("q", "VM_STATUS_PAUSED", Duration::from_secs(10));
    assert_eq!(vm["tainted"], true, "{vm}");
    let table = d.kctl(&["vm", "get", "q"]).expect_ok("vm get").stdout;
    assert!(table.contains("Tainted:"), "{table}");
    qmp(&d, "q", r#"{"execute":"cont"}"#);
    d.wait_status("q", "VM_STATUS_RUNNING", Duration::from_secs(10));

    // Each command is in the VM's events, with who sent it.
    let events = d.kctl(&["events", "--vm", "q"]).expect_ok("events").stdout;
    for needle in [
        "QMP query-status by uid 0 (root) on the local socket: ok",
        "QMP stop by uid 0 (root) on the local socket: ok; the VM is now tainted",
        "QMP cont by uid 0 (root) on the local socket: ok",
    ] {
        assert!(events.contains(needle), "no {needle:?} in:\n{events}");
    }

    // A passthrough quit is a stop: STOPPED with the reason, and on-failure leaves it so.
    qmp(&d, "q", r#"{"execute":"quit"}"#);
    let vm = d.wait_status("q", "VM_STATUS_STOPPED", Duration::from_secs(15));
    assert_eq!(vm["status_reason"], "stopped by QMP quit", "{vm}");
    // Past the first restart backoff (1 s), it is still stopped and QEMU is gone.
    std::thread::sleep(Duration::from_secs(3));
    let vm = d.vm("q");
    assert_eq!(vm["status"], "VM_STATUS_STOPPED", "{vm}\n{}", d.log());
    assert_eq!(vm["pid"], 0, "{vm}");
    assert!(!alive(pid), "QEMU {pid} still runs");
    let events = d.kctl(&["events", "--vm", "q"]).expect_ok("events").stdout;
    assert!(
        !events.contains("CRASHED") && events.contains("QMP quit by uid 0"),
        "{events}"
    );
    // The taint stays while it is stopped, and goes with the next start.
    assert_eq!(vm["tainted"], true, "{vm}");
    let started = d
        .kctl(&["-o", "json", "vm", "start", "q"])
        .expect_ok("start")
        .json();
    assert_eq!(started["tainted"], false, "{started}");
    assert_eq!(d.vm("q")["tainted"], false);
}

#[test]
fn over_tls_the_certificate_is_the_caller() {
    let g = kcore_tests::guest();
    let guest_dir = g
        .kernel
        .parent()
        .expect("guest dir")
        .to_str()
        .expect("utf-8");
    let d = Kcored::start(&[
        "all-in-one",
        "--accel",
        "tcg",
        "--node-name",
        "node1",
        "--import-dir",
        guest_dir,
    ]);
    d.admin(&[
        "vm",
        "create",
        "t",
        "--vcpu",
        "1",
        "--memory",
        "128",
        "--kernel",
        g.kernel.to_str().expect("utf-8"),
        "--initrd",
        g.initrd.to_str().expect("utf-8"),
        "--cmdline",
        "console=ttyS0 quiet panic=-1",
    ])
    .expect_ok("create over TLS");
    let (_, cert, key) = d.issue_cert("ops", "admin");
    d.kctl(
        &cert,
        &key,
        &["vm", "qmp", "t", r#"{"execute":"system_reset"}"#],
    )
    .expect_ok("qmp as ops");
    let vm = d
        .admin(&["-o", "json", "vm", "get", "t"])
        .expect_ok("vm get")
        .json();
    assert_eq!(vm["tainted"], true, "{vm}");
    let events = d.admin(&["events", "--vm", "t"]).expect_ok("events").stdout;
    assert!(
        events.contains("QMP system_reset by ops (admin certificate): ok; the VM is now tainted"),
        "{events}"
    );
}

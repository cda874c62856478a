//! A real guest's whole lifecycle through kctl: create -> RUNNING with its marker on the
//! console, pause/resume, reboot, graceful stop, start again, console input, delete.

use std::time::Duration;

use kcore_tests::{Daemon, alive, process_with};

const BOOT: Duration = Duration::from_secs(60);

#[test]
fn vm_lifecycle_through_kctl() {
    let d = Daemon::start();
    let vm = d.create_guest("life", "kcore.marker=HELLO-LIFE", &[]);
    assert_eq!(vm["status"], "VM_STATUS_RUNNING", "{vm}");
    assert_eq!(vm["node"], "node1");
    assert_eq!(vm["vcpu"], 1);
    assert_eq!(vm["memory_mb"], 128);
    let id = vm["id"].as_str().expect("id").to_string();
    let pid = vm["pid"].as_u64().expect("pid") as u32;
    assert!(alive(pid), "QEMU pid {pid} runs");
    // QEMU runs as the unprivileged user, not root.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid");
    assert!(
        !uid_line.contains("\t0\t"),
        "QEMU must not run as root: {uid_line}"
    );

    d.wait_console("life", "HELLO-LIFE", 1, BOOT);
    let vm = d.wait_status("life", "VM_STATUS_RUNNING", BOOT);
    // Timeline: every phase, in order, guest_ready once the marker shows.
    let deadline = std::time::Instant::now() + BOOT;
    let phases = loop {
        let vm = d.vm("life");
        let phases: Vec<String> = vm["timeline"]["phases"]
            .as_array()
            .expect("phases")
            .iter()
            .map(|p| p["name"].as_str().unwrap_or("").to_string())
            .collect();
        if phases.iter().any(|p| p == "guest_ready") || std::time::Instant::now() > deadline {
            break phases;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        phases,
        [
            "request_received",
            "qemu_exec",
            "qmp_ready",
            "vcpus_running",
            "first_console_byte",
            "guest_ready"
        ],
        "{vm}"
    );
    let tl = d.kctl(&["vm", "timeline", "life"]).expect_ok("timeline");
    assert!(tl.stdout.contains("guest_ready"), "{}", tl.stdout);

    // The console takes input: run a command in the guest and read its output.
    let out = d
        .kctl_stdin(&["vm", "console", "life"], Some("echo sum-$((40+2))\n"))
        .expect_ok("console input");
    let _ = out;
    d.wait_console("life", "sum-42", 1, Duration::from_secs(20));

    // Pause / resume, seen by QEMU itself.
    let p = d
        .kctl(&["-o", "json", "vm", "pause", "life"])
        .expect_ok("pause")
        .json();
    assert_eq!(p["status"], "VM_STATUS_PAUSED");
    let q = d
        .kctl(&["vm", "qmp", "life", r#"{"execute":"query-status"}"#])
        .expect_ok("qmp");
    assert!(q.stdout.contains("\"paused\""), "{}", q.stdout);
    d.kctl(&["vm", "pause", "life"])
        .expect_err("pause twice", &["PAUSED", "FailedPrecondition"]);
    let r = d
        .kctl(&["-o", "json", "vm", "resume", "life"])
        .expect_ok("resume")
        .json();
    assert_eq!(r["status"], "VM_STATUS_RUNNING");
    let q = d
        .kctl(&["vm", "qmp", "life", r#"{"execute":"query-status"}"#])
        .expect_ok("qmp");
    assert!(q.stdout.contains("\"running\""), "{}", q.stdout);

    // Reboot: the guest boots again (a second marker), same QEMU.
    d.kctl(&["vm", "reboot", "life"]).expect_ok("reboot");
    d.wait_console("life", "HELLO-LIFE", 2, BOOT);
    assert_eq!(d.vm("life")["pid"].as_u64(), Some(pid as u64));

    // Graceful stop: the guest powers off on the ACPI button.
    let s = d
        .kctl(&["-o", "json", "vm", "stop", "life"])
        .expect_ok("stop")
        .json();
    assert_eq!(s["status"], "VM_STATUS_STOPPED", "{s}");
    assert_eq!(s["pid"], 0);
    assert!(!alive(pid), "QEMU {pid} is gone after stop");
    let transcript = std::fs::read_to_string(d.run_dir().join("vms").join(&id).join("qmp.log"))
        .expect("qmp.log");
    assert!(transcript.contains("system_powerdown"), "{transcript}");
    assert!(
        !transcript.contains("\"quit\""),
        "guest obeyed ACPI, no quit needed: {transcript}"
    );
    d.kctl(&["vm", "pause", "life"])
        .expect_err("pause a stopped VM", &["STOPPED", "FailedPrecondition"]);

    // Start again: boots again.
    let s = d
        .kctl(&["-o", "json", "vm", "start", "life"])
        .expect_ok("start")
        .json();
    assert_eq!(s["status"], "VM_STATUS_RUNNING");
    d.wait_console("life", "HELLO-LIFE", 3, BOOT);

    // Events tell the story.
    let ev = d
        .kctl(&["-o", "json", "events", "--vm", "life"])
        .expect_ok("events");
    for kind in ["vm.created", "vm.status", "vm.guest_ready", "vm.reboot"] {
        assert!(ev.stdout.contains(kind), "no {kind} event: {}", ev.stdout);
    }

    // Delete refuses a running VM, then force removes everything.
    d.kctl(&["vm", "delete", "life"])
        .expect_err("delete running", &["stop it first"]);
    let new_pid = d.vm("life")["pid"].as_u64().expect("pid") as u32;
    d.kctl(&["vm", "delete", "life", "--force"])
        .expect_ok("delete");
    assert!(!alive(new_pid), "no QEMU after delete");
    assert!(process_with(&id).is_none(), "no process mentions the VM id");
    assert!(
        !d.run_dir().join("vms").join(&id).exists(),
        "run dir removed"
    );
    assert!(
        !d.data_dir().join("vms").join(&id).exists(),
        "spec dir removed"
    );
    let list = d
        .kctl(&["-o", "json", "vm", "list"])
        .expect_ok("list")
        .json();
    assert_eq!(list["vms"].as_array().map(|v| v.len()), Some(0), "{list}");
    d.kctl(&["vm", "get", "life"])
        .expect_err("get deleted", &["NotFound"]);
}

#[test]
fn stop_escalates_when_the_guest_ignores_acpi() {
    let d = Daemon::start();
    let vm = d.create_guest("deaf", "kcore.acpi=ignore", &[]);
    let id = vm["id"].as_str().expect("id").to_string();
    let pid = vm["pid"].as_u64().expect("pid") as u32;
    d.wait_console("deaf", "KCORE-GUEST-READY", 1, BOOT);
    let t0 = std::time::Instant::now();
    let s = d
        .kctl(&["-o", "json", "vm", "stop", "deaf", "--timeout", "2"])
        .expect_ok("stop")
        .json();
    let took = t0.elapsed();
    assert_eq!(s["status"], "VM_STATUS_STOPPED");
    assert!(!alive(pid));
    // It waited for the guest first, then escalated (quit) instead of hanging.
    assert!(
        took >= Duration::from_secs(2),
        "stop returned before the timeout: {took:?}"
    );
    let transcript = std::fs::read_to_string(d.run_dir().join("vms").join(&id).join("qmp.log"))
        .expect("qmp.log");
    let pd = transcript.find("system_powerdown").expect("powerdown sent");
    let quit = transcript
        .find("\"quit\"")
        .expect("quit sent after the timeout");
    assert!(pd < quit, "{transcript}");

    // Force stop goes straight to SIGKILL: no powerdown.
    d.kctl(&["vm", "start", "deaf"]).expect_ok("start");
    let pid = d.vm("deaf")["pid"].as_u64().expect("pid") as u32;
    std::fs::write(d.run_dir().join("vms").join(&id).join("qmp.log"), "").expect("truncate");
    let s = d
        .kctl(&["-o", "json", "vm", "stop", "deaf", "--force"])
        .expect_ok("force stop")
        .json();
    assert_eq!(s["status"], "VM_STATUS_STOPPED");
    assert!(!alive(pid));
    let transcript = std::fs::read_to_string(d.run_dir().join("vms").join(&id).join("qmp.log"))
        .expect("qmp.log");
    assert!(!transcript.contains("system_powerdown"), "{transcript}");
}

#[test]
fn a_crashed_qemu_is_reported_and_restarted_by_policy() {
    let d = Daemon::start();
    let vm = d.create_guest("fragile", "", &["--restart", "on-failure"]);
    let pid = vm["pid"].as_u64().expect("pid") as u32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill QEMU");
    // CRASHED first (with the reason), then the policy brings it back with a new QEMU.
    let ev_deadline = std::time::Instant::now() + BOOT;
    loop {
        let ev = d
            .kctl(&["-o", "json", "events", "--vm", "fragile"])
            .expect_ok("events");
        if ev.stdout.contains("VM_STATUS_CRASHED") {
            assert!(ev.stdout.contains("SIGKILL"), "{}", ev.stdout);
            break;
        }
        assert!(
            std::time::Instant::now() < ev_deadline,
            "never CRASHED: {}",
            ev.stdout
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = std::time::Instant::now() + BOOT;
    loop {
        let vm = d.vm("fragile");
        if vm["status"] == "VM_STATUS_RUNNING" && vm["pid"].as_u64() != Some(pid as u64) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not restarted: {vm}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

//! The daemon is killed with SIGKILL while VMs run; restarted, it finds them again: same
//! QEMU pids, QMP and console working.

use std::time::Duration;

use kcore_tests::{Daemon, alive};

#[test]
fn kill9_of_the_daemon_loses_no_vm() {
    let mut d = Daemon::start();
    let a = d.create_guest("keep-a", "kcore.marker=AAA", &[]);
    let b = d.create_guest("keep-b", "kcore.marker=BBB", &[]);
    let pa = a["pid"].as_u64().expect("pid");
    let pb = b["pid"].as_u64().expect("pid");
    d.wait_console("keep-a", "AAA", 1, Duration::from_secs(60));
    // (Console output while no daemon is connected is lost: QEMU drops it.)
    d.wait_console("keep-b", "BBB", 1, Duration::from_secs(60));

    d.restart();

    for (name, pid) in [("keep-a", pa), ("keep-b", pb)] {
        let vm = d.vm(name);
        assert_eq!(vm["status"], "VM_STATUS_RUNNING", "{vm}");
        assert_eq!(vm["pid"].as_u64(), Some(pid), "same QEMU for {name}");
        assert!(alive(pid as u32));
        let q = d
            .kctl(&["vm", "qmp", name, r#"{"execute":"query-status"}"#])
            .expect_ok("qmp after restart");
        assert!(q.stdout.contains("\"running\""), "{}", q.stdout);
        // The timeline survived too.
        assert!(
            vm["timeline"]["phases"]
                .as_array()
                .is_some_and(|p| p.len() >= 4),
            "{vm}"
        );
    }
    // The console of a reattached VM still works both ways, its log kept.
    d.wait_console("keep-b", "BBB", 1, Duration::from_secs(5));
    d.kctl_stdin(&["vm", "console", "keep-b"], Some("echo after-$((6*7))\n"))
        .expect_ok("console");
    d.wait_console("keep-b", "after-42", 1, Duration::from_secs(20));
    // And it can still be stopped gracefully.
    let s = d
        .kctl(&["-o", "json", "vm", "stop", "keep-a"])
        .expect_ok("stop")
        .json();
    assert_eq!(s["status"], "VM_STATUS_STOPPED");
    assert!(!alive(pa as u32));
}

#[test]
fn a_vm_that_died_while_the_daemon_was_down_is_crashed() {
    let mut d = Daemon::start();
    let a = d.create_guest("lost", "", &[]);
    let pid = a["pid"].as_u64().expect("pid") as u32;
    d.kill9();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill QEMU");
    d.restart();
    let vm = d.vm("lost");
    assert_eq!(vm["status"], "VM_STATUS_CRASHED", "{vm}");
    assert!(
        vm["status_reason"]
            .as_str()
            .is_some_and(|r| r.contains("daemon was down")),
        "{vm}"
    );
    d.kctl(&["vm", "start", "lost"]).expect_ok("start again");
}

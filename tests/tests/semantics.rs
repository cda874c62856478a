//! Small semantics a user relies on: `vm stop --timeout 0` gives the guest no grace, and
//! `vm console` on a VM that does not run says so and fails instead of waiting.

use std::time::{Duration, Instant};

use kcore_tests::Daemon;

const BOOT: Duration = Duration::from_secs(120);

/// Stop `name` with `--timeout SECS` and return how long kctl took, checking it STOPPED.
fn timed_stop(d: &Daemon, name: &str, secs: &str) -> Duration {
    let t = Instant::now();
    let v = d
        .kctl(&["-o", "json", "vm", "stop", name, "--timeout", secs])
        .expect_ok("vm stop")
        .json();
    let took = t.elapsed();
    assert_eq!(v["status"], "VM_STATUS_STOPPED", "{v}");
    took
}

#[test]
fn stop_with_timeout_zero_does_not_wait_for_the_guest() {
    let d = Daemon::start();
    // Guests that ignore the ACPI power button (no acpid): only quit or SIGKILL stop them.
    d.create_guest("deaf", "kcore.acpi=ignore", &[]);
    d.create_guest("deaf2", "kcore.acpi=ignore", &[]);
    d.wait_console("deaf", "KCORE-GUEST-READY", 1, BOOT);
    d.wait_console("deaf2", "KCORE-GUEST-READY", 1, BOOT);

    // A grace of 2 s is waited out in full: the guest really ignores the button.
    let graced = timed_stop(&d, "deaf2", "2");
    assert!(
        graced >= Duration::from_secs(2),
        "--timeout 2 took only {graced:?}: the guest powered off by itself?"
    );

    // 0 is no grace (it used to mean the default 30 s).
    let took = timed_stop(&d, "deaf", "0");
    assert!(
        took < Duration::from_secs(10),
        "--timeout 0 took {took:?}\n{}",
        d.log()
    );
    let events = d
        .kctl(&["events", "--vm", "deaf"])
        .expect_ok("events")
        .stdout;
    assert!(events.contains("STOPPED"), "{events}");
}

#[test]
fn console_of_a_stopped_vm_says_so_and_fails() {
    let d = Daemon::start();
    let g = kcore_tests::guest();
    d.kctl(&[
        "vm",
        "create",
        "idle",
        "--vcpu",
        "1",
        "--memory",
        "64",
        "--kernel",
        g.kernel.to_str().expect("utf-8"),
        "--start=false",
    ])
    .expect_ok("define");
    let t = Instant::now();
    let run = d.kctl(&["vm", "console", "idle"]).expect_err(
        "console of a stopped VM",
        &["VM idle is STOPPED", "--tail", "FailedPrecondition"],
    );
    assert_ne!(run.code, Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "kctl took {:?} to give up",
        t.elapsed()
    );
    // The log is still there to read.
    d.kctl(&["vm", "console", "idle", "--tail", "5"])
        .expect_ok("console --tail of a stopped VM");
}

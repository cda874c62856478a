//! Disks added to a running guest through QMP (the daemon opens the volume and passes the
//! file descriptor to the unprivileged QEMU), grown live, removed live; and the same
//! operations on a stopped VM.

use std::time::Duration;

use kcore_tests::{Daemon, alive};

const BOOT: Duration = Duration::from_secs(90);

#[test]
fn disks_hotplug_grow_and_unplug_in_a_running_guest() {
    let d = Daemon::start();
    let vm = d.create_guest("hot", "kcore.echo=off", &[]);
    let pid = vm["pid"].as_u64().expect("pid");
    d.wait_console("hot", "KCORE-GUEST-SHELL", 1, BOOT);

    let vm = d
        .kctl(&["-o", "json", "vm", "disk", "attach", "hot", "default:1"])
        .expect_ok("attach")
        .json();
    assert_eq!(vm["disks"][0]["volume"], "hot-disk1", "{vm}");
    assert_eq!(vm["disks"][0]["size_bytes"], "1073741824", "{vm}");
    // The guest sees a new 1 GiB virtio disk (2097152 sectors).
    d.type_until(
        "hot",
        "cat /sys/block/vda/size",
        "2097152",
        Duration::from_secs(2),
    );
    // QEMU got the disk as a file descriptor: its command line never named the volume.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(!String::from_utf8_lossy(&cmdline).contains("hot-disk1"));

    // Grow it live.
    d.kctl(&["vm", "disk", "resize", "hot", "vda", "2"])
        .expect_ok("resize");
    d.type_until(
        "hot",
        "cat /sys/block/vda/size",
        "4194304",
        Duration::from_secs(2),
    );
    d.kctl(&["vm", "disk", "resize", "hot", "vda", "1"])
        .expect_err("shrink", &["FailedPrecondition"]);

    // Unplug: the guest releases it, the volume is deleted.
    let vm = d
        .kctl(&["-o", "json", "vm", "disk", "detach", "hot", "vda"])
        .expect_ok("detach")
        .json();
    assert_eq!(vm["disks"].as_array().map(|a| a.len()), Some(0), "{vm}");
    d.type_until(
        "hot",
        "[ -e /dev/vda ] || echo vda-gone",
        "vda-gone",
        Duration::from_secs(2),
    );
    let vols = d
        .kctl(&["-o", "json", "volume", "list"])
        .expect_ok("volumes")
        .json();
    assert_eq!(
        vols["volumes"].as_array().map(|a| a.len()),
        Some(0),
        "{vols}"
    );
    d.kctl(&["vm", "disk", "detach", "hot", "vdz"])
        .expect_err("unknown disk", &["NotFound"]);
    assert!(alive(pid as u32), "QEMU still runs");
}

#[test]
fn disks_of_a_stopped_vm_change_in_its_spec_and_survive_a_daemon_restart() {
    let mut d = Daemon::start();
    d.create_guest("cold", "kcore.echo=off", &[]);
    d.wait_console("cold", "KCORE-GUEST-SHELL", 1, BOOT);
    // Hot-add, then restart the daemon: the disk is still there, on the same port.
    d.kctl(&["vm", "disk", "attach", "cold", "default:1"])
        .expect_ok("attach");
    d.restart();
    let vm = d.vm("cold");
    assert_eq!(vm["status"], "VM_STATUS_RUNNING");
    assert_eq!(vm["disks"][0]["volume"], "cold-disk1", "{vm}");
    d.kctl(&["vm", "stop", "cold", "--force"]).expect_ok("stop");
    // Offline: grow and add another; both are there at the next boot.
    d.kctl(&["vm", "disk", "resize", "cold", "cold-disk1", "3"])
        .expect_ok("offline resize");
    d.kctl(&["vm", "disk", "attach", "cold", "default:1"])
        .expect_ok("offline attach");
    d.kctl(&["vm", "start", "cold"]).expect_ok("start");
    d.wait_console("cold", "KCORE-GUEST-SHELL", 2, BOOT);
    d.type_until(
        "cold",
        "cat /sys/block/vda/size /sys/block/vdb/size",
        "6291456",
        Duration::from_secs(2),
    );
    d.wait_console("cold", "2097152", 1, Duration::from_secs(30));
    // The hot-added one sits on a hotplug port, so it can leave while running.
    d.kctl(&["vm", "disk", "detach", "cold", "cold-disk1", "--keep"])
        .expect_ok("detach");
    let vols = d
        .kctl(&["-o", "json", "volume", "list"])
        .expect_ok("volumes")
        .json();
    let kept = vols["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "cold-disk1").cloned())
        .expect("kept volume");
    assert_eq!(kept["vm"], "", "{kept}");
}

//! The fast profile (docs/profiles.md) with the real test guest under TCG: the machine it
//! picks, the argv it gives QEMU, the guest reaching userspace; what it refuses, leaving
//! nothing behind; and the guest's own boot phases in the timeline (kernel started, init
//! started), read from a kernel that prints.

use std::time::{Duration, Instant};

use kcore_tests::{Daemon, guest};
use serde_json::Value;

const BOOT: Duration = Duration::from_secs(120);

/// The VM's qemu.argv (one argument a line).
fn argv(d: &Daemon, vm: &Value) -> String {
    let id = vm["id"].as_str().expect("id");
    std::fs::read_to_string(d.run_dir().join("vms").join(id).join("qemu.argv")).expect("qemu.argv")
}

/// The timeline's phases (name, offset ms) once `guest_ready` is among them.
fn phases_until_ready(d: &Daemon, name: &str) -> Vec<(String, f64)> {
    let deadline = Instant::now() + BOOT;
    loop {
        let vm = d.vm(name);
        let phases: Vec<(String, f64)> = vm["timeline"]["phases"]
            .as_array()
            .expect("phases")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or("").to_string(),
                    p["offset_ms"].as_f64().unwrap_or(f64::NAN),
                )
            })
            .collect();
        if phases.iter().any(|(p, _)| p == "guest_ready") {
            return phases;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not ready within {BOOT:?}: {phases:?}\n{}",
            d.console_log(name)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The uncompressed kernels in the node's cache.
fn pvh_images(d: &Daemon) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(d.data_dir().join("kernels"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn fast_profile_boots_a_microvm_and_the_timeline_splits_the_guest_boot() {
    let d = Daemon::start();
    // loglevel=7 after the harness's `quiet`: the kernel prints, with timestamps.
    let vm = d.create_guest("fast", "loglevel=7 printk.time=1", &["--profile", "fast"]);
    assert_eq!(vm["status"], "VM_STATUS_RUNNING", "{vm}");
    assert_eq!(vm["spec"]["profile"], "PROFILE_FAST", "{vm}");
    assert_eq!(
        vm["spec"]["machine"], "MACHINE_TYPE_MICROVM",
        "the profile's machine is written down: {vm}"
    );
    let a = argv(&d, &vm);
    assert!(a.contains("\nmicrovm,accel=tcg,x-option-roms=off\n"), "{a}");
    assert!(
        a.contains("tsc_early_khz="),
        "the TCG calibration hang is avoided: {a}"
    );
    assert!(!a.contains("pcie-root-port") && !a.contains("-pci"), "{a}");
    // The kernel is the uncompressed PVH image kcored made of the test guest's bzImage
    // (lz4), handed over as a descriptor, and the profile's kernel parameters follow the
    // user's.
    assert!(a.contains("\n-kernel\n/proc/self/fd/"), "{a}");
    assert!(
        a.contains(" cryptomgr.notests noreplace-smp\n"),
        "the fast kernel parameters: {a}"
    );
    let images = pvh_images(&d);
    assert_eq!(images.len(), 1, "one unpacked kernel: {images:?}");
    let elf = std::fs::read(&images[0]).expect("read the image");
    assert_eq!(&elf[..4], b"\x7fELF", "an ELF image");
    assert!(
        elf.len() > std::fs::metadata(&guest().kernel).expect("kernel").len() as usize * 2,
        "uncompressed"
    );
    assert!(
        d.log().contains("unpacked the kernel for PVH boot"),
        "{}",
        d.log()
    );

    let phases = phases_until_ready(&d, "fast");
    let at = |name: &str| {
        phases
            .iter()
            .find(|(p, _)| p == name)
            .map(|(_, ms)| *ms)
            .unwrap_or_else(|| panic!("no {name} in {phases:?}\n{}", d.console_log("fast")))
    };
    let names: Vec<&str> = phases.iter().map(|(p, _)| p.as_str()).collect();
    let order = [
        "vcpus_running",
        "kernel_started",
        "init_started",
        "guest_ready",
    ];
    let pos: Vec<usize> = order
        .iter()
        .map(|o| names.iter().position(|n| n == o).expect("phase"))
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    // Offsets never go back (the list is in time order).
    assert!(phases.windows(2).all(|w| w[0].1 <= w[1].1), "{phases:?}");
    let (running, kernel, init, ready) = (
        at("vcpus_running"),
        at("kernel_started"),
        at("init_started"),
        at("guest_ready"),
    );
    // Plausible: the firmware takes less than the kernel; the kernel works for a while
    // (it prints ~230 lines over an emulated UART); userspace (busybox /init, insmod of
    // the virtio modules) takes some ms, and all of it fits in the boot.
    assert!(kernel >= running, "{phases:?}");
    assert!(
        kernel - running < init - kernel,
        "firmware < kernel: {phases:?}"
    );
    assert!(init - kernel > 100.0, "{phases:?}");
    assert!(ready > init && ready - init < 60_000.0, "{phases:?}");
    let log = d.console_log("fast");
    assert!(log.contains("Run /init as init process"), "{log}");

    let tl = d.kctl(&["vm", "timeline", "fast"]).expect_ok("timeline");
    eprintln!("kctl vm timeline fast:\n{}", tl.stdout);
    for needle in [
        "kernel_started",
        "init_started",
        "Guest boot:",
        "firmware ",
        "(vcpus_running -> kernel_started)",
        "(kernel_started -> init_started)",
        "(init_started -> guest_ready)",
    ] {
        assert!(
            tl.stdout.contains(needle),
            "{needle:?} missing:\n{}",
            tl.stdout
        );
    }
    let get = d.kctl(&["vm", "get", "fast"]).expect_ok("vm get");
    assert!(get.stdout.contains("Profile:"), "{}", get.stdout);
    assert!(get.stdout.contains("fast"), "{}", get.stdout);
    assert!(get.stdout.contains("microvm"), "{}", get.stdout);

    // A second fast VM boots the same image: it is not unpacked again.
    let inode = |p: &std::path::Path| {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).expect("stat"))
    };
    let first = inode(&images[0]);
    d.create_guest("fast2", "", &["--profile", "fast"]);
    phases_until_ready(&d, "fast2");
    let again = pvh_images(&d);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(inode(&again[0]), first, "the same image");
    assert_eq!(
        d.log().matches("unpacked the kernel for PVH boot").count(),
        1,
        "{}",
        d.log()
    );

    // A quiet kernel prints nothing: no guest phases are made up. Standard boots the
    // kernel as given, without the fast parameters.
    let vm = d.create_guest("quiet", "", &[]);
    let a = argv(&d, &vm);
    assert!(
        a.contains(&format!("\n-kernel\n{}\n", guest().kernel.display())),
        "{a}"
    );
    assert!(!a.contains("cryptomgr.notests"), "{a}");
    let phases = phases_until_ready(&d, "quiet");
    assert!(
        !phases
            .iter()
            .any(|(p, _)| p == "kernel_started" || p == "init_started"),
        "{phases:?}"
    );
    let tl = d.kctl(&["vm", "timeline", "quiet"]).expect_ok("timeline");
    assert!(!tl.stdout.contains("Guest boot:"), "{}", tl.stdout);
}

#[test]
fn fast_profile_refuses_what_it_cannot_do_and_makes_nothing() {
    let d = Daemon::start();
    let g = guest();
    let kernel = g.kernel.to_str().expect("utf8");
    let base = ["vm", "create", "bad", "--vcpu", "1", "--memory", "128"];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        d.kctl(&a)
    };
    with(&[
        "--kernel",
        kernel,
        "--profile",
        "fast",
        "--firmware",
        "uefi",
    ])
    .expect_err(
        "fast + uefi",
        &["profile fast has no UEFI", "InvalidArgument"],
    );
    with(&["--disk", "default:1", "--profile", "fast"]).expect_err(
        "fast without a kernel",
        &["profile fast needs a direct kernel boot", "InvalidArgument"],
    );
    with(&[
        "--kernel",
        kernel,
        "--profile",
        "fast",
        "--machine",
        "microvm",
        "--nic",
        "default,model=e1000",
    ])
    .expect_err("e1000 on microvm", &["e1000 needs machine q35 or pc"]);
    d.kctl(&[
        "vm",
        "create",
        "bad",
        "--vcpu",
        "1",
        "--memory",
        "128",
        "--profile",
        "turbo",
    ])
    .expect_err("unknown profile", &["turbo"]);
    // Nothing was made: no VM, no volume, no QEMU.
    let vms = d
        .kctl(&["-o", "json", "vm", "list"])
        .expect_ok("list")
        .json();
    assert_eq!(vms["vms"].as_array().map_or(0, Vec::len), 0, "{vms}");
    let vols = d
        .kctl(&["-o", "json", "volume", "list"])
        .expect_ok("volumes")
        .json();
    assert_eq!(vols["volumes"].as_array().map_or(0, Vec::len), 0, "{vols}");
    assert!(d.qemu_pids().is_empty(), "{:?}", d.qemu_pids());

    // fast on q35 (asked for): qboot, no PC extras, no hotplug ports, and so no hotplug,
    // refused before a volume is made.
    let vm = d.create_guest("q35f", "", &["--profile", "fast", "--machine", "q35"]);
    let a = argv(&d, &vm);
    assert!(
        a.contains("\nq35,accel=tcg,sata=off,smbus=off,smm=off,vmport=off,i8042=off\n"),
        "{a}"
    );
    assert!(a.contains("qboot.rom"), "{a}");
    assert!(!a.contains("pcie-root-port"), "{a}");
    phases_until_ready(&d, "q35f");
    d.kctl(&["vm", "disk", "attach", "q35f", "default:1"])
        .expect_err("hotplug on fast q35", &["fast profile", "no hotplug ports"]);
    let vols = d
        .kctl(&["-o", "json", "volume", "list"])
        .expect_ok("volumes")
        .json();
    assert_eq!(vols["volumes"].as_array().map_or(0, Vec::len), 0, "{vols}");
    // Stopped, the disk can be added (it is on the root bus at the next start).
    d.kctl(&["vm", "stop", "q35f", "--force"]).expect_ok("stop");
    d.kctl(&["vm", "disk", "attach", "q35f", "default:1"])
        .expect_ok("attach while stopped");
}

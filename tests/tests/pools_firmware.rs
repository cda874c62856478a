//! An LVM pool on a real volume group (loop device, lvm2), as far as this kernel allows, and
//! UEFI boot with a per-VM copy of the OVMF variable store.

use std::process::Command;
use std::time::Duration;

use kcore_tests::{Daemon, guest};

fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{} (apt-get install lvm2 util-linux): {e}", argv[0]));
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A VG on a loop device, removed (with the PV and the loop device) when dropped.
struct TestVg {
    vg: String,
    loopdev: String,
    _file: tempfile::NamedTempFile,
}

impl TestVg {
    fn new() -> TestVg {
        let file = tempfile::NamedTempFile::new().expect("backing file");
        file.as_file().set_len(2 << 30).expect("sparse 2 GiB");
        let path = file.path().to_str().expect("utf8").to_string();
        let loopdev = run(&["losetup", "-f", "--show", &path]);
        let vg = format!("kcoretest{}", std::process::id());
        let t = TestVg {
            vg,
            loopdev,
            _file: file,
        };
        run(&["pvcreate", "-q", &t.loopdev]);
        run(&["vgcreate", "-q", &t.vg, &t.loopdev]);
        t
    }
}

impl Drop for TestVg {
    fn drop(&mut self) {
        let _ = Command::new("vgremove")
            .args(["-y", "-q", &self.vg])
            .output();
        let _ = Command::new("pvremove")
            .args(["-q", &self.loopdev])
            .output();
        let _ = Command::new("losetup").args(["-d", &self.loopdev]).output();
    }
}

#[test]
fn an_lvm_pool_is_reported_and_its_lvm2_errors_reach_the_user() {
    let vg = TestVg::new();
    let pool = format!("fast=lvm:{}", vg.vg);
    let d = Daemon::start_with(&["--pool", &pool]);
    let pools = d
        .kctl(&["-o", "json", "pool", "list"])
        .expect_ok("pool list")
        .json();
    let fast = pools["pools"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "fast").cloned())
        .expect("pool fast listed");
    assert_eq!(fast["type"], "lvm", "{fast}");
    assert_eq!(fast["source"], vg.vg.as_str());
    let total: u64 = fast["total_bytes"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("total");
    assert!(total > (1 << 30) && total <= (2 << 30), "{fast}");
    let table = d.kctl(&["pool", "list"]).expect_ok("pool list table");
    assert!(
        table.stdout.contains("fast") && table.stdout.contains("lvm"),
        "{}",
        table.stdout
    );

    // Without device-mapper lvcreate cannot activate the LV: the VM create fails with
    // lvm2's own words and leaves no LV, no VM.
    let g = guest();
    d.kctl(&[
        "vm",
        "create",
        "onlvm",
        "--vcpu",
        "1",
        "--memory",
        "128",
        "--kernel",
        g.kernel.to_str().expect("utf8"),
        "--disk",
        "fast:1",
    ])
    .expect_err("lvcreate fails here", &["lvcreate", "device-mapper"]);
    let lvs = run(&["lvs", "--noheadings", &vg.vg]);
    assert!(lvs.is_empty(), "no LV left: {lvs}");
    let list = d
        .kctl(&["-o", "json", "vm", "list"])
        .expect_ok("list")
        .json();
    assert_eq!(list["vms"].as_array().map(|v| v.len()), Some(0));
    eprintln!(
        "not exercised here (no device-mapper in this kernel): LV activation, /dev/{}/LV \
         nodes, VMs on LVM disks, thin pools; the lvm commands' argv are checked in \
         storage/ unit tests",
        vg.vg
    );
}

#[test]
fn uefi_boot_keeps_its_own_variable_store() {
    let d = Daemon::start();
    let g = guest();
    let vm = d
        .kctl(&[
            "-o",
            "json",
            "vm",
            "create",
            "efi",
            "--vcpu",
            "1",
            "--memory",
            "256",
            "--firmware",
            "uefi",
            "--kernel",
            g.kernel.to_str().expect("utf8"),
            "--initrd",
            g.initrd.to_str().expect("utf8"),
            "--cmdline",
            "console=ttyS0 quiet",
            "--ready-pattern",
            "KCORE-GUEST-READY",
        ])
        .expect_ok("create uefi")
        .json();
    assert_eq!(vm["spec"]["firmware"], "FIRMWARE_UEFI", "{vm}");
    let id = vm["id"].as_str().expect("id").to_string();
    let vars = d.data_dir().join("vms").join(&id).join("OVMF_VARS.fd");
    assert!(vars.is_file(), "per-VM vars copy at {}", vars.display());
    let argv = std::fs::read_to_string(d.run_dir().join("vms").join(&id).join("qemu.argv"))
        .expect("qemu.argv");
    assert!(
        argv.contains("pflash1=pflash1") && argv.contains("OVMF_CODE"),
        "{argv}"
    );
    // The variable store is the daemon's file (0600 root): QEMU holds it as a descriptor
    // the daemon opened, and never sees its path.
    assert!(!argv.contains(vars.to_str().expect("utf8")), "{argv}");
    let pid = vm["pid"].as_u64().expect("pid");
    let open_files: Vec<std::path::PathBuf> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("QEMU's fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .collect();
    assert!(
        open_files.contains(&vars),
        "QEMU holds {}: {open_files:?}",
        vars.display()
    );
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&vars).expect("vars");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (0, 0o600),
        "vars file is root's alone"
    );
    d.wait_console("efi", "KCORE-GUEST-READY", 1, Duration::from_secs(120));
    d.kctl(&["vm", "delete", "efi", "--force"])
        .expect_ok("delete");
    assert!(!vars.exists(), "the vars copy goes with the VM");
}

//! Memory-snapshot templates end to end: a template taken of a running guest, clones that
//! continue that guest (its counter goes on) without booting, keep their disks to
//! themselves, lease addresses of their own on a nat network and survive a daemon kill -9;
//! and the refusals (stopped VM, unknown template, other memory, tampered files), each
//! leaving nothing behind.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kcore_tests::cluster::{Kcored, start_node, wait_until};
use kcore_tests::{Daemon, NetNs, alive, guest};
use serde_json::Value;

const BOOT: Duration = Duration::from_secs(90);

/// The highest `TICK-N` on a VM's console.
fn last_tick(d: &Daemon, vm: &str) -> u64 {
    d.console_log(vm)
        .split("TICK-")
        .skip(1)
        .filter_map(|s| {
            s.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// Wait until `vm`'s console shows a tick above `above`; returns the first such.
fn wait_tick_above(d: &Daemon, vm: &str, above: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = last_tick(d, vm);
        if t > above {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{vm} shows no tick above {above}:\n{}",
            d.console_log(vm)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn phases(vm: &Value) -> Vec<String> {
    vm["timeline"]["phases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Read the first 4 bytes of /dev/vda in the guest (page cache dropped first, so the
/// answer is the disk's) and wait for `want`.
fn disk_reads(d: &Daemon, vm: &str, want: &str) {
    d.type_until(
        vm,
        "sync; echo 3 > /proc/sys/vm/drop_caches; echo R-$(head -c 4 /dev/vda)-$((1+1))",
        &format!("R-{want}-2"),
        Duration::from_secs(3),
    );
}

fn write_disk(d: &Daemon, vm: &str, what: &str) {
    d.type_until(
        vm,
        &format!("printf {what} > /dev/vda; sync; echo W-{what}-$((2+2))"),
        &format!("W-{what}-4"),
        Duration::from_secs(3),
    );
}

fn template_dir(d: &Daemon, name: &str) -> PathBuf {
    d.data_dir().join("templates").join(name)
}

#[test]
fn clones_continue_the_guest_with_their_own_disks_nics_and_survive_kill9() {
    let ns = NetNs::create();
    let mut d = Daemon::start_in_netns(&ns);
    d.kctl(&[
        "network",
        "create",
        "nat1",
        "--mode",
        "nat",
        "--subnet",
        "10.79.0.0/24",
    ])
    .expect_ok("network create");

    // The template's source: a guest with a data disk, a marker on it, and a counter that
    // prints a tick every second.
    d.create_guest("gold", "kcore.echo=off", &["--disk", "default:1"]);
    d.wait_console("gold", "KCORE-GUEST-SHELL", 1, BOOT);
    write_disk(&d, "gold", "GOLD");
    d.type_in(
        "gold",
        "(i=0; while :; do i=$((i+1)); echo TICK-$i; sleep 1; done) &",
    );
    let before = wait_tick_above(&d, "gold", 2);

    let t = d
        .kctl(&[
            "-o",
            "json",
            "template",
            "create",
            "tpl",
            "--from-vm",
            "gold",
        ])
        .expect_ok("template create")
        .json();
    assert_eq!(t["memory_mb"], 128, "{t}");
    assert_eq!(t["disks"], 1, "{t}");
    assert_eq!(t["source_vm"], "gold", "{t}");
    let at_template = last_tick(&d, "gold");
    assert!(at_template >= before);
    // The source runs on (not --stop-source), and its later writes are its own.
    assert_eq!(d.vm("gold")["status"], "VM_STATUS_RUNNING");
    wait_tick_above(&d, "gold", at_template);
    write_disk(&d, "gold", "LATE");

    // Files of the template: root's alone; the disk base read-only.
    let dir = template_dir(&d, "tpl");
    use std::os::unix::fs::PermissionsExt;
    let base = std::fs::read_dir(&dir)
        .expect("template dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".qcow2"))
        .expect("a disk base in the template");
    for (f, mode) in [
        ("", 0o700),
        ("memory.ram", 0o600),
        ("devices.mig", 0o600),
        ("template.json", 0o600),
        (base.as_str(), 0o400),
    ] {
        let m = std::fs::metadata(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(m.permissions().mode() & 0o777, mode, "{f}");
    }
    // A template is taken without NICs, and from a RUNNING VM only.
    d.kctl(&["template", "create", "tpl", "--from-vm", "gold"])
        .expect_err("same name", &["AlreadyExists", "template tpl exists"]);

    // Two clones: one with a NIC on the nat network.
    let qemus_before = d.qemu_pids().len();
    let a = d
        .kctl(&[
            "-o",
            "json",
            "vm",
            "create",
            "ca",
            "--template",
            "tpl",
            "--nic",
            "nat1",
        ])
        .expect_ok("clone a")
        .json();
    assert_eq!(a["status"], "VM_STATUS_RUNNING", "{a}");
    assert_eq!(a["memory_mb"], 128, "{a}");
    assert_eq!(a["spec"]["template"], "tpl", "{a}");
    let b = d
        .kctl(&["-o", "json", "vm", "create", "cb", "--template", "tpl"])
        .expect_ok("clone b")
        .json();
    assert_eq!(d.qemu_pids().len(), qemus_before + 2);
    // Their timelines show the restore, and no boot: the guest continues.
    let a = d.wait_status("ca", "VM_STATUS_RUNNING", BOOT);
    let p = phases(&a);
    for want in [
        "qemu_exec",
        "qmp_ready",
        "restore_started",
        "state_loaded",
        "vcpus_running",
        "guest_ready",
    ] {
        assert!(p.iter().any(|x| x == want), "{want} missing: {p:?}");
    }
    assert!(phases(&b).iter().any(|x| x == "state_loaded"), "{b}");
    let tl = d
        .kctl(&["vm", "timeline", "ca"])
        .expect_ok("timeline")
        .stdout;
    assert!(tl.contains("state_loaded"), "{tl}");
    for c in ["ca", "cb"] {
        let first = wait_tick_above(&d, c, 0);
        assert!(
            first >= before && first <= at_template + 2,
            "{c} continued at tick {first}, the template was taken between {before} and \
             {at_template}"
        );
        let log = d.console_log(c);
        assert!(!log.contains("KCORE-GUEST-READY"), "{c} booted:\n{log}");
        wait_tick_above(&d, c, first + 1);
    }

    // Disks: both see the template's data (not the source's later write); each then
    // writes its own, and neither sees the other's.
    disk_reads(&d, "ca", "GOLD");
    disk_reads(&d, "cb", "GOLD");
    write_disk(&d, "ca", "AAAA");
    write_disk(&d, "cb", "BBBB");
    disk_reads(&d, "ca", "AAAA");
    disk_reads(&d, "cb", "BBBB");
    disk_reads(&d, "gold", "LATE");

    // The clone's NIC is its own (hot-plugged after the restore): its MAC, a lease.
    let mac = a["nics"][0]["mac"].as_str().expect("mac").to_string();
    d.type_until(
        "ca",
        "cat /sys/class/net/eth0/address",
        &mac,
        Duration::from_secs(3),
    );
    d.type_until(
        "ca",
        "printf '#!/bin/sh\\n[ \"$1\" = bound ] && ip addr add $ip/$mask dev $interface\\n' \
         > /tmp/u.sh; chmod +x /tmp/u.sh; ip link set eth0 up; \
         udhcpc -i eth0 -s /tmp/u.sh -q -n -t 10 -T 2 >/dev/null 2>&1 && echo DHCP-$((40+2))",
        "DHCP-42",
        Duration::from_secs(30),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let ip = loop {
        let v = d.vm("ca");
        if let Some(ip) = v["nics"][0]["ip"]
            .as_str()
            .filter(|s| s.starts_with("10.79.0."))
        {
            break ip.to_string();
        }
        assert!(Instant::now() < deadline, "no lease for ca: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(ns.ping(&ip), "the clone's NIC is on the network ({ip})");
    // A VM with NICs is not taken as a template.
    d.kctl(&["template", "create", "t2", "--from-vm", "ca"])
        .expect_err(
            "NICs",
            &["FailedPrecondition", "has NICs", "detach them first"],
        );

    // Its clones keep the template.
    let t = d
        .kctl(&["-o", "json", "template", "get", "tpl"])
        .expect_ok("get")
        .json();
    assert_eq!(t["clones"], serde_json::json!(["ca", "cb"]), "{t}");
    d.kctl(&["template", "delete", "tpl"]).expect_err(
        "delete with clones",
        &["FailedPrecondition", "has clones", "ca, cb"],
    );
    let list = d.kctl(&["template", "list"]).expect_ok("list").stdout;
    assert!(list.contains("tpl") && list.contains("gold"), "{list}");

    // kill -9 of the daemon: the clones run on, and are found again.
    let pid_a = a["pid"].as_u64().expect("pid") as u32;
    d.restart();
    let a2 = d.wait_status("ca", "VM_STATUS_RUNNING", Duration::from_secs(30));
    assert_eq!(a2["pid"].as_u64(), Some(u64::from(pid_a)), "{a2}");
    assert!(alive(pid_a));
    d.type_until(
        "ca",
        "echo ALIVE-$((2*3))",
        "ALIVE-6",
        Duration::from_secs(3),
    );
    disk_reads(&d, "ca", "AAAA");
    // A new clone after the restart: the template's memory is read again (and checked).
    d.kctl(&["vm", "create", "cc", "--template", "tpl"])
        .expect_ok("clone after restart");
    wait_tick_above(&d, "cc", 0);

    // A stopped clone starts again by booting from its disk-less kernel: no restore.
    d.kctl(&["vm", "stop", "cc", "--force"]).expect_ok("stop");
    d.kctl(&["vm", "start", "cc"]).expect_ok("start");
    d.wait_console("cc", "KCORE-GUEST-READY", 1, BOOT);
    let cc = d.vm("cc");
    assert!(!phases(&cc).iter().any(|x| x == "restore_started"), "{cc}");

    for c in ["ca", "cb", "cc"] {
        d.kctl(&["vm", "delete", c, "--force"])
            .expect_ok("delete clone");
    }
    d.kctl(&["template", "delete", "tpl"])
        .expect_ok("delete template");
    assert!(!template_dir(&d, "tpl").exists());
    let ev = d.kctl(&["events"]).expect_ok("events").stdout;
    for kind in ["template.created", "template.deleted"] {
        assert!(ev.contains(kind), "no {kind}: {ev}");
    }
    d.kctl(&["template", "get", "tpl"])
        .expect_err("gone", &["NotFound", "no template tpl"]);
}

#[test]
fn bad_templates_and_clones_are_refused_and_leave_nothing() {
    // SeaBIOS instead of qboot for direct kernel boot: the VMs get a vmgenid device (qboot
    // hangs on it), and a clone a new generation id.
    let mut d = Daemon::start_with(&["--kernel-boot-bios", ""]);
    // Not from a stopped VM, nor an unknown one.
    d.create_guest_run("off", None, "kcore.echo=off", &["--start=false"])
        .expect_ok("create stopped");
    d.kctl(&["template", "create", "t", "--from-vm", "off"])
        .expect_err(
            "stopped source",
            &[
                "FailedPrecondition",
                "STOPPED",
                "a template is taken from a RUNNING VM",
            ],
        );
    d.kctl(&["template", "create", "t", "--from-vm", "nope"])
        .expect_err("unknown VM", &["NotFound"]);
    d.kctl(&["template", "create", "Bad_Name", "--from-vm", "off"])
        .expect_err("bad name", &["InvalidArgument", "template"]);
    d.kctl(&["vm", "create", "c", "--template", "nope"])
        .expect_err("unknown template", &["NotFound", "no template nope"]);
    assert!(!d.data_dir().join("templates").join("t").exists());

    d.create_guest("src", "kcore.echo=off", &[]);
    d.wait_console("src", "KCORE-GUEST-SHELL", 1, BOOT);
    d.kctl(&[
        "template",
        "create",
        "t",
        "--from-vm",
        "src",
        "--stop-source",
    ])
    .expect_ok("template with --stop-source");
    assert_eq!(d.vm("src")["status"], "VM_STATUS_STOPPED");

    let qemus = d.qemu_pids().len();
    let vms = |d: &Daemon| {
        d.kctl(&["-o", "json", "vm", "list"])
            .expect_ok("list")
            .json()["vms"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
    };
    let count = vms(&d);
    d.kctl(&["vm", "create", "c", "--template", "t", "--memory", "256"])
        .expect_err("other memory", &["InvalidArgument", "memory", "128"]);
    // A clone runs on its template's node, or nowhere.
    d.kctl(&[
        "vm",
        "create",
        "c",
        "--template",
        "t",
        "--node",
        "elsewhere",
    ])
    .expect_err(
        "another node",
        &[
            "InvalidArgument",
            "template t is on node node1",
            "not on node elsewhere",
        ],
    );
    d.kctl(&["node", "cordon", "node1"]).expect_ok("cordon");
    d.kctl(&["vm", "create", "c", "--template", "t"])
        .expect_err(
            "template's node cordoned",
            &[
                "FailedPrecondition",
                "a clone runs on its template's node node1",
                "cordoned",
            ],
        );
    d.kctl(&["node", "uncordon", "node1"]).expect_ok("uncordon");
    let c = d
        .kctl(&[
            "-o",
            "json",
            "vm",
            "create",
            "c",
            "--template",
            "t",
            "--vcpu",
            "1",
            "--memory",
            "128",
        ])
        .expect_ok("same memory, said")
        .json();
    let argv = |vm: &Value| {
        let id = vm["id"].as_str().expect("id");
        std::fs::read_to_string(d.run_dir().join("vms").join(id).join("qemu.argv"))
            .expect("qemu.argv")
    };
    let guid = |argv: &str| {
        argv.lines()
            .find_map(|l| l.strip_prefix("vmgenid,guid="))
            .map(|g| g.split(',').next().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("no vmgenid in {argv}"))
    };
    let src = d.vm("src");
    let clone_argv = argv(&c);
    assert_ne!(
        guid(&argv(&src)),
        guid(&clone_argv),
        "a clone's generation id is new"
    );
    assert!(clone_argv.contains("\n-incoming\ndefer\n"), "{clone_argv}");
    d.kctl(&["vm", "delete", "c", "--force"])
        .expect_ok("delete");
    // A clone defined but never started restores at its first start, autostart included.
    d.kctl(&[
        "vm",
        "create",
        "auto",
        "--template",
        "t",
        "--start=false",
        "--autostart",
    ])
    .expect_ok("define a clone");
    d.kill9();
    std::fs::remove_file(d.run_dir().join("autostarted")).expect("the autostart marker");
    d.restart();
    let v = d.wait_status("auto", "VM_STATUS_RUNNING", Duration::from_secs(30));
    assert!(phases(&v).iter().any(|p| p == "state_loaded"), "{v}");
    d.kctl(&["vm", "delete", "auto", "--force"])
        .expect_ok("delete");

    // Tampered files: a clear error, no QEMU and no VM left.
    let dir = d.data_dir().join("templates").join("t");
    let dev = dir.join("devices.mig");
    let good = std::fs::read(&dev).expect("devices.mig");
    std::fs::write(&dev, &good[..good.len() / 2]).expect("truncate");
    d.kctl(&["vm", "create", "c", "--template", "t"])
        .expect_err(
            "truncated device state",
            &["FailedPrecondition", "template t is damaged", "devices.mig"],
        );
    // Garbage that matches a rewritten template.json: QEMU refuses to load it.
    let mut bad = good.clone();
    for b in bad.iter_mut().skip(64).take(256) {
        *b ^= 0x5a;
    }
    std::fs::write(&dev, &bad).expect("write");
    let meta_path = dir.join("template.json");
    let mut meta: Value =
        serde_json::from_slice(&std::fs::read(&meta_path).expect("meta")).expect("json");
    let sum = {
        let out = std::process::Command::new("sha256sum")
            .arg(&dev)
            .output()
            .expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .expect("sum")
            .to_string()
    };
    meta["devices"]["sha256"] = Value::from(sum);
    std::fs::write(&meta_path, serde_json::to_vec(&meta).expect("json")).expect("meta");
    let r = d
        .kctl(&["vm", "create", "c", "--template", "t"])
        .expect_err("garbage device state", &["FailedPrecondition"]);
    assert!(
        r.stderr.contains("migration") || r.stderr.contains("QEMU"),
        "{}",
        r.stderr
    );
    // The missing memory file.
    std::fs::write(&dev, &good).expect("restore");
    std::fs::remove_file(dir.join("memory.ram")).expect("rm");
    d.kctl(&["vm", "create", "c", "--template", "t"])
        .expect_err("no memory", &["FailedPrecondition", "memory.ram"]);
    assert_eq!(d.qemu_pids().len(), qemus, "a refused clone left a QEMU");
    assert_eq!(vms(&d), count, "a refused clone left a VM");
    assert!(
        std::fs::read_dir(d.data_dir().join("vms"))
            .expect("vms dir")
            .count()
            == count,
        "a refused clone left a VM directory"
    );
    // A damaged template can still be deleted.
    d.kctl(&["template", "delete", "t"])
        .expect_ok("delete damaged");
}

#[test]
fn in_a_cluster_a_clone_goes_to_its_templates_node() {
    let ctl = Kcored::start(&[
        "controller",
        "--heartbeat-interval",
        "0.5",
        "--node-timeout",
        "2",
    ]);
    let nodes: Vec<Kcored> = ["n1", "n2"]
        .iter()
        .map(|n| {
            start_node(
                &ctl,
                n,
                &ctl.join_token(),
                &["--cpus", "2", "--memory", "2048"],
            )
        })
        .collect();
    wait_until(
        60,
        "two READY nodes",
        || ctl.ready_nodes() == ["n1", "n2"],
        || ctl.log(),
    );
    let g = guest();
    ctl.admin(&[
        "vm",
        "create",
        "gold",
        "--vcpu",
        "1",
        "--memory",
        "128",
        "--node",
        "n2",
        "--kernel",
        g.kernel.to_str().expect("utf-8"),
        "--initrd",
        g.initrd.to_str().expect("utf-8"),
        "--cmdline",
        "console=ttyS0 quiet kcore.echo=off",
        "--ready-pattern",
        "KCORE-GUEST-READY",
    ])
    .expect_ok("gold on n2");
    wait_until(
        BOOT.as_secs(),
        "gold ready",
        || {
            ctl.admin(&["vm", "timeline", "gold"])
                .stdout
                .contains("guest_ready")
        },
        || nodes[1].log(),
    );
    let t = ctl
        .admin(&["-o", "json", "template", "create", "t", "--from-vm", "gold"])
        .expect_ok("template")
        .json();
    assert_eq!(t["node"], "n2", "{t}");
    assert!(nodes[1].dir.path().join("data/templates/t").is_dir());
    assert!(!nodes[0].dir.path().join("data/templates/t").exists());
    // Placement would spread VMs; a clone goes where its template is.
    for c in ["c1", "c2"] {
        let v = ctl
            .admin(&["-o", "json", "vm", "create", c, "--template", "t"])
            .expect_ok("clone")
            .json();
        assert_eq!(v["node"], "n2", "{v}");
        assert_eq!(v["status"], "VM_STATUS_RUNNING", "{v}");
    }
    ctl.admin(&["vm", "create", "c3", "--template", "t", "--node", "n1"])
        .expect_err(
            "clone elsewhere",
            &[
                "InvalidArgument",
                "template t is on node n2",
                "not on node n1",
            ],
        );
    let list = ctl
        .admin(&["-o", "json", "template", "list", "--node", "n1"])
        .expect_ok("n1's templates")
        .json();
    assert!(
        list["templates"].as_array().is_none_or(Vec::is_empty),
        "{list}"
    );
}

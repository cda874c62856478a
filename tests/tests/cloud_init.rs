//! cloud-init and UpdateVM end to end: a real guest reads its NoCloud seed (the test guest
//! prints the files of a disk labelled cidata), an update while it runs is refused with
//! nothing changed, a stopped VM gets new vCPUs, memory and seed that the next boot sees,
//! bad or oversized data is refused before anything is made, the seed survives a daemon
//! restart and a crash restart, and goes with the VM.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kcore_tests::Daemon;
use serde_json::Value;

const BOOT: Duration = Duration::from_secs(90);

fn write(d: &Daemon, name: &str, text: &str) -> String {
    let p = d.dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p.to_str().expect("utf8").to_string()
}

fn seed_of(d: &Daemon, id: &str) -> PathBuf {
    d.data_dir().join("vms").join(id).join("cidata.img")
}

/// `kctl vm qmp` and its `return`.
fn qmp(d: &Daemon, vm: &str, cmd: &str) -> Value {
    let out = d.kctl(&["vm", "qmp", vm, cmd]).expect_ok("qmp").stdout;
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.get("return").cloned().unwrap_or(v)
}

fn events(d: &Daemon, vm: &str) -> String {
    d.kctl(&["-o", "json", "events", "--vm", vm])
        .expect_ok("events")
        .stdout
}

#[test]
fn the_guest_reads_its_seed_and_sees_an_update_at_its_next_start() {
    let d = Daemon::start();
    let user = write(
        &d,
        "user1.yaml",
        "#cloud-config\n# kcore-test: FIRST-SEED\nruncmd: [[echo, hi]]\n",
    );
    let vm = d.create_guest(
        "ci",
        "",
        &["--cloud-init-user-data", &user, "--hostname", "ci-host"],
    );
    let id = vm["id"].as_str().expect("id").to_string();
    assert_eq!(
        vm["spec"]["cloud_init"]["meta_data"], "local-hostname: ci-host\n",
        "{vm}"
    );
    d.wait_console(
        "ci",
        "KCORE-CIDATA user-data: # kcore-test: FIRST-SEED",
        1,
        BOOT,
    );
    d.wait_console("ci", "KCORE-CIDATA-HOSTNAME ci-host", 1, BOOT);
    // The node added the VM's id as instance-id to the meta-data given.
    d.wait_console(
        "ci",
        &format!("KCORE-CIDATA meta-data: instance-id: {id}"),
        1,
        BOOT,
    );
    // The seed is the node's alone: root's, 0600; QEMU got it as a descriptor.
    let seed = seed_of(&d, &id);
    let meta = std::fs::metadata(&seed).expect("seed file");
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o600));
    let argv = std::fs::read_to_string(d.run_dir().join("vms").join(&id).join("qemu.argv"))
        .expect("qemu.argv");
    assert!(argv.contains("drive=seed,id=seed,serial=cidata"), "{argv}");
    assert!(
        !argv.contains("cidata.img"),
        "no path, a descriptor: {argv}"
    );
    let got = d.kctl(&["vm", "get", "ci"]).expect_ok("vm get").stdout;
    assert!(got.contains("(seed disk cidata)"), "{got}");

    // vCPUs and memory need the VM stopped: refused, nothing changed, no event.
    d.kctl(&["vm", "set", "ci", "--vcpu", "2", "--memory", "192"])
        .expect_err(
            "resize a running VM",
            &[
                "VM ci is RUNNING",
                "only while it is STOPPED",
                "FailedPrecondition",
            ],
        );
    let now = d.vm("ci");
    assert_eq!(
        (now["vcpu"].as_u64(), now["memory_mb"].as_u64()),
        (Some(1), Some(128))
    );
    assert_eq!(now["spec"]["vcpu"], 1);
    assert!(!events(&d, "ci").contains("vm.updated"));

    // cloud-init may change while it runs: the seed is made again at once, the running
    // QEMU keeps the old one.
    let before = std::fs::read(&seed).expect("seed");
    let user2 = write(
        &d,
        "user2.yaml",
        "#cloud-config\n# kcore-test: SECOND-SEED\n",
    );
    d.kctl(&["vm", "set", "ci", "--cloud-init-user-data", &user2])
        .expect_ok("set cloud-init while running");
    assert_ne!(std::fs::read(&seed).expect("seed"), before, "made again");
    assert_eq!(d.vm("ci")["status"], "VM_STATUS_RUNNING");

    // Stopped: the resize goes through and the next boot sees all of it.
    d.kctl(&["vm", "stop", "ci", "--timeout", "0"])
        .expect_ok("stop");
    let vm = d
        .kctl(&[
            "-o", "json", "vm", "set", "ci", "--vcpu", "2", "--memory", "192",
        ])
        .expect_ok("resize")
        .json();
    assert_eq!(
        (vm["vcpu"].as_u64(), vm["memory_mb"].as_u64()),
        (Some(2), Some(192))
    );
    let ev = events(&d, "ci");
    assert!(
        ev.contains("vm.updated") && ev.contains("vcpu 1 -> 2; memory 128 -> 192 MiB"),
        "{ev}"
    );
    assert!(ev.contains("cloud-init: user-data"), "{ev}");
    d.kctl(&["vm", "start", "ci"]).expect_ok("start");
    d.wait_console(
        "ci",
        "KCORE-CIDATA user-data: # kcore-test: SECOND-SEED",
        1,
        BOOT,
    );
    // The meta-data was kept (vm set replaced the user-data only).
    d.wait_console("ci", "KCORE-CIDATA-HOSTNAME ci-host", 2, BOOT);
    let cpus = qmp(&d, "ci", r#"{"execute":"query-cpus-fast"}"#);
    assert_eq!(cpus.as_array().map(Vec::len), Some(2), "{cpus}");
    let mem = qmp(&d, "ci", r#"{"execute":"query-memory-size-summary"}"#);
    assert_eq!(mem["base-memory"].as_u64(), Some(192 << 20), "{mem}");

    // --no-cloud-init removes the seed; the next start has no cidata disk.
    d.kctl(&["vm", "set", "ci", "--no-cloud-init"])
        .expect_ok("remove cloud-init");
    assert!(!seed.exists(), "seed removed");
    assert!(d.vm("ci")["spec"].get("cloud_init").is_none());

    // Delete: nothing of the VM is left, its seed neither.
    d.kctl(&["vm", "set", "ci", "--cloud-init-user-data", &user])
        .expect_ok("seed again");
    assert!(seed.exists());
    d.kctl(&["vm", "delete", "ci", "--force"])
        .expect_ok("delete");
    assert!(!seed.exists() && !d.data_dir().join("vms").join(&id).exists());
}

/// Nothing of a refused create is left: no row, no volume, no file.
fn nothing_made(d: &Daemon) {
    let list = d
        .kctl(&["-o", "json", "vm", "list"])
        .expect_ok("vm list")
        .json();
    assert!(list["vms"].as_array().is_none_or(Vec::is_empty), "{list}");
    let vols = d
        .kctl(&["-o", "json", "volume", "list"])
        .expect_ok("volume list")
        .json();
    assert!(
        vols["volumes"].as_array().is_none_or(Vec::is_empty),
        "{vols}"
    );
    let dirs = std::fs::read_dir(d.data_dir().join("vms"))
        .map(|e| e.count())
        .unwrap_or(0);
    assert_eq!(dirs, 0, "no VM directory");
}

#[test]
fn bad_or_oversized_cloud_init_is_refused_before_anything_is_made() {
    let d = Daemon::start();
    let create = |extra: &[&str]| {
        let mut args = vec!["--disk", "default:1"];
        args.extend_from_slice(extra);
        d.create_guest_run("bad", None, "", &args)
    };
    let user = write(
        &d,
        "bad.yaml",
        "#cloud-config\nusers:\n  - name: a\n bad: [\n",
    );
    create(&["--cloud-init-user-data", &user]).expect_err(
        "bad user-data",
        &[
            "cloud-init user-data is not valid YAML",
            "line 4 column 2",
            "InvalidArgument",
        ],
    );
    nothing_made(&d);
    let net = write(&d, "net.yaml", "version: 2\n  ethernets: x\n");
    create(&["--cloud-init-network-config", &net]).expect_err(
        "bad network-config",
        &[
            "cloud-init network-config is not valid YAML",
            "line 2 column",
        ],
    );
    let meta = write(&d, "meta.yaml", "- a list\n");
    create(&["--cloud-init-meta-data", &meta]).expect_err(
        "meta-data not a mapping",
        &["cloud-init meta-data must be a YAML mapping"],
    );
    let big = write(
        &d,
        "big.sh",
        &format!("#!/bin/sh\n# {}\n", "x".repeat(600 * 1024)),
    );
    create(&["--cloud-init-user-data", &big]).expect_err(
        "oversized user-data",
        &["a file may be at most 512 KiB", "InvalidArgument"],
    );
    nothing_made(&d);
    // The same checks guard an update: the VM and its seed stay as they were.
    let good = write(&d, "good.yaml", "#cloud-config\n# kcore-test: KEPT\n");
    let vm = d
        .create_guest_run(
            "good",
            None,
            "",
            &["--cloud-init-user-data", &good, "--start=false"],
        )
        .expect_ok("create good")
        .json();
    let id = vm["id"].as_str().expect("id");
    let before = std::fs::read(seed_of(&d, id)).expect("seed");
    d.kctl(&["vm", "set", "good", "--cloud-init-user-data", &user])
        .expect_err("bad update", &["line 4 column 2", "InvalidArgument"]);
    assert_eq!(std::fs::read(seed_of(&d, id)).expect("seed"), before);
    assert_eq!(
        d.vm("good")["spec"]["cloud_init"]["user_data"],
        "#cloud-config\n# kcore-test: KEPT\n"
    );
    // More than any VM may have: refused by the controller, nothing changed.
    d.kctl(&["vm", "set", "good", "--vcpu", "4096"])
        .expect_err("too many vCPUs", &["vcpu 4096"]);
    // More than the host has, within the controller's overcommit: the node refuses it,
    // and the controller's row stays as it was.
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let more = (cpus + 1).to_string();
    d.kctl(&["vm", "set", "good", "--vcpu", &more, "--autostart"])
        .expect_err("more vCPUs than the host", &["more than this host has"]);
    let vm = d.vm("good");
    assert_eq!(vm["vcpu"], 1, "{vm}");
    assert!(
        vm["spec"].get("autostart").is_none_or(|a| a == false),
        "{vm}"
    );
    assert!(!events(&d, "good").contains("vm.updated"));
}

#[test]
fn the_seed_survives_a_daemon_restart_and_a_crash_restart() {
    let mut d = Daemon::start();
    let user = write(&d, "u.yaml", "#cloud-config\n# kcore-test: DURABLE\n");
    let vm = d.create_guest(
        "keep",
        "",
        &["--cloud-init-user-data", &user, "--restart", "on-failure"],
    );
    let id = vm["id"].as_str().expect("id").to_string();
    let needle = "KCORE-CIDATA user-data: # kcore-test: DURABLE";
    d.wait_console("keep", needle, 1, BOOT);
    let seed = std::fs::read(seed_of(&d, &id)).expect("seed");

    // The daemon dies and comes back: it reattaches to the QEMU, the seed is still there.
    d.restart();
    let vm = d.wait_status("keep", "VM_STATUS_RUNNING", BOOT);
    assert_eq!(
        vm["spec"]["cloud_init"]["user_data"],
        "#cloud-config\n# kcore-test: DURABLE\n"
    );
    assert_eq!(std::fs::read(seed_of(&d, &id)).expect("seed"), seed);
    let seen = |d: &Daemon| d.console_log("keep").matches(needle).count();
    let n = seen(&d);

    // QEMU crashes: the restart policy starts a new one, which gets the seed too.
    let pid = vm["pid"].as_u64().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill QEMU");
    d.wait_console("keep", needle, n + 1, BOOT);
    // And a stop and start after the restart.
    d.kctl(&["vm", "stop", "keep", "--timeout", "0"])
        .expect_ok("stop");
    d.kctl(&["vm", "start", "keep"]).expect_ok("start");
    d.wait_console("keep", needle, n + 2, BOOT);
    assert!(Path::new(&seed_of(&d, &id)).exists());
}

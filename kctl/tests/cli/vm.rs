//! `kctl vm` (its console, qmp, disk and nic verbs have files of their own).

use std::path::PathBuf;

use super::common::texts::*;
use super::common::*;

#[test]
fn vm_list_table_json_yaml() {
    let server = Server::unix();
    let table = ok(&server.kctl(&["vm", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "NAME  STATUS   NODE    VCPU   MEMORY    DISK   PID  AGE"
    );
    assert!(
        lines[1].starts_with("web   RUNNING  node-1     2  512 MiB  11 GiB  4242  "),
        "{table}"
    );
    assert!(
        lines[2].starts_with("db    STOPPED  node-1     1  256 MiB       -     -  "),
        "{table}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["vm", "list", "-o", "json"]))).expect("json");
    assert_eq!(json["vms"][0]["status"], "VM_STATUS_RUNNING");
    assert_eq!(json["vms"][1]["name"], "db");

    let yaml: serde_json::Value =
        serde_yaml::from_str(&ok(&server.kctl(&["-o", "yaml", "vm", "list"]))).expect("yaml");
    assert_eq!(yaml["vms"][0]["name"], "web");

    // A node without VMs: the header alone.
    let out = ok(&server.kctl(&["vm", "list", "--node", "node-9"]));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["NAME  STATUS  NODE  VCPU  MEMORY  DISK  PID  AGE"]
    );
}

#[test]
fn vm_get_and_timeline() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["vm", "get", "web"]));
    assert!(out.contains("Status:   RUNNING\n"), "{out}");
    assert!(
        out.contains(
            "\nDisks:\n  DEVICE  VOLUME     POOL         SIZE  FORMAT  IMAGE\n  \
             vda     web-root   default  10.0 GiB  qcow2   debian-12\n  \
             vdb     web-disk1  fast      1.0 GiB  raw     -\n"
        ),
        "{out}"
    );
    assert!(out.contains("vcpus_running"), "{out}");
    // A status with its reason.
    let out = ok(&server.kctl(&["vm", "get", "db"]));
    let status = format!("STOPPED ({})", GUEST_POWERED_OFF.fill(&[]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("Status: ") && l.trim_start_matches("Status: ").trim() == status),
        "{out}"
    );
    let out = ok(&server.kctl(&["vm", "timeline", "web"]));
    assert!(
        out.contains("\nvcpus_running          41.5        +3.5\n"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["vm", "timeline", "web", "-o", "json"])))
            .expect("json");
    assert_eq!(json["phases"][4]["name"], "vcpus_running");
    assert_eq!(json["phases"][4]["offset_ms"], 41.5);
}

#[test]
fn api_errors_print_message_and_code() {
    let server = Server::unix();
    let err = failed(&server.kctl(&["vm", "get", "nope"]));
    assert_eq!(
        err,
        format!("Error: {} (NotFound)\n", NO_VM.fill(&["nope"]))
    );
    let err = failed(&server.kctl(&["vm", "start", "web"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            VM_CANNOT_START.fill(&["web", "RUNNING"])
        )
    );
    let err = failed(&server.kctl(&["node", "get", "n9"]));
    assert_eq!(
        err,
        format!("Error: {} (NotFound)\n", NO_NODE.fill(&["n9"]))
    );
}

#[test]
fn vm_create_sends_absolute_paths_and_start_false() {
    let server = Server::unix();
    let home = server.dir.path().canonicalize().expect("canonical");
    let create = |kernel: &str| {
        server.kctl(&[
            "vm",
            "create",
            "web2",
            "--vcpu",
            "2",
            "--memory",
            "1G",
            "--kernel",
            kernel,
            "--initrd",
            "sub/initrd.img",
            "--cmdline",
            "console=ttyS0",
            "--start=false",
            "-o",
            "json",
        ])
    };
    // A kernel that is not on this host: kctl sends its absolute path, unresolved, and the
    // node (here, on the same host) refuses it.
    let err = failed(&create("vmlinuz"));
    let prefix = "Error: kernel ";
    let suffix = ": No such file or directory (os error 2) (InvalidArgument)\n";
    assert!(err.starts_with(prefix) && err.ends_with(suffix), "{err}");
    let kernel = PathBuf::from(&err[prefix.len()..err.len() - suffix.len()]);
    assert!(kernel.is_absolute(), "{kernel:?}");
    assert_eq!(kernel.canonicalize().ok(), None); // does not exist: not resolved locally
    assert_eq!(
        kernel.file_name().and_then(|n| n.to_str()),
        Some("vmlinuz"),
        "{kernel:?}"
    );
    assert!(
        kernel.starts_with(server.dir.path()) || kernel.starts_with(&home),
        "{kernel:?}"
    );

    std::fs::write(server.dir.path().join("vmlinuz"), b"kernel").expect("kernel");
    std::fs::create_dir(server.dir.path().join("sub")).expect("mkdir");
    std::fs::write(server.dir.path().join("sub/initrd.img"), b"initrd").expect("initrd");
    let json: serde_json::Value = serde_json::from_str(&ok(&create("vmlinuz"))).expect("json");
    let sent = PathBuf::from(json["spec"]["kernel"].as_str().expect("kernel"));
    assert_eq!(sent, kernel);
    assert!(
        json["spec"]["initrd"]
            .as_str()
            .expect("initrd")
            .ends_with("/sub/initrd.img")
    );
    assert_eq!(json["spec"]["memory_mb"], 1024);
    assert_eq!(json["status"], "VM_STATUS_STOPPED");
    assert_eq!(json["pid"], 0);

    let out = ok(&server.kctl(&[
        "vm",
        "create",
        "web3",
        "--vcpu",
        "1",
        "--memory",
        "256",
        "--image",
        "debian-12",
    ]));
    assert_eq!(
        out,
        "Created VM web3: RUNNING on node-1, vcpus running after 41.5 ms\n"
    );
}

#[test]
fn vm_create_with_image_and_disks() {
    let server = Server::unix();
    let out = ok(&server.kctl(&[
        "vm",
        "create",
        "web4",
        "--vcpu",
        "2",
        "--memory",
        "1G",
        "--image",
        "debian-12",
        "--disk-size",
        "20",
        "--disk",
        "fast:10",
        "--disk",
        "default:5",
        "--root-pool",
        "fast",
        "--firmware",
        "uefi",
        "-o",
        "json",
    ]));
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    let spec = &json["spec"];
    assert_eq!(spec["image"], "debian-12");
    assert_eq!(spec["disk_size_gb"], 20);
    assert_eq!(
        spec["disks"],
        serde_json::json!([
            {"pool": "fast", "size_gb": 10, "volume": ""},
            {"pool": "default", "size_gb": 5, "volume": ""}
        ])
    );
    assert_eq!(spec["root_pool"], "fast");
    assert_eq!(spec["firmware"], "FIRMWARE_UEFI");
    assert_eq!(spec["kernel"], "", "no kernel sent: {spec}");
    assert_eq!(json["storage_gb"], 35);

    // An image with an external kernel.
    std::fs::write(server.dir.path().join("vmlinuz"), b"kernel").expect("kernel");
    let kernel = server.dir.path().join("vmlinuz");
    let kernel = kernel.to_str().expect("utf-8");
    let out = ok(&server.kctl(&[
        "vm",
        "create",
        "web5",
        "--vcpu",
        "1",
        "--memory",
        "256",
        "--image",
        "debian-12",
        "--kernel",
        kernel,
        "--cmdline",
        "root=/dev/vda1",
        "-o",
        "json",
    ]));
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(json["spec"]["kernel"], kernel);
    assert_eq!(json["spec"]["image"], "debian-12");

    // Checks left to the server: neither image nor kernel, an unknown image, a zero-sized
    // disk, a name in use.
    let err = failed(&server.kctl(&["vm", "create", "w", "--vcpu", "1", "--memory", "64"]));
    let no_boot = INVALID_SPEC.fill(&[&NO_BOOT_SOURCE.fill(&[])]);
    assert_eq!(err, format!("Error: {no_boot} (InvalidArgument)\n"));
    // The whole request is checked before placement: a zero-sized disk before the image.
    let err = failed(&server.kctl(&[
        "vm", "create", "w", "--vcpu", "1", "--memory", "64", "--image", "i", "--disk", "fast:0",
    ]));
    assert_eq!(
        err,
        format!(
            "Error: {} (InvalidArgument)\n",
            PLANNED_DISK_SIZE.fill(&["disk 1"])
        )
    );
    let err = failed(&server.kctl(&[
        "vm", "create", "w", "--vcpu", "1", "--memory", "64", "--image", "i",
    ]));
    assert_eq!(
        err,
        format!("Error: {} (NotFound)\n", NO_IMAGE_ANYWHERE.fill(&["i"]))
    );
    let err = failed(&server.kctl(&[
        "vm",
        "create",
        "w",
        "--vcpu",
        "1",
        "--memory",
        "64",
        "--image",
        "debian-12",
        "--disk",
        "fast:0",
    ]));
    assert_eq!(
        err,
        format!(
            "Error: {} (InvalidArgument)\n",
            PLANNED_DISK_SIZE.fill(&["disk 1"])
        )
    );
    let err = failed(&server.kctl(&[
        "vm", "create", "db", "--vcpu", "1", "--memory", "64", "--image", "alpine",
    ]));
    assert_eq!(
        err,
        format!("Error: {} (AlreadyExists)\n", VM_EXISTS.fill(&["db"]))
    );
}

#[test]
fn bad_disk_specs_fail_before_connecting() {
    let home = tempfile::tempdir().expect("tempdir");
    for (bad, says) in [
        ("nocolon", "is not POOL:SIZE_GB"),
        ("p:1.5", "is neither a size (a whole number of GiB"),
    ] {
        let mut command = kctl_command(home.path());
        command.args([
            "--endpoint",
            "unix:///nonexistent/kcore.sock",
            "vm",
            "create",
            "w",
            "--vcpu",
            "1",
            "--memory",
            "64",
            "--image",
            "i",
            "--disk",
            bad,
        ]);
        let output = run(command, b"");
        assert_eq!(output.status.code(), Some(2), "clap usage error for {bad}");
        let err = text(&output.stderr);
        assert!(
            err.contains(&format!(
                "invalid value '{bad}' for '--disk <POOL:SIZE_GB|POOL:VOLUME>'"
            )),
            "{err}"
        );
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn vm_delete_keep_disks() {
    let server = Server::unix();
    assert_eq!(
        ok(&server.kctl(&["vm", "delete", "db", "--keep-disks"])),
        "Deleted VM db (its volumes were kept)\n"
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "rm", "web", "--force"])),
        "Deleted VM web\n"
    );
    // A running VM needs --force.
    let err = failed(&server.kctl(&["vm", "delete", "web"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            VM_DELETE_ACTIVE.fill(&["web", "RUNNING"])
        )
    );
    let deletes = recorded(&server.records.vm_deletes);
    assert_eq!(
        deletes
            .iter()
            .map(|d| (d.name.as_str(), d.force, d.keep_disks))
            .collect::<Vec<_>>(),
        [
            ("db", false, true),
            ("web", true, false),
            ("web", false, false)
        ]
    );
}

#[test]
fn vm_actions() {
    let server = Server::unix();
    // --no-wait: the VM as it was when the stop was asked for.
    let out = ok(&server.kctl(&[
        "vm",
        "stop",
        "web",
        "--force",
        "--timeout",
        "7",
        "--no-wait",
    ]));
    assert_eq!(out, "Stopped VM web: RUNNING on node-1\n");
    // --timeout 0 is sent as 0 (no grace), no --timeout as unset (the server's default).
    assert_eq!(
        ok(&server.kctl(&["vm", "stop", "web", "--timeout", "0"])),
        "Stopped VM web: STOPPED on node-1\n"
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "stop", "web"])),
        "Stopped VM web: STOPPED on node-1\n"
    );
    let stops = recorded(&server.records.stops);
    assert_eq!(
        stops
            .iter()
            .map(|s| (s.name.as_str(), s.force, s.timeout_secs, s.no_wait))
            .collect::<Vec<_>>(),
        [
            ("web", true, Some(7), true),
            ("web", false, Some(0), false),
            ("web", false, None, false)
        ]
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "pause", "web"])),
        "Paused VM web: PAUSED on node-1\n"
    );
    let err = failed(&server.kctl(&["vm", "resume", "web"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            WRONG_STATE.fill(&["RUNNING", "resume"])
        )
    );
    // A start prints the time to running; --no-wait, the VM as it was, with its reason
    // (the server answers each call from the same state: db is still there to delete).
    assert_eq!(
        ok(&server.kctl(&["vm", "start", "db"])),
        "Started VM db: RUNNING on node-1, vcpus running after 41.5 ms\n"
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "start", "db", "--no-wait"])),
        format!(
            "Started VM db: STOPPED on node-1 ({})\n",
            GUEST_POWERED_OFF.fill(&[])
        ),
        "no time to running: this start has not happened yet"
    );
    assert_eq!(ok(&server.kctl(&["vm", "delete", "db"])), "Deleted VM db\n");
    assert_eq!(
        ok(&server.kctl(&["vm", "delete", "db", "-o", "json"])),
        "{}\n"
    );

    let paused = Server::unix_with(|w| w.set_status("web", kcore_proto::v1::VmStatus::Paused));
    let json: serde_json::Value =
        serde_json::from_str(&ok(&paused.kctl(&["vm", "resume", "web", "-o", "json"])))
            .expect("json");
    assert_eq!(json["status"], "VM_STATUS_RUNNING");
}

//! `kctl vm` (but console and qmp).

use std::path::PathBuf;

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
        lines[1].starts_with("web   RUNNING  node-1     2  512 MiB  10 GiB  4242  "),
        "{table}"
    );
    assert!(
        lines[2].starts_with("db    STOPPED  node-1     2  512 MiB       -     -  "),
        "{table}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["vm", "list", "-o", "json"]))).expect("json");
    assert_eq!(json["vms"][0]["status"], "VM_STATUS_RUNNING");
    assert_eq!(json["vms"][1]["name"], "db");

    let yaml: serde_json::Value =
        serde_yaml::from_str(&ok(&server.kctl(&["-o", "yaml", "vm", "list"]))).expect("yaml");
    assert_eq!(yaml["vms"][0]["name"], "web");
}

#[test]
fn vm_get_and_timeline() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["vm", "get", "web"]));
    assert!(out.contains("Status:   RUNNING\n"), "{out}");
    assert!(
        out.contains(
            "\nDisks:\n  DEVICE  VOLUME      POOL          SIZE  FORMAT  IMAGE\n  \
             vda     web-root    default   10.0 GiB  qcow2   debian-12\n  \
             vdb     web-data-1  fast     512.0 MiB  raw     -\n"
        ),
        "{out}"
    );
    assert!(out.contains("vcpus_running"), "{out}");
    let out = ok(&server.kctl(&["vm", "timeline", "web"]));
    assert!(
        out.contains("vcpus_running        41.5       +41.5"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["vm", "timeline", "web", "-o", "json"])))
            .expect("json");
    assert_eq!(json["phases"][1]["offset_ms"], 41.5);
}

#[test]
fn api_errors_print_message_and_code() {
    let server = Server::unix();
    let err = failed(&server.kctl(&["vm", "get", "nope"]));
    assert_eq!(err, "Error: vm \"nope\" not found (NotFound)\n");
    let err = failed(&server.kctl(&["vm", "start", "web"]));
    assert_eq!(
        err,
        "Error: vm \"web\" is already running (FailedPrecondition)\n"
    );
    let err = failed(&server.kctl(&["node", "get", "n9"]));
    assert_eq!(err, "Error: node \"n9\" not found (NotFound)\n");
}

#[test]
fn vm_create_sends_absolute_paths_and_start_false() {
    let server = Server::unix();
    let out = ok(&server.kctl(&[
        "vm",
        "create",
        "web2",
        "--vcpu",
        "2",
        "--memory",
        "1G",
        "--kernel",
        "vmlinuz",
        "--initrd",
        "sub/initrd.img",
        "--cmdline",
        "console=ttyS0",
        "--start=false",
        "-o",
        "json",
    ]));
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    let home = server.dir.path().canonicalize().expect("canonical");
    let kernel = PathBuf::from(json["spec"]["kernel"].as_str().expect("kernel"));
    assert!(kernel.is_absolute());
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
    assert!(
        json["spec"]["initrd"]
            .as_str()
            .expect("initrd")
            .ends_with("/sub/initrd.img")
    );
    assert_eq!(json["spec"]["memory_mb"], 1024);
    assert_eq!(json["status"], "VM_STATUS_STOPPED");

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

    // An image with an external kernel.
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
        "/boot/vmlinuz",
        "--cmdline",
        "root=/dev/vda1",
        "-o",
        "json",
    ]));
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(json["spec"]["kernel"], "/boot/vmlinuz");
    assert_eq!(json["spec"]["image"], "debian-12");

    // Checks left to the server: neither image nor kernel, a zero-sized disk.
    let err = failed(&server.kctl(&["vm", "create", "w", "--vcpu", "1", "--memory", "64"]));
    assert_eq!(
        err,
        "Error: a VM needs an image or a kernel to boot from (InvalidArgument)\n"
    );
    let err = failed(&server.kctl(&[
        "vm", "create", "w", "--vcpu", "1", "--memory", "64", "--image", "i", "--disk", "fast:0",
    ]));
    assert_eq!(
        err,
        "Error: disks[0]: size_gb must be at least 1 (InvalidArgument)\n"
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
        ok(&server.kctl(&["vm", "delete", "web", "--keep-disks"])),
        "Deleted VM web (its volumes were kept)\n"
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "rm", "web", "--force"])),
        "Deleted VM web\n"
    );
    let deletes = recorded(&server.mock.vm_deletes);
    assert_eq!(
        deletes
            .iter()
            .map(|d| (d.name.as_str(), d.force, d.keep_disks))
            .collect::<Vec<_>>(),
        [("web", false, true), ("web", true, false)]
    );
}

#[test]
fn vm_actions() {
    let server = Server::unix();
    let out = ok(&server.kctl(&[
        "vm",
        "stop",
        "web",
        "--force",
        "--timeout",
        "7",
        "--no-wait",
    ]));
    assert_eq!(
        out,
        "Stopped VM web: STOPPED on node-1 (force=true timeout=Some(7) no_wait=true)\n"
    );
    // --timeout 0 is sent as 0 (no grace), no --timeout as unset (the server's default).
    assert_eq!(
        ok(&server.kctl(&["vm", "stop", "web", "--timeout", "0"])),
        "Stopped VM web: STOPPED on node-1 (force=false timeout=Some(0) no_wait=false)\n"
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "stop", "web"])),
        "Stopped VM web: STOPPED on node-1 (force=false timeout=None no_wait=false)\n"
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "pause", "web"])),
        "Paused VM web: PAUSED on node-1\n"
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "delete", "web"])),
        "Deleted VM web\n"
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "delete", "web", "-o", "json"])),
        "{}\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["vm", "resume", "web", "-o", "json"])))
            .expect("json");
    assert_eq!(json["status"], "VM_STATUS_RUNNING");
}

//! `kctl vm set` (UpdateVM) and the cloud-init options of `vm create`.

use super::common::texts::*;
use super::common::*;

#[test]
fn vm_set_sends_only_what_changes() {
    let server = Server::unix();
    let out = ok(&server.kctl(&[
        "vm",
        "set",
        "db",
        "--vcpu",
        "2",
        "--memory",
        "1G",
        "--no-autostart",
    ]));
    assert_eq!(
        out,
        "Updated VM db: STOPPED on node-1 (guest powered off)\n"
    );
    let sent = recorded(&server.records.updates);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].name, "db");
    assert_eq!(sent[0].vcpu, Some(2));
    assert_eq!(sent[0].memory_mb, Some(1024));
    assert_eq!(sent[0].autostart, Some(false));
    assert_eq!(sent[0].cloud_init, None, "cloud-init unchanged");

    // The alias, and JSON out: the VM as the server has it now.
    let json: serde_json::Value = serde_json::from_str(&ok(&server.kctl(&[
        "-o",
        "json",
        "vm",
        "update",
        "db",
        "--autostart",
    ])))
    .expect("json");
    assert_eq!(json["spec"]["autostart"], true);

    // Nothing to change: refused locally, nothing sent.
    let err = failed(&server.kctl(&["vm", "set", "db"]));
    assert!(err.starts_with("Error: nothing to change"), "{err}");
    assert_eq!(recorded(&server.records.updates).len(), 2);
}

#[test]
fn vm_set_refuses_a_resize_of_a_running_vm_with_kcoreds_words() {
    let server = Server::unix();
    let err = failed(&server.kctl(&["vm", "set", "web", "--memory", "1024"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            RESIZE_NEEDS_STOP.fill(&["web", "RUNNING", "web"])
        )
    );
    // The same size is no change: allowed while it runs, as cloud-init and autostart are.
    ok(&server.kctl(&["vm", "set", "web", "--memory", "512", "--autostart"]));
}

#[test]
fn vm_set_replaces_one_cloud_init_file_and_keeps_the_others() {
    let server = Server::unix();
    let meta = server.dir.path().join("meta.yaml");
    std::fs::write(&meta, "instance-id: db-2\n").expect("write");
    ok(&server.kctl(&[
        "vm",
        "set",
        "db",
        "--cloud-init-meta-data",
        meta.to_str().expect("utf8"),
    ]));
    let sent = recorded(&server.records.updates);
    let ci = sent[0].cloud_init.clone().expect("cloud-init sent");
    assert_eq!(ci.meta_data, "instance-id: db-2\n");
    assert_eq!(
        ci.user_data, "#cloud-config\npackages: [postgresql]\n",
        "kept"
    );
    assert_eq!(ci.network_config, "version: 2\nethernets: {}\n", "kept");

    // --no-cloud-init: every file empty, which removes the seed.
    let out = ok(&server.kctl(&["-o", "json", "vm", "set", "db", "--no-cloud-init"]));
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(json["spec"].get("cloud_init").is_none(), "{json}");
    let sent = recorded(&server.records.updates);
    assert_eq!(sent[1].cloud_init, Some(Default::default()));
    let usage = server.kctl(&["vm", "set", "db", "--no-cloud-init", "--hostname", "x"]);
    assert_eq!(usage.status.code(), Some(2), "a usage error");
    assert!(text(&usage.stderr).contains("cannot be used with"));
}

#[test]
fn vm_create_with_cloud_init_files_and_shorthands() {
    let server = Server::unix();
    let dir = server.dir.path();
    std::fs::write(dir.join("vmlinuz"), b"kernel").expect("kernel");
    let key = dir.join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAAC3Nza me@laptop\n").expect("key");
    let net = dir.join("net.yaml");
    std::fs::write(&net, "version: 2\n").expect("net");
    let create = |extra: &[&str]| {
        let mut args = vec![
            "-o",
            "json",
            "vm",
            "create",
            "ci1",
            "--vcpu",
            "1",
            "--memory",
            "128",
            "--kernel",
            "vmlinuz",
            "--start=false",
        ];
        args.extend_from_slice(extra);
        server
            .command(&args)
            .current_dir(dir)
            .output()
            .expect("kctl")
    };
    let out = ok(&create(&[
        "--ssh-key",
        "id.pub",
        "--hostname",
        "ci-one",
        "--cloud-init-network-config",
        "net.yaml",
    ]));
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    let ci = &json["spec"]["cloud_init"];
    assert_eq!(
        ci["user_data"],
        "#cloud-config\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3Nza me@laptop\"\n"
    );
    assert_eq!(ci["meta_data"], "local-hostname: ci-one\n");
    assert_eq!(ci["network_config"], "version: 2\n");
    // A user-data file and --ssh-key do not mix: the keys go in the file.
    std::fs::write(dir.join("user.yaml"), "#cloud-config\n").expect("user");
    let usage = create(&["--cloud-init-user-data", "user.yaml", "--ssh-key", "id.pub"]);
    assert_eq!(usage.status.code(), Some(2), "a usage error");
    assert!(text(&usage.stderr).contains("cannot be used with"));
    let err = failed(&create(&["--cloud-init-user-data", "missing.yaml"]));
    assert!(
        err.starts_with("Error: reading --cloud-init-user-data missing.yaml: No such file"),
        "{err}"
    );
}

#[test]
fn vm_get_says_whether_there_is_cloud_init() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["vm", "get", "db"]));
    let row = out
        .lines()
        .find_map(|l| l.strip_prefix("Cloud-init:"))
        .map(str::trim);
    assert_eq!(
        row,
        Some("user-data 37 B, network-config 25 B (seed disk cidata)"),
        "{out}"
    );
    assert!(!out.contains("Autostart"), "{out}");
    // Without: no row, as for every setting a VM does not have.
    let out = ok(&server.kctl(&["vm", "get", "web"]));
    assert!(!out.contains("Cloud-init"), "{out}");
}

//! Reconciliation on one host (all-in-one): the controller's store against what the node
//! has, on every heartbeat. A lost database is rebuilt from the node (its VMs adopted, the
//! running one untouched); a VM the node no longer has turns ERROR with the reason and can
//! be deleted.

use std::time::{Duration, Instant};

use kcore_tests::{Daemon, alive, guest};

const FAST: &[&str] = &["--heartbeat-interval", "0.5", "--node-timeout", "2"];

fn wait_for(d: &Daemon, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn define_idle(d: &Daemon, name: &str) -> String {
    let k = guest().kernel.to_str().expect("utf-8");
    let v = d
        .kctl(&[
            "-o",
            "json",
            "vm",
            "create",
            name,
            "--vcpu",
            "1",
            "--memory",
            "128",
            "--kernel",
            k,
            "--start=false",
        ])
        .expect_ok("define")
        .json();
    assert_eq!(v["status"], "VM_STATUS_STOPPED", "{v}");
    v["id"].as_str().expect("id").to_string()
}

#[test]
fn a_lost_database_is_rebuilt_from_the_node() {
    let mut d = Daemon::start_with(FAST);
    let a = d.create_guest("run-a", "", &[]);
    let id_a = a["id"].as_str().expect("id").to_string();
    let pid_a = a["pid"].as_u64().expect("pid");
    let id_b = define_idle(&d, "idle-b");

    // The daemon dies and its database is gone; the node's VM definitions are not.
    d.kill9();
    for f in ["controller.db", "controller.db-wal", "controller.db-shm"] {
        let _ = std::fs::remove_file(d.data_dir().join(f));
    }
    d.restart();
    wait_for(&d, "both VMs adopted", || {
        let v = d
            .kctl(&["-o", "json", "vm", "list"])
            .expect_ok("list")
            .json();
        v["vms"].as_array().is_some_and(|a| a.len() == 2)
    });
    let a = d.vm("run-a");
    assert_eq!(a["id"], id_a.as_str(), "{a}");
    assert_eq!(a["status"], "VM_STATUS_RUNNING", "{a}");
    assert_eq!(
        a["pid"].as_u64(),
        Some(pid_a),
        "the running VM was restarted: {a}"
    );
    assert!(alive(pid_a as u32));
    assert_eq!(a["spec"]["memory_mb"], 128, "{a}");
    let b = d.vm("idle-b");
    assert_eq!(b["id"], id_b.as_str(), "{b}");
    assert_eq!(b["status"], "VM_STATUS_STOPPED", "{b}");
    let events = d.kctl(&["events"]).expect_ok("events").stdout;
    assert!(
        events.contains("vm.adopted") && events.contains("run-a"),
        "{events}"
    );

    // Adopted VMs are managed as any other.
    let s = d
        .kctl(&["-o", "json", "vm", "stop", "run-a", "--force"])
        .expect_ok("stop adopted")
        .json();
    assert_eq!(s["status"], "VM_STATUS_STOPPED", "{s}");
    for n in ["run-a", "idle-b"] {
        d.kctl(&["vm", "delete", n]).expect_ok("delete adopted");
    }
    assert!(
        std::fs::read_dir(d.data_dir().join("vms")).is_ok_and(|mut e| e.next().is_none()),
        "VM definitions left on the node"
    );
}

#[test]
fn a_vm_the_node_no_longer_has_turns_error_and_back_and_can_be_deleted() {
    let mut d = Daemon::start_with(FAST);
    let id = define_idle(&d, "gone");
    let keep = define_idle(&d, "kept");
    let def = d.data_dir().join("vms").join(&id);
    let aside = d.data_dir().join("aside");
    let restart_with = |d: &mut Daemon, f: &dyn Fn()| {
        d.kill9();
        f();
        d.restart();
    };

    // The node lost the VM's definition: ERROR, with the reason.
    restart_with(&mut d, &|| {
        std::fs::rename(&def, &aside).expect("move definition away")
    });
    wait_for(&d, "gone to turn ERROR", || {
        d.vm("gone")["status"] == "VM_STATUS_ERROR"
    });
    let v = d.vm("gone");
    assert_eq!(
        v["status_reason"], "node node1 does not have this VM",
        "{v}"
    );
    let k = d.vm("kept");
    assert_eq!(k["status"], "VM_STATUS_STOPPED", "{k}");
    assert_eq!(k["id"], keep.as_str());

    // It comes back: so does the VM.
    restart_with(&mut d, &|| {
        std::fs::rename(&aside, &def).expect("move definition back")
    });
    wait_for(&d, "gone to be STOPPED again", || {
        d.vm("gone")["status"] == "VM_STATUS_STOPPED"
    });

    // Lost for good: ERROR again, and delete removes it.
    restart_with(&mut d, &|| {
        std::fs::remove_dir_all(&def).expect("remove definition")
    });
    wait_for(&d, "gone to turn ERROR again", || {
        d.vm("gone")["status"] == "VM_STATUS_ERROR"
    });
    d.kctl(&["vm", "delete", "gone"])
        .expect_ok("delete a lost VM");
    d.kctl(&["vm", "get", "gone"])
        .expect_err("get deleted", &["NotFound"]);
    d.kctl(&["vm", "delete", "kept"]).expect_ok("delete");
}

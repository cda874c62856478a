//! A cordoned node gets no new VMs (with the reason), keeps the ones it has, and takes new
//! ones again once uncordoned.

use kcore_tests::{Daemon, guest};

#[test]
fn a_cordoned_node_takes_no_new_vms() {
    let d = Daemon::start();
    let g = guest();
    let k = g.kernel.to_str().expect("utf8");
    let define = |name: &str, extra: &[&str]| {
        let mut a = vec![
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
        ];
        a.extend_from_slice(extra);
        d.kctl(&a)
    };
    define("before", &[]).expect_ok("define before cordon");
    let n = d
        .kctl(&["-o", "json", "node", "cordon", "node1"])
        .expect_ok("cordon")
        .json();
    assert_eq!(n["cordoned"], true, "{n}");
    let list = d.kctl(&["node", "list"]).expect_ok("node list");
    assert!(list.stdout.contains("READY,CORDONED"), "{}", list.stdout);
    define("placed", &[]).expect_err("no node fits", &["node1: cordoned", "ResourceExhausted"]);
    define("pinned", &["--node", "node1"])
        .expect_err("pinned", &["cordoned", "FailedPrecondition"]);
    // The VM already there is untouched and can still start.
    d.kctl(&["vm", "start", "before"])
        .expect_ok("start on a cordoned node");
    d.kctl(&["node", "cordon", "nosuch"])
        .expect_err("unknown node", &["NotFound"]);
    // Drain stops what runs there when no other node can take it (a single node: the
    // migration it tries first finds none), and keeps the node cordoned.
    let drained = d
        .kctl(&["node", "drain", "node1", "--force"])
        .expect_ok("drain");
    assert!(
        drained
            .stdout
            .contains("before: stopped (no node fits the VM (1 vCPU, 128 MiB): node1: cordoned)")
            && drained
                .stdout
                .contains("Drained node node1: cordoned, migrated 0, stopped 1"),
        "{}",
        drained.stdout
    );
    assert_eq!(d.vm("before")["status"], "VM_STATUS_STOPPED");
    d.kctl(&["node", "uncordon", "node1"]).expect_ok("uncordon");
    define("after", &[]).expect_ok("define after uncordon");
    let ev = d.kctl(&["-o", "json", "events"]).expect_ok("events");
    for kind in ["node.cordoned", "node.drained", "node.uncordoned"] {
        assert!(ev.stdout.contains(kind), "no {kind}: {}", ev.stdout);
    }
}

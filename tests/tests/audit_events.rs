//! Every change made through the API is an event naming who asked: each call kctl makes
//! here (as root on the local socket) shows up in kcored's events with
//! `by uid 0 (root) on the local socket` (an import: `for ...`). The daemon runs in a
//! network namespace of the test's own, for the NAT network.

use std::collections::BTreeSet;

use kcore_tests::{Daemon, NetNs};
use serde_json::Value;

#[test]
fn every_change_names_its_caller() {
    let ns = NetNs::create();
    let d = Daemon::start_in_netns(&ns);
    let ok = |args: &[&str]| {
        d.kctl(args).expect_ok(&format!("kctl {}", args.join(" ")));
    };

    d.create_guest("au", "", &[]);
    ok(&["vm", "pause", "au"]);
    ok(&["vm", "resume", "au"]);
    ok(&["vm", "reboot", "au"]);
    ok(&["vm", "stop", "au", "--timeout", "0"]);
    ok(&["vm", "set", "au", "--autostart"]);
    ok(&["vm", "disk", "attach", "au", "default:1"]);
    ok(&["vm", "start", "au"]);
    ok(&["vm", "stop", "au", "--force"]);
    ok(&["vm", "delete", "au"]);

    ok(&[
        "network",
        "create",
        "audit",
        "--mode",
        "nat",
        "--subnet",
        "10.99.0.0/24",
    ]);
    ok(&["network", "delete", "audit"]);
    ok(&["node", "cordon", "node1"]);
    ok(&["node", "uncordon", "node1"]);
    ok(&["node", "drain", "node1"]);
    ok(&["node", "uncordon", "node1"]);
    ok(&["node", "join-token"]);
    ok(&["volume", "create", "spare", "--size", "1"]);
    ok(&["volume", "delete", "spare"]);
    let image = d.dir.path().join("tiny.raw");
    std::fs::write(&image, vec![0u8; 1 << 20]).expect("write an image");
    ok(&["image", "import", "tiny", image.to_str().expect("utf-8")]);
    ok(&["image", "delete", "tiny"]);
    let certs = d.dir.path().join("certs");
    ok(&[
        "cert",
        "issue",
        "auditor",
        "--role",
        "viewer",
        "--out",
        certs.to_str().expect("utf-8"),
    ]);
    ok(&["cert", "revoke", "auditor"]);

    let out = d
        .kctl(&["-o", "json", "events", "--history", "1000"])
        .expect_ok("events")
        .stdout;
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let root = "uid 0 (root) on the local socket";
    let mut seen = BTreeSet::new();
    for e in &events {
        let kind = e["kind"].as_str().unwrap_or_default();
        let message = e["message"].as_str().unwrap_or_default();
        if message.contains(&format!("by {root}")) || message.contains(&format!("for {root}")) {
            seen.insert(kind.to_string());
        }
    }
    let expected = [
        "vm.created",
        "vm.pause",
        "vm.resume",
        "vm.reboot",
        "vm.stop",
        "vm.updated",
        "vm.disk",
        "vm.start",
        "vm.deleted",
        "network.created",
        "network.deleted",
        "node.cordoned",
        "node.uncordoned",
        "node.drained",
        "node.join_token",
        "volume.created",
        "volume.deleted",
        "image.import",
        "image.deleted",
        "cert.issued",
        "cert.revoked",
    ];
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|k| !seen.contains(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "no event naming the caller for {missing:?} in:\n{out}"
    );
    // kctl names no client: no "via".
    assert!(!out.contains(" via "), "{out}");
    // What the cluster does by itself names nobody.
    assert!(
        events
            .iter()
            .filter(|e| e["kind"] == "vm.status")
            .all(|e| !e["message"].as_str().unwrap_or_default().contains(root)),
        "{out}"
    );
}

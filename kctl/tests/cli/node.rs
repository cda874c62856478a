//! `kctl node`.

use super::common::texts::*;
use super::common::*;

#[test]
fn node_list() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["node", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "NAME    STATE  CPUS  MEMORY  VMS  ALLOC VCPU  ALLOC MEMORY  ACCEL  VERSION",
            "node-1  READY     8  16 GiB    2           2       512 MiB  kvm    0.1.0",
        ]
    );
    let lost = Server::unix_with(World::node_lost);
    let out = ok(&lost.kctl(&["node", "list"]));
    assert!(out.contains("\nnode-1  NOT_READY "), "{out}");
}

#[test]
fn node_get_cordon_drain() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["node", "get", "node-1"]));
    assert!(out.contains("State:          READY\n"), "{out}");
    assert!(
        out.contains("Address:        unix:///run/kcore/node.sock\n"),
        "{out}"
    );
    assert!(
        out.contains("Pools:          default (63.0 GiB free of 100.0 GiB), fast (1.5 TiB free"),
        "{out}"
    );
    let err = failed(&server.kctl(&["node", "get", "n9"]));
    assert_eq!(
        err,
        format!("Error: {} (NotFound)\n", NO_NODE.fill(&["n9"]))
    );
    assert_eq!(
        ok(&server.kctl(&["node", "cordon", "node-1"])),
        "Cordoned node node-1\n"
    );
    assert_eq!(
        ok(&server.kctl(&["node", "uncordon", "node-1"])),
        "Uncordoned node node-1\n"
    );
    let err = failed(&server.kctl(&["node", "cordon", "n9"]));
    assert_eq!(
        err,
        format!("Error: {} (NotFound)\n", NO_NODE.fill(&["n9"]))
    );
    assert_eq!(
        ok(&server.kctl(&["node", "drain", "node-1", "--stop"])),
        "web: stopped (asked to stop)\nDrained node node-1: cordoned, migrated 0, stopped 1\n"
    );
}

#[test]
fn join_token_and_remove() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["node", "join-token", "--ttl", "600"]));
    let token = out.strip_suffix('\n').expect("one line");
    assert_eq!(token.len(), 64, "{out:?}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{out:?}");
    // An all-in-one daemon's own node stays.
    let err = failed(&server.kctl(&["node", "remove", "node-1"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            OWN_NODE.fill(&["node-1"])
        )
    );
}

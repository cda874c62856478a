//! `kctl pool`.

use super::common::texts::*;
use super::common::*;

#[test]
fn pool_list() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["pool", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "NAME     NODE    TYPE  SOURCE                             SIZE      FREE  USED%",
            "default  node-1  dir   /var/lib/kcore/pools/default  100.0 GiB  63.0 GiB    37%",
            "fast     node-1  lvm   vg0/thin                        2.0 TiB   1.5 TiB    25%",
        ]
    );
    assert_eq!(ok(&server.kctl(&["pool", "ls", "--node", "node-1"])), out);
    let err = failed(&server.kctl(&["pool", "ls", "--node", "node-9"]));
    assert_eq!(
        err,
        format!("Error: {} (NotFound)\n", NO_NODE.fill(&["node-9"]))
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["pool", "list", "-o", "json"]))).expect("json");
    assert_eq!(json["pools"][0]["total_bytes"], (100 * GIB).to_string());
    assert_eq!(json["pools"][1]["type"], "lvm");
}

#[test]
fn pools_of_a_lost_node() {
    // Pools are the nodes' own: with no node ready, there are none to list.
    let server = Server::unix_with(World::node_lost);
    let out = ok(&server.kctl(&["pool", "list"]));
    assert_eq!(out.lines().count(), 1, "header only: {out}");
    let err = failed(&server.kctl(&["pool", "ls", "--node", "node-1"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (Unavailable)\n",
            NODE_NOT_READY.fill(&["node-1"])
        )
    );
}

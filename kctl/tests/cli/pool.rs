//! `kctl pool`.

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
    let out = ok(&server.kctl(&["pool", "ls", "--node", "node-9"]));
    assert_eq!(out.lines().count(), 1, "header only: {out}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["pool", "list", "-o", "json"]))).expect("json");
    assert_eq!(json["pools"][0]["total_bytes"], (100 * GIB).to_string());
    assert_eq!(json["pools"][1]["type"], "lvm");
}

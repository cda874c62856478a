//! `kctl volume`.

use super::common::*;

#[test]
fn volume_list() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["volume", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "NAME      NODE    POOL     VM   FORMAT   VIRTUAL     ACTUAL  BACKING",
            "web-root  node-1  default  web  qcow2   10.0 GiB  300.0 MiB  debian-12",
            "old-data  node-1  fast     -    raw     20.0 GiB   20.0 GiB  -",
        ]
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["volume", "ls", "-o", "json"]))).expect("json");
    assert_eq!(
        json["volumes"][0]["path"],
        "/var/lib/kcore/pools/default/web-root.qcow2"
    );
    assert_eq!(json["volumes"][1]["actual_size"], (20 * GIB).to_string());
}

#[test]
fn volume_delete() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["volume", "delete", "old-data", "--pool", "fast"]));
    assert_eq!(out, "Deleted volume old-data (pool fast)\n");
    let err = failed(&server.kctl(&["volume", "rm", "web-root"]));
    assert!(
        err.contains("is a disk of VM web: detach it first"),
        "{err}"
    );
}

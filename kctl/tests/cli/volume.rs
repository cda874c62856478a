//! `kctl volume`.

use super::common::texts::*;
use super::common::*;

#[test]
fn volume_list() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["volume", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "NAME       NODE    POOL     VM   FORMAT   VIRTUAL     ACTUAL  BACKING",
            "web-root   node-1  default  web  qcow2   10.0 GiB  300.0 MiB  debian-12",
            "old-data   node-1  fast     -    raw     20.0 GiB   20.0 GiB  -",
            "web-disk1  node-1  fast     web  raw      1.0 GiB    1.0 GiB  -",
        ]
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["volume", "ls", "-o", "json"]))).expect("json");
    assert_eq!(
        json["volumes"][0]["path"],
        "/var/lib/kcore/pools/default/volumes/web-root.qcow2"
    );
    assert_eq!(json["volumes"][1]["path"], "/dev/vg0/kcore-old-data");
    assert_eq!(json["volumes"][1]["actual_size"], (20 * GIB).to_string());
}

#[test]
fn volume_delete() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["volume", "delete", "old-data", "--pool", "fast"]));
    assert_eq!(out, "Deleted volume old-data (pool fast)\n");
    let err = failed(&server.kctl(&["volume", "rm", "web-root"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            VOLUME_IN_USE.fill(&["web-root", "default", "web", "web", "web-root"])
        )
    );
    let err = failed(&server.kctl(&["volume", "rm", "old-data"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (NotFound)\n",
            NO_VOLUME_ANYWHERE.fill(&["old-data", "default"])
        )
    );
    let deletes = recorded(&server.records.volume_deletes);
    assert_eq!(
        deletes
            .iter()
            .map(|d| (d.name.as_str(), d.pool.as_str(), d.node.as_str()))
            .collect::<Vec<_>>(),
        [
            ("old-data", "fast", ""),
            ("web-root", "default", ""),
            ("old-data", "default", "")
        ]
    );
}

#[test]
fn volume_create() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["volume", "create", "scratch", "--size", "4"]));
    assert_eq!(
        out,
        "Created volume scratch (pool default, 4.0 GiB) on node-1\n"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&server.kctl(&[
        "volume",
        "create",
        "fast-scratch",
        "--size",
        "2",
        "--pool",
        "fast",
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(json["path"], "/dev/vg0/kcore-fast-scratch");
    assert_eq!(json["format"], "raw");
    let err = failed(&server.kctl(&["volume", "create", "web-root", "--size", "1"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (AlreadyExists)\n",
            ALREADY_EXISTS.fill(&["volume", "web-root"])
        )
    );
    let err = failed(&server.kctl(&["volume", "create", "zero", "--size", "0"]));
    assert_eq!(
        err,
        format!("Error: {} (InvalidArgument)\n", NEW_VOLUME_SIZE.fill(&[]))
    );
}

//! `kctl vm disk attach|detach|resize`.

use super::common::texts::*;
use super::common::*;

#[test]
fn attach_detach_resize() {
    let server = Server::unix();
    assert_eq!(
        ok(&server.kctl(&["vm", "disk", "attach", "web", "fast:2"])),
        "Attached a disk to VM web: RUNNING on node-1\n"
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&server.kctl(&[
        "vm",
        "disk",
        "attach",
        "web",
        "fast:old-data",
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(
        json["disks"][2],
        serde_json::json!({"volume": "old-data", "pool": "fast", "device": "vdc",
            "size_bytes": (20 * GIB).to_string(), "format": "raw", "image": ""})
    );
    assert_eq!(json["storage_gb"], 31);
    let err = failed(&server.kctl(&["vm", "disk", "attach", "db", "default:web-root"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            VOLUME_USED.fill(&["web-root", "default", "web"])
        )
    );

    assert_eq!(
        ok(&server.kctl(&["vm", "disk", "detach", "web", "vdb"])),
        "Detached a disk from VM web: RUNNING on node-1\n"
    );
    let err = failed(&server.kctl(&["vm", "disk", "detach", "web", "vdz"]));
    let disks = [
        DISK_ENTRY.fill(&["a", "web-root"]),
        DISK_ENTRY.fill(&["b", "web-disk1"]),
    ];
    assert_eq!(
        err,
        format!(
            "Error: {} (NotFound)\n",
            NO_DISK.fill(&["vdz", &disks.join(", ")])
        )
    );

    assert_eq!(
        ok(&server.kctl(&["vm", "disk", "resize", "web", "vdb", "4"])),
        "Resized a disk of VM web: RUNNING on node-1\n"
    );
    let err = failed(&server.kctl(&["vm", "disk", "resize", "web", "web-root", "5"]));
    let (ten, five) = ((10 * GIB).to_string(), (5 * GIB).to_string());
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            SHRINK_REFUSED.fill(&["web-root", &ten, &five])
        )
    );
}

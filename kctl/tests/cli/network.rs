//! `kctl network` and `kctl vm nic`.

use super::common::texts::*;
use super::common::*;

#[test]
fn networks() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["network", "list"]));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "NAME     MODE  SUBNET        GATEWAY    BRIDGE       UPLINK  VMS  READY",
            "default  nat   10.77.0.0/24  10.77.0.1  kbr-default  -         1  1/1",
        ]
    );
    let create = |args: &[&str]| server.kctl(&[&["network", "create"], args].concat());
    let out = ok(&create(&[
        "office",
        "--mode",
        "nat",
        "--subnet",
        "10.78.0.0/24",
    ]));
    assert_eq!(out, "Created network office (nat, bridge kbr-office)\n");
    let out = ok(&create(&[
        "lab", "--mode", "bridge", "--bridge", "kbr-lab", "--uplink", "eth1",
    ]));
    assert_eq!(out, "Created network lab (bridge, bridge kbr-lab)\n");
    let err = failed(&create(&[
        "default",
        "--mode",
        "nat",
        "--subnet",
        "10.79.0.0/24",
    ]));
    assert_eq!(
        err,
        format!(
            "Error: {} (AlreadyExists)\n",
            NETWORK_EXISTS.fill(&["default"])
        )
    );
    let err = failed(&create(&[
        "wide",
        "--mode",
        "nat",
        "--subnet",
        "10.77.0.0/16",
    ]));
    assert_eq!(
        err,
        format!(
            "Error: {} (InvalidArgument)\n",
            SUBNET_OVERLAP.fill(&["10.77.0.0/16", "default", "10.77.0.0/24"])
        )
    );
    let err = failed(&create(&[
        "lab", "--mode", "bridge", "--bridge", "kbr-lab", "--uplink", "nope0",
    ]));
    assert_eq!(
        err,
        format!(
            "Error: {} (NotFound)\n",
            UPLINK_MISSING.fill(&["nope0", "node-1"])
        )
    );
    let err = failed(&server.kctl(&["network", "rm", "default"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            NETWORK_IN_USE.fill(&["default", "web"])
        )
    );
    let err = failed(&server.kctl(&["network", "get", "nope"]));
    assert_eq!(
        err,
        format!("Error: {} (NotFound)\n", NO_NETWORK.fill(&["nope"]))
    );
}

#[test]
fn nics() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["vm", "nic", "attach", "web", "default"]));
    assert!(out.starts_with("Attached a NIC to VM web\nID"), "{out}");
    assert!(
        out.contains("net0  default  52:54:00:3a:7c:01  virtio  ktap-4be1f09a3c  10.77.0.23"),
        "{out}"
    );
    assert!(
        out.contains("net1  default  52:54:00:6b:21:9f  virtio  ktap-0c3a95e7d1  -"),
        "{out}"
    );
    let err = failed(&server.kctl(&["vm", "nic", "attach", "web", "lan"]));
    assert_eq!(
        err,
        format!("Error: {} (NotFound)\n", NO_NETWORK_FOR_NIC.fill(&["lan"]))
    );
    let err = failed(&server.kctl(&["vm", "nic", "detach", "web", "net9"]));
    let nics = NIC_ENTRY.fill(&["net0", WEB_MAC, "default"]);
    assert_eq!(
        err,
        format!("Error: {} (NotFound)\n", NO_NIC.fill(&["net9", &nics]))
    );
    let out = ok(&server.kctl(&["vm", "nic", "detach", "web", "net0"]));
    assert!(out.starts_with("Detached a NIC from VM web\n"), "{out}");
}

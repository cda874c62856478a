//! `kctl network` and `kctl vm nic`.

use super::common::*;

#[test]
fn networks_and_nics() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["network", "list"]));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "NAME     MODE  SUBNET        GATEWAY    BRIDGE       UPLINK  VMS  READY",
            "default  nat   10.77.0.0/24  10.77.0.1  kbr-default  -         1  1/1",
        ]
    );
    let out = ok(&server.kctl(&[
        "network",
        "create",
        "default",
        "--mode",
        "nat",
        "--subnet",
        "10.77.0.0/24",
    ]));
    assert_eq!(out, "Created network default (nat, bridge kbr-default)\n");
    let err = failed(&server.kctl(&[
        "network", "create", "lab", "--mode", "bridge", "--bridge", "kbr-lab", "--uplink", "nope0",
    ]));
    assert!(err.contains("uplink \"nope0\" does not exist"), "{err}");
    let err = failed(&server.kctl(&["network", "rm", "default"]));
    assert!(err.contains("in use by VM(s) web"), "{err}");
    let out = ok(&server.kctl(&["vm", "nic", "attach", "web", "default"]));
    assert!(out.starts_with("Attached a NIC to VM web\nID"), "{out}");
    assert!(
        out.contains("net0  default  52:54:00:00:00:01  virtio  ktap-0123456789  -"),
        "{out}"
    );
    let err = failed(&server.kctl(&["vm", "nic", "detach", "web", "net9"]));
    assert!(err.contains("no NIC"), "{err}");
}

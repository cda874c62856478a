//! `kctl node`.

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
            "node-1  READY     8  16 GiB    1           2       512 MiB  kvm    0.1.0",
        ]
    );
}

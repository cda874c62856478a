//! CreateVolume end to end (`kctl volume create` against a real daemon): a new empty volume
//! is listed without a VM, a VM takes it as a disk by name, and a second create of the
//! name, a size of 0, a bad name or an unknown pool are refused with the server's message
//! before anything is made.

use kcore_tests::{Daemon, guest};

fn volumes(d: &Daemon) -> Vec<serde_json::Value> {
    d.kctl(&["-o", "json", "volume", "list"])
        .expect_ok("volume list")
        .json()["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn create_volume_makes_an_empty_volume_a_vm_can_take() {
    let d = Daemon::start();
    let v = d
        .kctl(&[
            "-o", "json", "volume", "create", "data1", "--size", "2", "--pool", "default",
        ])
        .expect_ok("volume create")
        .json();
    assert_eq!(v["name"], "data1", "{v}");
    assert_eq!(v["node"], "node1", "{v}");
    assert_eq!(v["pool"], "default", "{v}");
    assert_eq!(v["format"], "qcow2", "{v}");
    assert_eq!(v["virtual_size"], (2u64 << 30).to_string(), "{v}");
    let listed = volumes(&d);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "data1");
    assert_eq!(listed[0]["vm"], "", "no VM uses it yet: {listed:?}");

    for (args, needles) in [
        (
            &["data1", "--size", "1"][..],
            &["volume data1 already exists", "AlreadyExists"][..],
        ),
        (
            &["data2", "--size", "0"][..],
            &[
                "a new volume needs a size of at least 1 GiB",
                "InvalidArgument",
            ][..],
        ),
        (&["Bad_Name", "--size", "1"][..], &["InvalidArgument"][..]),
        (
            &["data3", "--pool", "nope", "--size", "1"][..],
            &["nope", "NotFound"][..],
        ),
    ] {
        let mut a = vec!["volume", "create"];
        a.extend_from_slice(args);
        let r = d.kctl(&a);
        assert!(!r.ok, "{args:?} was accepted: {}", r.stdout);
        for n in needles {
            assert!(r.stderr.contains(n), "{args:?}: {n:?} not in {}", r.stderr);
        }
    }
    assert_eq!(volumes(&d).len(), 1, "a refused create made nothing");

    // A VM takes it by name (defined, not started: no boot needed).
    let g = guest();
    d.kctl(&[
        "vm",
        "create",
        "v1",
        "--vcpu",
        "1",
        "--memory",
        "128",
        "--kernel",
        g.kernel.to_str().expect("utf8"),
        "--initrd",
        g.initrd.to_str().expect("utf8"),
        "--disk",
        "default:data1",
        "--start=false",
    ])
    .expect_ok("vm create with the volume");
    let listed = volumes(&d);
    assert_eq!(listed[0]["vm"], "v1", "{listed:?}");
    d.kctl(&["vm", "delete", "v1", "--keep-disks"])
        .expect_ok("vm delete --keep-disks");
    d.kctl(&["volume", "delete", "data1"])
        .expect_ok("volume delete");
    assert!(volumes(&d).is_empty());
}

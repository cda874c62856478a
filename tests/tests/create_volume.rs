//! CreateVolume end to end (grpcurl over the daemon's unix socket; kctl has no command for
//! it): a new empty volume is listed without a VM, a VM takes it as a disk by name, and a
//! second create of the name, a size of 0, a bad name or an unknown pool are refused with
//! the server's message before anything is made.

use std::process::Command;

use kcore_tests::{Daemon, Run, guest};

fn grpcurl(d: &Daemon, method: &str, body: &str) -> Run {
    let out = Command::new(kcore_tests::grpcurl())
        .args(["-plaintext", "-authority", "localhost", "-unix", "-d", body])
        .arg(d.socket())
        .arg(format!("kcore.v1.KcoreService/{method}"))
        .output()
        .expect("run grpcurl");
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

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
    let v = grpcurl(
        &d,
        "CreateVolume",
        r#"{"name":"data1","pool":"default","size_gb":2}"#,
    )
    .expect_ok("CreateVolume")
    .json();
    assert_eq!(v["name"], "data1", "{v}");
    assert_eq!(v["node"], "node1", "{v}");
    assert_eq!(v["pool"], "default", "{v}");
    assert_eq!(v["format"], "qcow2", "{v}");
    assert_eq!(v["virtualSize"], (2u64 << 30).to_string(), "{v}");
    let listed = volumes(&d);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "data1");
    assert_eq!(listed[0]["vm"], "", "no VM uses it yet: {listed:?}");

    for (body, needles) in [
        (
            r#"{"name":"data1","size_gb":1}"#,
            &["already exists", "AlreadyExists"][..],
        ),
        (
            r#"{"name":"data2","size_gb":0}"#,
            &["at least 1 GiB", "InvalidArgument"][..],
        ),
        (
            r#"{"name":"Bad_Name","size_gb":1}"#,
            &["InvalidArgument"][..],
        ),
        (
            r#"{"name":"data3","pool":"nope","size_gb":1}"#,
            &["nope"][..],
        ),
    ] {
        let r = grpcurl(&d, "CreateVolume", body);
        assert!(!r.ok, "{body} was accepted: {}", r.stdout);
        for n in needles {
            assert!(r.stderr.contains(n), "{body}: {n:?} not in {}", r.stderr);
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

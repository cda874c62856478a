//! Clients of other gRPC ecosystems on the local socket, with their default options:
//! grpcurl 1.8.6 (`scripts/fetch-grpcurl.sh`) without `-authority`, and Python's grpcio from
//! PyPI (`scripts/fetch-grpcio.sh`) on `unix:<socket>` through stubs generated here from
//! `proto/` with grpcio-tools. Both send the socket path (grpcio percent-encoded) as
//! `:authority`, which kcored's unix listener takes (kcored/src/uds_h2.rs); the daemon's
//! log shows the replacement, so these tests do exercise it. The caller kcored sees is
//! still the unix peer: root's import is recorded as root's, and a non-root member of
//! `kcore` (through setpriv) is refused a root-only file under its own uid.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kcore_tests::{Daemon, Run, guest, run_tool};
use serde_json::Value;

/// A VM defined (not started): the list both clients must return.
fn define_vm(d: &Daemon, name: &str) {
    let kernel = guest().kernel.to_str().expect("utf-8").to_string();
    d.kctl(&[
        "vm",
        "create",
        name,
        "--vcpu",
        "1",
        "--memory",
        "64",
        "--kernel",
        &kernel,
        "--start=false",
    ])
    .expect_ok("define a VM");
}

/// (id, name) of every VM, as kctl lists them.
fn kctl_vms(d: &Daemon) -> Vec<(String, String)> {
    let list = d
        .kctl(&["-o", "json", "vm", "list"])
        .expect_ok("vm list")
        .json();
    id_names(&list["vms"])
}

fn id_names(vms: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vms
        .as_array()
        .unwrap_or_else(|| panic!("not a list of VMs: {vms}"))
        .iter()
        .map(|vm| {
            (
                vm["id"].as_str().expect("id").to_string(),
                vm["name"].as_str().expect("name").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Run `cmd`, failing the test if it is not done within a minute.
fn run_bounded(mut cmd: Command) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still ran after a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The daemon's log says the client's `:authority` (the socket path, in some form) was
/// replaced: the client did send one h2 refuses.
fn assert_authority_replaced(d: &Daemon, path_in_it: &str) {
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("replaced :authority") && l.contains(path_in_it)),
        "no replaced :authority naming {path_in_it:?} in the daemon's log:\n{log}"
    );
}

#[test]
fn grpcurl_without_authority_on_the_unix_socket() {
    let grpcurl = kcore_tests::grpcurl();
    let d = Daemon::start();
    define_vm(&d, "web");
    define_vm(&d, "db");
    let socket = d.socket();
    let socket = socket.to_str().expect("utf-8");
    let grpcurl = |args: &[&str]| {
        let mut c = Command::new(&grpcurl);
        c.args(["-plaintext", "-unix"]).args(args);
        let run = run_bounded(c);
        assert!(
            run.ok,
            "grpcurl {args:?} failed:\n{}{}",
            run.stdout, run.stderr
        );
        run.stdout
    };

    let services = grpcurl(&[socket, "list"]);
    for s in ["kcore.v1.KcoreService", "grpc.health.v1.Health"] {
        assert!(
            services.lines().any(|l| l == s),
            "{s} not listed:\n{services}"
        );
    }
    let out = grpcurl(&["-d", "{}", socket, "kcore.v1.KcoreService/ListVMs"]);
    let reply: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(id_names(&reply["vms"]), kctl_vms(&d));
    assert_eq!(kctl_vms(&d).len(), 2);
    let out = grpcurl(&[socket, "grpc.health.v1.Health/Check"]);
    assert!(out.contains("\"SERVING\""), "{out}");
    // grpcurl sends the path itself.
    assert_authority_replaced(&d, socket);
}

/// The Python client: `list` prints ListVMs, `import NAME PATH` streams ImportImage; a
/// gRPC error is printed as its code and details. grpcio's version is in every answer.
const CLIENT_PY: &str = r#"
import json
import sys

import grpc
from google.protobuf import json_format

from kcore.v1 import kcore_pb2, kcore_pb2_grpc


def as_dict(m):
    return json_format.MessageToDict(m, preserving_proto_field_name=True)


target, what = sys.argv[1], sys.argv[2]
out = {}
# Default channel options: no grpc.default_authority.
with grpc.insecure_channel(target) as channel:
    stub = kcore_pb2_grpc.KcoreServiceStub(channel)
    try:
        if what == "list":
            out = as_dict(stub.ListVMs(kcore_pb2.ListVMsRequest(), timeout=30))
        elif what == "import":
            req = kcore_pb2.ImportImageRequest(name=sys.argv[3], source=sys.argv[4])
            out = {"progress": [as_dict(p) for p in stub.ImportImage(req, timeout=60)]}
        else:
            sys.exit(f"unknown command {what}")
    except grpc.RpcError as e:
        out = {"code": e.code().name, "details": e.details()}
out["grpcio"] = grpc.__version__
print(json.dumps(out))
"#;

/// Generate the stubs from proto/ with grpcio-tools into `dir` and write the client.
fn python_client(py: &Path, dir: &Path) -> PathBuf {
    let proto = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .join("proto");
    let mut c = Command::new(py);
    c.args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(format!("--python_out={}", dir.display()))
        .arg(format!("--grpc_python_out={}", dir.display()))
        .arg(proto.join("kcore/v1/kcore.proto"));
    let run = run_bounded(c);
    assert!(
        run.ok,
        "grpc_tools.protoc failed:\n{}{}",
        run.stdout, run.stderr
    );
    let client = dir.join("client.py");
    std::fs::write(&client, CLIENT_PY).expect("write client.py");
    // Readable by the non-root user too.
    for p in [dir.to_path_buf(), dir.join("kcore"), dir.join("kcore/v1")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    for f in [
        "client.py",
        "kcore/v1/kcore_pb2.py",
        "kcore/v1/kcore_pb2_grpc.py",
    ] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    client
}

/// Run the client; `as_user` (uid, gid, supplementary gid) through setpriv.
fn python(py: &Path, client: &Path, as_user: Option<(u32, u32, u32)>, args: &[&str]) -> Value {
    let mut c = match as_user {
        Some((uid, gid, group)) => {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                &uid.to_string(),
                "--regid",
                &gid.to_string(),
                "--groups",
                &group.to_string(),
                "--",
            ])
            .arg(py);
            c
        }
        None => Command::new(py),
    };
    c.arg(client)
        .args(args)
        .current_dir(client.parent().expect("dir"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("HOME", "/nonexistent");
    let run = run_bounded(c);
    assert!(
        run.ok,
        "client.py {args:?} failed:\n{}{}",
        run.stdout, run.stderr
    );
    let v: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr));
    // PyPI's grpcio, new enough to send the socket path as :authority (>= 1.57).
    let version = v["grpcio"].as_str().expect("grpcio version");
    let minor: u32 = version
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("grpcio {version}"));
    assert!(version.starts_with("1.") && minor >= 57, "grpcio {version}");
    v
}

/// A gid by group name.
fn gid_of(group: &str) -> u32 {
    run_tool("getent", &["group", group])
        .expect_ok("getent group")
        .stdout
        .split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .unwrap_or_else(|| panic!("no gid for {group}"))
}

#[test]
fn grpcio_with_default_options_on_the_unix_socket() {
    let py = kcore_tests::grpcio_python();
    // The socket is root:kcore 0660 when the group exists as the daemon starts.
    run_tool("groupadd", &["-f", "kcore"]).expect_ok("groupadd -f kcore");
    let kcore = gid_of("kcore");
    let d = Daemon::start();
    define_vm(&d, "web");
    define_vm(&d, "db");
    let gen_dir = tempfile::Builder::new()
        .prefix("kcore-grpcio-")
        .tempdir()
        .expect("tempdir");
    let client = python_client(&py, gen_dir.path());
    let target = format!("unix:{}", d.socket().display());

    // As root: the real list.
    let reply = python(&py, &client, None, &[&target, "list"]);
    assert!(reply.get("code").is_none(), "ListVMs failed: {reply}");
    assert_eq!(id_names(&reply["vms"]), kctl_vms(&d), "{reply}");
    assert_eq!(kctl_vms(&d).len(), 2);
    // grpcio percent-encodes the path: its last component is as it is.
    assert_authority_replaced(&d, "kcore.sock");

    // A server stream (ImportImage), recorded with the caller: root on the local socket.
    let image = gen_dir.path().join("disk.raw");
    std::fs::write(&image, vec![0u8; 1 << 20]).expect("write the image");
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let image_s = image.to_str().expect("utf-8");
    let reply = python(&py, &client, None, &[&target, "import", "tiny", image_s]);
    assert!(reply.get("code").is_none(), "ImportImage failed: {reply}");
    let last = reply["progress"]
        .as_array()
        .and_then(|p| p.last())
        .unwrap_or_else(|| panic!("no progress: {reply}"));
    assert_eq!(last["image"]["name"], "tiny", "{reply}");
    let events = d.kctl(&["events"]).expect_ok("events").stdout;
    assert!(
        events.contains("importing tiny on node1 for uid 0 (root) on the local socket"),
        "{events}"
    );

    // As nobody (in group kcore): the same list, and the root-only file is refused by the
    // rule that follows the caller's uid.
    let nobody = (65534, 65534, kcore);
    let reply = python(&py, &client, Some(nobody), &[&target, "list"]);
    assert!(
        reply.get("code").is_none(),
        "ListVMs as nobody failed: {reply}"
    );
    assert_eq!(id_names(&reply["vms"]), kctl_vms(&d), "{reply}");
    let reply = python(
        &py,
        &client,
        Some(nobody),
        &[&target, "import", "not-mine", image_s],
    );
    assert_eq!(reply["code"], "PERMISSION_DENIED", "{reply}");
    let details = reply["details"].as_str().expect("details");
    assert!(
        details.contains("uid 65534") && details.contains("on the local socket may not read it"),
        "{details}"
    );
}

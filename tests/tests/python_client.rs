//! The Python client in clients/python, built as pip builds it (its gRPC modules generated
//! from proto/ by grpcio-tools at build time) with PyPI's grpcio and grpcio-tools
//! (`scripts/fetch-grpcio.sh`), then run with grpcio's default channel options against a
//! real kcored: over the unix socket (found as kctl finds it) and over mutual TLS with the
//! admin certificate: list, create, get, follow events, delete; without a client
//! certificate kcored refuses it. Its unit tests and its README's example run too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kcore_tests::{Daemon, Run, free_port, guest};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

/// Copy a directory tree (files and directories only), leaving out build output.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n == "build" || n == "dist" || n.ends_with(".egg-info") || n == "__pycache__" {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else if !n.ends_with("_pb2.py") && !n.ends_with("_pb2_grpc.py") && !n.ends_with(".pyi") {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

/// Run `cmd` to its end (at most 3 minutes).
fn run(mut cmd: Command) -> Run {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    kcore_tests::wait_bounded(child, Duration::from_secs(180), &format!("{cmd:?}"))
}

/// The package built and installed into `<dir>/site` from a copy of the repository's
/// clients/python and proto/ (the build writes next to its sources), offline, with the
/// build requirements the venv has.
fn build(py: &Path, dir: &Path) -> PathBuf {
    let src = dir.join("src");
    copy_tree(&repo().join("clients/python"), &src.join("clients/python"));
    copy_tree(&repo().join("proto"), &src.join("proto"));
    let site = dir.join("site");
    let mut c = Command::new(py);
    c.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-build-isolation",
        "--no-deps",
        "--no-index",
        "--target",
    ])
    .arg(&site)
    .arg(src.join("clients/python"));
    run(c).expect_ok("pip install clients/python");
    for f in ["kcore_pb2.py", "kcore_pb2.pyi", "kcore_pb2_grpc.py"] {
        assert!(
            site.join("kcore/v1").join(f).is_file(),
            "the build did not generate kcore/v1/{f}"
        );
    }
    site
}

/// `python ARGS` with the package on the path, the environment cleared of kcore's
/// settings but for `env`.
fn python(py: &Path, site: &Path, env: &[(&str, &Path)], args: &[&str]) -> Run {
    let mut c = Command::new(py);
    c.args(args)
        .current_dir(site)
        .env("PYTHONPATH", site)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("HOME", "/nonexistent")
        .env_remove("XDG_CONFIG_HOME");
    for var in [
        "KCORE_ENDPOINT",
        "KCORE_SOCKET",
        "KCORE_CA_CERT",
        "KCORE_CLIENT_CERT",
        "KCORE_CLIENT_KEY",
    ] {
        c.env_remove(var);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    run(c)
}

fn scenario(py: &Path, site: &Path, env: &[(&str, &Path)], args: &[&str]) -> Value {
    let script = repo().join("tests/python/kcore_client_scenario.py");
    let mut all = vec![script.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    let r = python(py, site, env, &all).expect_ok("kcore_client_scenario.py");
    let v: Value = serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {}{}", r.stdout, r.stderr));
    assert_eq!(v["kcore"], "0.1.0", "{v}");
    v
}

/// Check a `life` run: created, got, the missing VM's NOT_FOUND, deleted, and the events
/// followed live, the changes naming the Python client.
fn check_life(v: &Value, name: &str, caller: &str) {
    assert_eq!(v["before"], serde_json::json!([]), "{v}");
    assert_eq!(v["created"]["name"], name, "{v}");
    assert_eq!(v["created"]["status"], "VM_STATUS_RUNNING", "{v}");
    assert_eq!(v["got"]["same_id"], true, "{v}");
    assert_eq!(v["got"]["memory_mb"], 128, "{v}");
    assert_eq!(v["missing"]["code"], "NOT_FOUND", "{v}");
    assert_eq!(v["missing"]["details"], "no VM named \"no-such-vm\"", "{v}");
    assert_eq!(v["after"], serde_json::json!([]), "{v}");
    let events = v["events"].as_array().expect("events");
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e["vm"] == name)
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for k in ["vm.created", "vm.status", "vm.deleted"] {
        assert!(kinds.contains(&k), "no {k} among {events:?}");
    }
    let via = format!("{caller} via kcore-python/0.1.0");
    for k in ["vm.created", "vm.deleted"] {
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == k && e["message"].as_str().is_some_and(|m| m.contains(&via))),
            "no {k} with {via:?} among {events:?}"
        );
    }
}

#[test]
fn the_generated_python_client_over_the_socket_and_mutual_tls() {
    let py = kcore_tests::grpcio_python();
    let g = guest();
    let guest_dir = g.kernel.parent().expect("guest dir");
    let listen = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(&[
        "--listen",
        &listen,
        "--import-dir",
        guest_dir.to_str().expect("utf-8"),
    ]);
    let site = build(&py, &d.dir.path().join("python"));
    let kernel = g.kernel.to_str().expect("utf-8");
    let initrd = g.initrd.to_str().expect("utf-8");

    // The package's own unit tests (endpoint resolution).
    let tests = d.dir.path().join("python/src/clients/python/tests");
    let t = tests.to_str().expect("utf-8");
    let r = python(
        &py,
        &site,
        &[],
        &["-m", "unittest", "discover", "-s", t, "-t", t],
    );
    assert!(
        r.ok,
        "the package's unit tests failed:\n{}{}",
        r.stdout, r.stderr
    );

    // The unix socket, found as kctl finds it ($KCORE_SOCKET, no endpoint given).
    let socket = d.socket();
    let v = scenario(
        &py,
        &site,
        &[("KCORE_SOCKET", &socket)],
        &["life", "py-unix", kernel, initrd],
    );
    assert_eq!(v["source"], "local socket", "{v}");
    check_life(&v, "py-unix", "by uid 0 (root) on the local socket");

    // Mutual TLS with the admin certificate, from the KCORE_* variables.
    let pki = d.data_dir().join("pki");
    let endpoint = PathBuf::from(format!("https://{listen}"));
    let (ca, cert, key) = (
        pki.join("ca.crt"),
        pki.join("admin.crt"),
        pki.join("admin.key"),
    );
    let tls = [
        ("KCORE_ENDPOINT", endpoint.as_path()),
        ("KCORE_CA_CERT", ca.as_path()),
        ("KCORE_CLIENT_CERT", cert.as_path()),
        ("KCORE_CLIENT_KEY", key.as_path()),
    ];
    let v = scenario(&py, &site, &tls, &["life", "py-tls", kernel, initrd]);
    assert_eq!(v["source"], "KCORE_ENDPOINT", "{v}");
    check_life(&v, "py-tls", "(admin certificate)");

    // Without a client certificate, kcored refuses the call.
    let v = scenario(&py, &site, &tls[..2], &["list"]);
    assert_eq!(v["code"], "UNAUTHENTICATED", "{v}");
    assert!(
        v["details"]
            .as_str()
            .is_some_and(|d| d.contains("client certificate")),
        "{v}"
    );

    // The README's example, as written, over the socket.
    let readme = std::fs::read_to_string(repo().join("clients/python/README.md")).expect("README");
    let example = readme
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a python block in clients/python/README.md");
    let file = d.dir.path().join("example.py");
    std::fs::write(&file, example).expect("write example.py");
    let r = python(
        &py,
        &site,
        &[("KCORE_SOCKET", &socket)],
        &[file.to_str().expect("utf-8"), kernel, initrd],
    )
    .expect_ok("the README's example");
    assert!(
        r.stdout
            .contains("created hello VM_STATUS_RUNNING on node1")
            && r.stdout.contains("vm.guest_ready"),
        "{}",
        r.stdout
    );
}

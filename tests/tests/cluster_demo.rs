//! The README's cluster walk-through, `scripts/cluster-demo.sh`, works as written: a
//! controller and three nodes on 127.0.0.1:9090-9093, a user with their own certificate,
//! three VMs spread over the three nodes; `cluster-demo.sh stop` leaves nothing running.
//! It runs the binaries of this build (put first on PATH).

use std::path::Path;
use std::process::Command;

use kcore_tests::{Run, bin, guest, process_with};

#[test]
fn the_readme_cluster_demo_runs_and_stops() {
    guest();
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join("demo");
    let bins = bin("kcored").parent().expect("bin dir").to_path_buf();
    let path = format!(
        "{}:{}",
        bins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster-demo.sh");
    let run = |args: &[&str]| {
        let out = Command::new("bash")
            .arg(&script)
            .args(args)
            .env("PATH", &path)
            .env("KCORE_DEMO_DIR", &demo)
            .env_remove("KCORE_ENDPOINT")
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .expect("run cluster-demo.sh");
        Run {
            ok: out.status.success(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let out = run(&[]);
    let logs = || {
        ["ctl", "n1", "n2", "n3"]
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(demo.join(format!("{n}.log")));
                format!("{n}:\n{}", log.unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    if !out.ok {
        let _ = run(&["stop"]);
        panic!(
            "cluster-demo.sh failed: {}\n{}\n{}",
            out.stderr,
            out.stdout,
            logs()
        );
    }
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for (vm, node) in [("web1", "n1"), ("web2", "n2"), ("web3", "n3")] {
        assert!(
            lines
                .iter()
                .any(|l| l.len() > 2 && l[0] == vm && l[1] == "RUNNING" && l[2] == node),
            "{vm} not RUNNING on {node}:\n{}",
            out.stdout
        );
    }
    let ready = lines
        .iter()
        .filter(|l| l.len() > 1 && l[0].starts_with('n') && l[1] == "READY")
        .count();
    assert!(ready >= 3, "nodes not READY:\n{}", out.stdout);
    assert!(
        demo.join("ops/kcore/ops.crt").is_file() && demo.join("ops/kcore/config.toml").is_file(),
        "no user certificate and config"
    );

    let stopped = run(&["stop"]);
    assert!(stopped.ok, "stop: {}", stopped.stderr);
    assert!(!demo.exists(), "stop left {}", demo.display());
    let needle = demo.to_string_lossy().into_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Some(pid) = process_with(&needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} of the demo still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

//! Helpers of the dashboard's and the metrics' tests: a running `kcore-dashboard`, Debian's
//! headless chromium loading a page (its DOM after load, and a screenshot), curl, and
//! PyPI's prometheus-client parsing kcored's `/metrics`. Any of them may run inside a
//! test's network namespace (where the daemon's TCP listeners are). A missing tool fails
//! the test naming what to install (`scripts/deps.sh --tests` installs them all).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Daemon, NetNs, Run, bin, repo_root, which};

/// `ip netns exec NS` before `program`, when a namespace is given.
fn command(netns: Option<&NetNs>, program: &Path) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn tool(name: &str, package: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!("{name} not found: apt-get install {package} (scripts/deps.sh --tests does)")
    })
}

/// A viewer certificate (and the CA) from the daemon, as the KCORE_* variables of a
/// dashboard that reaches the daemon's TLS listener on 127.0.0.1:`api_port`.
pub fn viewer_env(d: &Daemon, name: &str, api_port: u16) -> Vec<(&'static str, String)> {
    let out = d.dir.path().join(format!("cert-{name}"));
    issue_viewer(d, name, &out);
    dashboard_env(api_port, &out, Some(name))
}

/// Issue the viewer certificate `name` into `dir` (with the CA's, ca.crt).
pub fn issue_viewer(d: &Daemon, name: &str, dir: &Path) {
    d.kctl(&[
        "cert",
        "issue",
        name,
        "--role",
        "viewer",
        "--out",
        dir.to_str().expect("utf8"),
    ])
    .expect_ok(&format!("cert issue {name}"));
}

/// The KCORE_* variables of a dashboard that reaches the daemon's TLS listener on
/// 127.0.0.1:`api_port`, trusting `dir`/ca.crt and, with `name`, presenting the client
/// certificate `dir`/`name`.crt (without: no client certificate).
pub fn dashboard_env(api_port: u16, dir: &Path, name: Option<&str>) -> Vec<(&'static str, String)> {
    let mut e = vec![
        ("KCORE_ENDPOINT", format!("https://127.0.0.1:{api_port}")),
        ("KCORE_CA_CERT", dir.join("ca.crt").display().to_string()),
    ];
    if let Some(n) = name {
        e.push((
            "KCORE_CLIENT_CERT",
            dir.join(format!("{n}.crt")).display().to_string(),
        ));
        e.push((
            "KCORE_CLIENT_KEY",
            dir.join(format!("{n}.key")).display().to_string(),
        ));
    }
    e
}

/// A running `kcore-dashboard` on 127.0.0.1:`port` (in `netns`, if given). Killed when
/// dropped.
#[derive(Debug)]
pub struct Dashboard {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Dashboard {
    /// Start it with `env` (KCORE_* variables) and wait until it serves; `dir` gets its log.
    pub fn start(
        netns: Option<&NetNs>,
        port: u16,
        env: &[(&str, String)],
        dir: &Path,
    ) -> Dashboard {
        let log = dir.join(format!("dashboard-{port}.log"));
        let out = std::fs::File::create(&log).expect("dashboard log");
        let mut cmd = command(netns, &bin("kcore-dashboard"));
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("KCORE_ENDPOINT")
            .env_remove("KCORE_SOCKET")
            .env("HOME", dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn kcore-dashboard");
        let mut d = Dashboard { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if curl(
                netns,
                &["-s", "-o", "/dev/null", &d.url("/static/dashboard.css")],
            )
            .ok
            {
                break;
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("kcore-dashboard exited ({st}):\n{}", d.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "kcore-dashboard did not come up:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// curl ARGS (in `netns`, if given).
pub fn curl(netns: Option<&NetNs>, args: &[&str]) -> Run {
    let out = command(netns, &tool("curl", "curl"))
        .args(args)
        .output()
        .expect("run curl");
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An HTTP request with curl: (status, body).
pub fn http(netns: Option<&NetNs>, method: &str, url: &str) -> (u16, String) {
    let r = curl(
        netns,
        &[
            "-s",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            "--max-time",
            "30",
            url,
        ],
    );
    assert!(r.ok, "curl -X {method} {url}: {}", r.stderr);
    let (body, code) = r.stdout.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status"), body.to_string())
}

/// Where the screenshots go: `target/tmp/dashboard-screenshots/` (CARGO_TARGET_TMPDIR),
/// kept after the tests.
pub fn screenshot_dir() -> PathBuf {
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/tmp"));
    let dir = base.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Debian's headless chromium.
#[derive(Debug)]
pub struct Browser<'a> {
    netns: Option<&'a NetNs>,
    profile: tempfile::TempDir,
}

impl<'a> Browser<'a> {
    pub fn new(netns: Option<&'a NetNs>) -> Browser<'a> {
        tool("chromium", "chromium");
        Browser {
            netns,
            profile: tempfile::tempdir().expect("chromium profile"),
        }
    }

    /// Load `url` at `width` x `height`: the DOM after the page loaded (scripts ran), and a
    /// screenshot in [`screenshot_dir`]`/<shot>.png`.
    pub fn load(&self, url: &str, shot: &str, (width, height): (u32, u32)) -> String {
        let png = screenshot_dir().join(format!("{shot}.png"));
        let _ = std::fs::remove_file(&png);
        let out = command(self.netns, &tool("chromium", "chromium"))
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--screenshot={}", png.display()))
            .arg("--dump-dom")
            .arg(url)
            .env("HOME", self.profile.path())
            .stdin(Stdio::null())
            .output()
            .expect("run chromium");
        let dom = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && dom.contains("</html>"),
            "chromium {url}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            png.metadata().map(|m| m.len() > 1000).unwrap_or(false),
            "no screenshot of {url} at {}",
            png.display()
        );
        dom
    }
}

/// The python of the venv with PyPI's prometheus-client (`scripts/fetch-prometheus-client.sh`).
pub fn prometheus_python() -> PathBuf {
    let dir =
        std::env::var("KCORE_TOOLS_DIR").unwrap_or_else(|_| "/var/cache/kcore/tools".to_string());
    let venv = Path::new(&dir).join("prometheus-venv");
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/fetch-prometheus-client.sh"))
        .arg(&venv)
        .output()
        .expect("run scripts/fetch-prometheus-client.sh");
    assert!(
        out.status.success(),
        "scripts/fetch-prometheus-client.sh failed: it needs Debian's python3 with venv \
         (apt-get install python3-venv) and PyPI access, and {dir} writable (or set \
         KCORE_TOOLS_DIR):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    venv.join("bin/python3")
}

/// Scrape `url` and parse it with prometheus-client (`format`: prometheus or
/// openmetrics): `{"content_type": .., "families": {name: {"type", "samples"}}}`.
pub fn scrape(netns: Option<&NetNs>, url: &str, format: &str) -> Value {
    let py = prometheus_python();
    let script = repo_root().join("tests/python/parse_metrics.py");
    let out = command(netns, &py)
        .arg(&script)
        .args([url, format])
        .output()
        .expect("run parse_metrics.py");
    assert!(
        out.status.success(),
        "prometheus-client could not parse {url} ({format}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parse_metrics.py prints JSON")
}

/// The samples named `sample` whose labels include `labels`.
pub fn samples<'v>(
    m: &'v Value,
    family: &str,
    sample: &str,
    labels: &[(&str, &str)],
) -> Vec<&'v Value> {
    m["families"][family]["samples"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|s| s[0] == sample)
                .filter(|s| labels.iter().all(|(k, v)| s[1][*k] == *v))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of the one sample named `sample` with `labels` (panics when there is none).
pub fn value(m: &Value, family: &str, sample: &str, labels: &[(&str, &str)]) -> f64 {
    let s = samples(m, family, sample, labels);
    assert!(
        !s.is_empty(),
        "no {sample}{labels:?} in {family}: {}",
        m["families"][family]
    );
    s[0][2].as_f64().expect("a number")
}

/// Wait until `f` holds, or panic with `what`.
pub fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What a write through the API would change: the VMs (name, status, id), the networks'
/// listing and the certificates, as one string to compare.
pub fn state_snapshot(d: &Daemon) -> String {
    let vms = d
        .kctl(&["-o", "json", "vm", "list"])
        .expect_ok("vm list")
        .json();
    let mut rows: Vec<String> = vms["vms"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| format!("{} {} {}", v["name"], v["status"], v["id"]))
        .collect();
    rows.sort();
    let nets = d
        .kctl(&["-o", "json", "network", "list"])
        .expect_ok("network list")
        .stdout;
    let certs = d
        .kctl(&["-o", "json", "cert", "list"])
        .expect_ok("cert list")
        .stdout;
    format!("{rows:?}\n{}\n{certs}", nets.len())
}

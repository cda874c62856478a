//! `kcore-bench-dashboard`: how long the dashboard takes to list a cluster of 1,000 VMs.
//!
//! A `kcored all-in-one` (TCG, `--cpus 1000 --memory 1000000`) in a temp dir gets `--vms`
//! VMs with `CreateVM { no_start: true }` (defined, not booted); a `kcore-dashboard` is
//! started on a free port against its unix socket; then each page below is fetched
//! `--calls` times over HTTP/1.1 (a new connection each, the whole body read), after one
//! warm-up fetch, and the median, p90 and worst times are printed. The VM list page is
//! checked to hold every VM. The figure includes everything a browser waits for: the
//! dashboard's ListVMs and ListNodes calls to kcored, rendering, and the transfer.
//! When Debian's `chromium` is installed, the VM list and a small page (the nodes) are
//! also loaded `--browser-runs` times by headless chromium (`--dump-dom`, process start
//! to the DOM after load): the difference is what a browser adds for the 1,000 rows.
//!
//! Run: `scripts/bench-dashboard.sh` (release build).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use kcore_bench::{
    DaemonGuard, dial, free_port, kcored_binary, median, ms_since, percentile, spawn_kcored, tail,
    wait_for_socket,
};
use kcore_proto::v1 as pb;
use kcore_proto::v1::kcore_service_client::KcoreServiceClient;

#[derive(Parser, Debug)]
#[command(about = "Time the dashboard's pages with many VMs in the store")]
struct Args {
    /// VMs in the store.
    #[arg(long, default_value_t = 1000)]
    vms: usize,
    /// Fetches of each page.
    #[arg(long, default_value_t = 20)]
    calls: usize,
    /// Creates at a time while filling the store.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value = "/var/cache/kcore/test-guest/vmlinuz")]
    kernel: PathBuf,
    #[arg(long, default_value = "/var/cache/kcore/test-guest/initrd.img")]
    initrd: PathBuf,
    /// kcored (default: next to this binary; kcore-dashboard too).
    #[arg(long)]
    kcored: Option<PathBuf>,
    /// Loads of each page by headless chromium (0: none; skipped without chromium).
    #[arg(long, default_value_t = 5)]
    browser_runs: usize,
}

/// Wall time of headless chromium loading `url` to its DOM, ms; checks `needle` is in it.
fn chromium_load(url: &str, profile: &std::path::Path, needle: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .context("run chromium")?;
    let ms = ms_since(t);
    let dom = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !dom.contains(needle) {
        bail!("chromium {url}: {} (no {needle:?} in the DOM)", out.status);
    }
    Ok(ms)
}

/// GET `path` from 127.0.0.1:`port`; the status code and the body's length.
fn get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    Ok((code, text))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kcored = kcored_binary(args.kcored.as_deref())?;
    let dashboard = kcored.with_file_name("kcore-dashboard");
    let dir = tempfile::Builder::new()
        .prefix("kcore-bench-dashboard-")
        .tempdir()?;
    let run_dir = dir.path().join("run");
    let log = dir.path().join("kcored.log");
    let sock = run_dir.join("kcore.sock");
    let mut argv: Vec<OsString> = [
        "all-in-one",
        "--accel",
        "tcg",
        "--node-name",
        "bench",
        "--cpus",
        "1000",
        "--memory",
        "1000000",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    argv.extend([
        "--data-dir".into(),
        dir.path().join("data").into(),
        "--run-dir".into(),
        run_dir.clone().into(),
    ]);
    let mut daemon = spawn_kcored(&kcored, &argv, &log, "warn")?;
    wait_for_socket(&mut daemon, &sock, &log, Duration::from_secs(30)).await?;
    let api = KcoreServiceClient::new(dial(sock.clone()).await?);
    let spec = pb::VmSpec {
        vcpu: 1,
        memory_mb: 64,
        kernel: args.kernel.to_string_lossy().into_owned(),
        initrd: args.initrd.to_string_lossy().into_owned(),
        cmdline: "console=ttyS0 quiet".into(),
        ..Default::default()
    };
    eprintln!("== filling the store with {} VMs", args.vms);
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (mut api, spec, next, end) = (api.clone(), spec.clone(), next.clone(), args.vms);
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return Ok::<_, anyhow::Error>(());
                }
                api.create_vm(pb::CreateVmRequest {
                    name: format!("vm-{i:04}"),
                    spec: Some(spec.clone()),
                    no_start: true,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("CreateVM vm-{i}"))?;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r?.with_context(|| format!("kcored log: {}", tail(&log, 10)))?;
    }
    eprintln!("   {:.1} s", t.elapsed().as_secs_f64());

    let port = free_port()?;
    let dash_log = dir.path().join("dashboard.log");
    let out = std::fs::File::create(&dash_log)?;
    let child = Command::new(&dashboard)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--endpoint", &format!("unix://{}", sock.display())])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("start {}", dashboard.display()))?;
    let _dash = DaemonGuard(child);
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("the dashboard did not listen: {}", tail(&dash_log, 10));
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    println!(
        "kcore-dashboard with {} VMs in the store ({} fetches each, ms: median / p90 / max)",
        args.vms, args.calls
    );
    let pages = [
        "/vms",
        "/vms?sort=memory&order=desc",
        "/",
        "/nodes",
        "/vms/vm-0000",
    ];
    for page in pages {
        let (code, body) = get(port, page)?;
        if code != 200 {
            bail!("GET {page}: {code}\n{}", tail(&dash_log, 10));
        }
        if page == "/vms" {
            let rows = body.matches("<tr data-vm=").count();
            if rows != args.vms {
                bail!("GET /vms listed {rows} VMs, not {}", args.vms);
            }
        }
        let mut times = Vec::with_capacity(args.calls);
        let mut size = 0;
        for _ in 0..args.calls {
            let t = Instant::now();
            let (code, body) = get(port, page)?;
            times.push(ms_since(t));
            if code != 200 {
                bail!("GET {page}: {code}");
            }
            size = body.len();
        }
        let max = times.iter().copied().fold(0.0, f64::max);
        println!(
            "  GET {page:<30} {:>8.1} / {:>8.1} / {:>8.1}   ({} KiB)",
            median(&mut times),
            percentile(&mut times, 90.0),
            max,
            size / 1024
        );
    }
    let have_chromium = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if args.browser_runs > 0 && have_chromium {
        let profile = dir.path().join("chromium");
        let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
        // Warm-up: the first start of chromium reads its files from disk.
        chromium_load(&url("/nodes"), &profile, "data-node=")?;
        let last = format!("data-vm=\"vm-{:04}\"", args.vms - 1);
        let mut list = Vec::new();
        let mut small = Vec::new();
        for _ in 0..args.browser_runs {
            list.push(chromium_load(&url("/vms"), &profile, &last)?);
            small.push(chromium_load(&url("/nodes"), &profile, "data-node=")?);
        }
        let (l, s) = (median(&mut list), median(&mut small));
        println!(
            "headless chromium, start to DOM after load ({} runs, median ms): /vms {l:.0}, \
             /nodes {s:.0}: the {} rows add {:.0} ms",
            args.browser_runs,
            args.vms,
            l - s
        );
    } else if args.browser_runs > 0 {
        println!("(no chromium: the browser figures are skipped; apt-get install chromium)");
    }
    drop(daemon);
    Ok(())
}

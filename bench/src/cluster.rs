//! `kcore-bench-cluster`: two control-plane figures of kcore, each against a baseline
//! measured in the same run, with real daemons and real gRPC.
//!
//! 1. **ListVMs at 1,000 VMs.** A `kcored all-in-one` (TCG, `--cpus 1000 --memory
//!    1000000` so the scheduler takes them all) in a temp dir; 10 VMs are created with
//!    `CreateVM { no_start: true }` (defined on the node, not booted), then `--calls`
//!    ListVMs and GetVM calls over the unix socket are timed (the baseline); then the store
//!    is filled to 1,000 VMs (`--concurrency` creates at a time) and the same calls are
//!    timed again. Median and p95 of each, and the ratio to the baseline.
//! 2. **Node failure detection.** A `kcored controller --listen 127.0.0.1:P` with
//!    `--heartbeat-interval H --node-timeout T`, a join token from `CreateJoinToken` over
//!    mutual TLS with the controller's admin certificate, and a `kcored node --name n1`
//!    that joins it over TCP. The benchmark follows `WatchEvents` (mTLS) and, `--runs`
//!    times: (a) kill -9 of the node -> the `node.not_ready` event for n1, then a restart
//!    in the same dirs -> `node.ready`; (b) SIGSTOP of the node (a hung host: its TCP
//!    connections stay open) -> `node.not_ready`, then SIGCONT (at once, or after
//!    `--stop-hold` seconds) -> `node.ready`. Each kill or stop comes at a different point
//!    of the heartbeat cycle (spread evenly over the runs). After each event, `ListNodes`
//!    is polled until it shows the same state (the lag is reported). Baselines: the
//!    configured node timeout for the NotReady figures, the node's own startup (spawn ->
//!    its unix socket bound) for restart -> READY.
//!
//! Run: `scripts/bench-cluster.sh` (release build).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use kcore_bench::{
    DaemonGuard, dial, free_port, kcored_binary, median, ms_since, percentile, processes_under,
    spawn_kcored, tail, wait_for_socket,
};
use kcore_proto::v1 as pb;
use kcore_proto::v1::kcore_service_client::KcoreServiceClient;
use nix::sys::signal::{Signal, kill};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

type Api = KcoreServiceClient<Channel>;

#[derive(Parser, Debug)]
#[command(about = "kcore ListVMs latency at 1,000 VMs and node NotReady detection time")]
struct Args {
    /// Which figures to measure.
    #[arg(long, value_enum, default_value_t = Part::All)]
    only: Part,
    /// VMs in the store for the ListVMs figure.
    #[arg(long, default_value_t = 1000)]
    vms: usize,
    /// VMs in the store for the ListVMs baseline (measured first, same daemon).
    #[arg(long, default_value_t = 10)]
    baseline_vms: usize,
    /// Timed ListVMs (and GetVM) calls at each size.
    #[arg(long, default_value_t = 50)]
    calls: usize,
    /// CreateVM calls in flight while filling the store.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Rounds of kill -9 / restart and SIGSTOP / SIGCONT per timing.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seconds to keep the node stopped after it is NotReady, before SIGCONT (0: at once).
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    stop_hold: f64,
    /// HEARTBEAT:NODE_TIMEOUT in seconds (repeatable); the first is the headline.
    #[arg(long = "timing", value_name = "H:T", default_values = ["2:6", "0.5:2"])]
    timings: Vec<String>,
    #[arg(long, default_value = "/var/cache/kcore/test-guest/vmlinuz")]
    kernel: PathBuf,
    #[arg(long, default_value = "/var/cache/kcore/test-guest/initrd.img")]
    initrd: PathBuf,
    /// The kcored binary (default: next to this one).
    #[arg(long)]
    kcored: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Part {
    All,
    List,
    Nodes,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kcored = kcored_binary(args.kcored.as_deref())?;
    if args.vms <= args.baseline_vms || args.calls == 0 || args.runs == 0 {
        bail!("need --vms > --baseline-vms, --calls > 0 and --runs > 0");
    }
    let mut timings = Vec::new();
    for t in &args.timings {
        let (h, to) = t
            .split_once(':')
            .with_context(|| format!("--timing {t}: expected HEARTBEAT:TIMEOUT"))?;
        let h: f64 = h.parse().with_context(|| format!("--timing {t}"))?;
        let to: f64 = to.parse().with_context(|| format!("--timing {t}"))?;
        timings.push((h, to));
    }
    let list = if args.only != Part::Nodes {
        Some(list_bench(&args, &kcored).await?)
    } else {
        None
    };
    let mut nodes = Vec::new();
    if args.only != Part::List {
        for &(h, to) in &timings {
            eprintln!("== node failure detection, heartbeat {h} s, node timeout {to} s");
            let r = node_bench(&args, &kcored, h, to).await;
            if let Err(e) = &r {
                eprintln!("FAILED (heartbeat {h} s, node timeout {to} s): {e:#}");
            }
            nodes.push((h, to, r));
        }
    }
    if let Some(l) = list {
        l.print(&args);
    }
    let mut failed = false;
    for (h, to, r) in nodes {
        match r {
            Ok(r) => r.print(&args),
            Err(e) => {
                failed = true;
                println!(
                    "\nNode failure detection, heartbeat {h} s, node timeout {to} s: FAILED\n{e:#}"
                );
            }
        }
    }
    if failed {
        bail!("some measurements failed (see above)");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 1. ListVMs / GetVM latency with many VMs in the store
// ---------------------------------------------------------------------------------------

/// Latencies (ms) at one store size.
struct AtSize {
    vms: usize,
    list: Vec<f64>,
    get: Vec<f64>,
}

struct ListResult {
    base: AtSize,
    big: AtSize,
    /// CreateVM (no_start) latencies while filling the store, ms, in completion order.
    creates: Vec<f64>,
    fill_secs: f64,
    /// VMs not STOPPED after the measurement (up to 8, "name STATUS (reason)").
    odd: Vec<String>,
    /// How many were still not STOPPED 5 s later.
    odd_later: usize,
}

async fn list_bench(args: &Args, kcored: &Path) -> anyhow::Result<ListResult> {
    let dir = tempfile::Builder::new()
        .prefix("kcore-bench-cluster-")
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
    let result = {
        let mut daemon = spawn_kcored(kcored, &argv, &log, "warn")?;
        wait_for_socket(&mut daemon, &sock, &log, Duration::from_secs(30)).await?;
        let api = KcoreServiceClient::new(dial(sock).await?);
        let spec = pb::VmSpec {
            vcpu: 1,
            memory_mb: 64,
            machine: pb::MachineType::Q35 as i32,
            kernel: args.kernel.to_string_lossy().into_owned(),
            initrd: args.initrd.to_string_lossy().into_owned(),
            cmdline: "console=ttyS0 quiet panic=-1".into(),
            ..Default::default()
        };
        eprintln!("== ListVMs: creating {} VMs (no_start)", args.baseline_vms);
        create_many(&api, &spec, 0..args.baseline_vms, args.concurrency).await?;
        let base = measure(&api, args.calls, args.baseline_vms).await?;
        eprintln!(
            "== ListVMs: filling the store to {} VMs, {} at a time",
            args.vms, args.concurrency
        );
        let t = Instant::now();
        let creates = create_many(&api, &spec, args.baseline_vms..args.vms, args.concurrency)
            .await
            .with_context(|| format!("filling the store (kcored log: {})", tail(&log, 10)))?;
        let fill_secs = t.elapsed().as_secs_f64();
        let big = measure(&api, args.calls, args.vms).await?;
        // Nothing may run: no_start VMs are only defined. Any other state is reported (and
        // looked at again 5 s later: does the next heartbeat set it right?).
        let mut odd = not_stopped(&api).await?;
        let mut odd_later = Vec::new();
        if !odd.is_empty() {
            eprintln!(
                "warning: {} of {} VMs are not STOPPED right after the measurement",
                odd.len(),
                args.vms
            );
            tokio::time::sleep(Duration::from_secs(5)).await;
            odd_later = not_stopped(&api).await?;
        }
        odd.truncate(8);
        drop(daemon);
        ListResult {
            base,
            big,
            creates,
            fill_secs,
            odd,
            odd_later: odd_later.len(),
        }
    };
    let left = processes_under(dir.path());
    if !left.is_empty() {
        for &pid in &left {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        bail!(
            "processes left behind in {}: {left:?}",
            dir.path().display()
        );
    }
    Ok(result)
}

/// The VMs that are not STOPPED, as "name STATUS (reason)".
async fn not_stopped(api: &Api) -> anyhow::Result<Vec<String>> {
    let vms = api
        .clone()
        .list_v_ms(pb::ListVMsRequest::default())
        .await?
        .into_inner()
        .vms;
    Ok(vms
        .iter()
        .filter(|v| v.status != pb::VmStatus::Stopped as i32)
        .map(|v| {
            let st = pb::VmStatus::try_from(v.status)
                .map_or_else(|_| v.status.to_string(), |s| s.as_str_name().to_string());
            format!("{} {st} ({})", v.name, v.status_reason)
        })
        .collect())
}

/// Create `vm-{i}` for i in `range` with `no_start`, `conc` at a time; their latencies.
async fn create_many(
    api: &Api,
    spec: &pb::VmSpec,
    range: std::ops::Range<usize>,
    conc: usize,
) -> anyhow::Result<Vec<f64>> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..conc.max(1) {
        let (mut api, spec, next, end) = (api.clone(), spec.clone(), next.clone(), range.end);
        set.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                api.create_vm(pb::CreateVmRequest {
                    name: format!("vm-{i}"),
                    spec: Some(spec.clone()),
                    no_start: true,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("CreateVM vm-{i}"))?;
                lat.push(ms_since(t));
                if (i + 1) % 100 == 0 {
                    eprintln!("  created {}", i + 1);
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    Ok(all)
}

/// One ListVMs call, checked to list `n` VMs; its latency in ms.
async fn list_once(api: &mut Api, n: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    let got = api
        .list_v_ms(pb::ListVMsRequest::default())
        .await?
        .into_inner();
    let ms = ms_since(t);
    if got.vms.len() != n {
        bail!("ListVMs returned {} VMs, expected {n}", got.vms.len());
    }
    Ok(ms)
}

/// Time `calls` ListVMs (checking they list `n` VMs) and `calls` GetVM calls.
async fn measure(api: &Api, calls: usize, n: usize) -> anyhow::Result<AtSize> {
    let mut api = api.clone();
    // Warm-up (connection, caches), not counted.
    for _ in 0..3 {
        list_once(&mut api, n).await?;
    }
    let mut list = Vec::with_capacity(calls);
    for _ in 0..calls {
        list.push(list_once(&mut api, n).await?);
    }
    let mut get = Vec::with_capacity(calls);
    for i in 0..calls {
        // Spread over the store: early, middle and late rows.
        let name = format!("vm-{}", (i * 7919) % n);
        let t = Instant::now();
        let vm = api
            .get_vm(pb::GetVmRequest { name: name.clone() })
            .await
            .with_context(|| format!("GetVM {name}"))?
            .into_inner();
        get.push(ms_since(t));
        if vm.name != name {
            bail!("GetVM {name} returned {}", vm.name);
        }
    }
    Ok(AtSize { vms: n, list, get })
}

impl ListResult {
    fn print(mut self, args: &Args) {
        let (b, g) = (&mut self.base, &mut self.big);
        println!(
            "\nListVMs / GetVM latency: all-in-one, TCG, unix socket, VMs defined with no_start, \
             {} calls per figure (ms)",
            args.calls
        );
        println!(
            "{:<22} {:>12} {:>12} {:>8}",
            "",
            format!("{} VMs", b.vms),
            format!("{} VMs", g.vms),
            "ratio"
        );
        let rows: [(&str, f64, f64); 4] = [
            ("ListVMs median", median(&mut b.list), median(&mut g.list)),
            (
                "ListVMs p95",
                percentile(&mut b.list, 95.0),
                percentile(&mut g.list, 95.0),
            ),
            ("GetVM median", median(&mut b.get), median(&mut g.get)),
            (
                "GetVM p95",
                percentile(&mut b.get, 95.0),
                percentile(&mut g.get, 95.0),
            ),
        ];
        for (name, x, y) in rows {
            println!("{name:<22} {x:>12.2} {y:>12.2} {:>8.1}", y / x);
        }
        let (lb, lg) = (median(&mut b.list), median(&mut g.list));
        println!(
            "ListVMs cost per VM in the store: {:.1} us (median difference / {} VMs)",
            (lg - lb) * 1000.0 / (g.vms - b.vms) as f64,
            g.vms - b.vms
        );
        let n = self.creates.len();
        let first: Vec<f64> = self.creates.iter().take(100).copied().collect();
        let last: Vec<f64> = self
            .creates
            .iter()
            .skip(n.saturating_sub(100))
            .copied()
            .collect();
        println!(
            "\nfilling the store: {n} CreateVM (no_start), {} in flight, {:.1} s ({:.0}/s); \
             latency median {:.1} ms (first 100: {:.1}, last 100: {:.1}), p95 {:.1} ms",
            args.concurrency,
            self.fill_secs,
            n as f64 / self.fill_secs,
            median(&mut self.creates.clone()),
            median(&mut first.clone()),
            median(&mut last.clone()),
            percentile(&mut self.creates, 95.0),
        );
        if self.odd.is_empty() {
            println!("all {} VMs STOPPED after the measurement", self.big.vms);
        } else {
            println!(
                "NOT STOPPED after the measurement (expected all STOPPED; {} still 5 s later):",
                self.odd_later
            );
            for o in &self.odd {
                println!("  {o}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. Node failure detection
// ---------------------------------------------------------------------------------------

/// One event from WatchEvents with when the benchmark received it.
struct Seen {
    at: Instant,
    kind: String,
    node: String,
    message: String,
}

struct NodeResult {
    heartbeat: f64,
    timeout: f64,
    join_ms: f64,
    kill_nr: Vec<f64>,
    startup: Vec<f64>,
    restart_ready: Vec<f64>,
    stop_nr: Vec<f64>,
    cont_ready: Vec<f64>,
    /// ListNodes lag behind the events, ms (max over all transitions).
    lag_max: f64,
    reasons: BTreeSet<String>,
    /// Node events that came when none was expected.
    unexpected: Vec<String>,
}

/// The cluster under test: controller and node processes, dirs, clients.
struct Cluster {
    kcored: PathBuf,
    dir: PathBuf,
    ctl_port: u16,
    node_port: u16,
    api: Api,
    events: tokio::sync::mpsc::UnboundedReceiver<Seen>,
    unexpected: Vec<String>,
}

impl Cluster {
    fn ctl_pki(&self, f: &str) -> PathBuf {
        self.dir.join("ctl/data/pki").join(f)
    }

    fn node_log(&self) -> PathBuf {
        self.dir.join("node/kcored.log")
    }

    fn ctl_log(&self) -> PathBuf {
        self.dir.join("ctl/kcored.log")
    }

    /// `kcored node --name n1` joined to the controller (with the token on the first start).
    fn spawn_node(&self, token: Option<&str>) -> anyhow::Result<DaemonGuard> {
        let nd = self.dir.join("node");
        let mut argv: Vec<OsString> = vec![
            "node".into(),
            "--accel".into(),
            "tcg".into(),
            "--name".into(),
            "n1".into(),
            "--controller".into(),
            format!("127.0.0.1:{}", self.ctl_port).into(),
            "--ca-cert".into(),
            self.ctl_pki("ca.crt").into(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.node_port).into(),
            "--data-dir".into(),
            nd.join("data").into(),
            "--run-dir".into(),
            nd.join("run").into(),
        ];
        if let Some(t) = token {
            argv.extend(["--join-token".into(), t.into()]);
        }
        spawn_kcored(&self.kcored, &argv, &self.node_log(), "info")
    }

    /// Wait for the event `kind` about node n1; other node events are noted as unexpected.
    async fn wait_event(&mut self, kind: &str, timeout: Duration) -> anyhow::Result<Seen> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ev)) if ev.kind == kind && ev.node == "n1" => return Ok(ev),
                Ok(Some(ev)) => {
                    if is_flap(&ev) {
                        self.unexpected.push(format!(
                            "{} {} ({}) while waiting for {kind}",
                            ev.kind, ev.node, ev.message
                        ));
                    }
                }
                Ok(None) => bail!("the WatchEvents stream ended"),
                Err(_) => {
                    let state = self
                        .state()
                        .await
                        .map_or_else(|e| format!("ListNodes failed: {e:#}"), |s| format!("{s:?}"));
                    bail!(
                        "no {kind} event for n1 within {:.1} s; ListNodes shows n1 {state}\n\
                         controller log:\n{}\nnode log:\n{}",
                        timeout.as_secs_f64(),
                        tail(&self.ctl_log(), 15),
                        tail(&self.node_log(), 15)
                    );
                }
            }
        }
    }

    /// Drop events received so far, noting node events as unexpected.
    fn drain(&mut self) {
        while let Ok(ev) = self.events.try_recv() {
            if is_flap(&ev) {
                self.unexpected.push(format!(
                    "{} {} ({}) while idle",
                    ev.kind, ev.node, ev.message
                ));
            }
        }
    }

    async fn state(&self) -> anyhow::Result<Option<pb::NodeState>> {
        let nodes = self
            .api
            .clone()
            .list_nodes(pb::ListNodesRequest::default())
            .await?
            .into_inner()
            .nodes;
        Ok(nodes
            .iter()
            .find(|n| n.name == "n1")
            .map(|n| pb::NodeState::try_from(n.state).unwrap_or(pb::NodeState::Unspecified)))
    }

    /// Poll ListNodes every 2 ms until n1 is `want`; ms from `since`.
    async fn wait_state(&self, want: pb::NodeState, since: Instant) -> anyhow::Result<f64> {
        loop {
            if self.state().await? == Some(want) {
                return Ok(ms_since(since));
            }
            if since.elapsed() > Duration::from_secs(10) {
                bail!("ListNodes does not show n1 {want:?} 10 s after the event");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A readiness change of a node (node.joined and the like are not).
fn is_flap(ev: &Seen) -> bool {
    ev.kind == "node.ready" || ev.kind == "node.not_ready"
}

/// A KcoreService client over TCP with mutual TLS, as the controller's admin.
async fn admin_client(port: u16, pki: &Path) -> anyhow::Result<Api> {
    let read = |f: &str| {
        std::fs::read(pki.join(f)).with_context(|| format!("read {}", pki.join(f).display()))
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.crt")?))
        .identity(Identity::from_pem(read("admin.crt")?, read("admin.key")?))
        .domain_name("localhost");
    let ch = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connect to the controller at 127.0.0.1:{port} (mTLS)"))?;
    Ok(KcoreServiceClient::new(ch))
}

/// Follow WatchEvents; each event is passed on with the instant it arrived.
async fn watch(api: &Api) -> anyhow::Result<tokio::sync::mpsc::UnboundedReceiver<Seen>> {
    let mut stream = api
        .clone()
        .watch_events(pb::WatchEventsRequest {
            follow: true,
            history: 0,
            ..Default::default()
        })
        .await?
        .into_inner();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(ev)) = stream.message().await {
            let seen = Seen {
                at: Instant::now(),
                kind: ev.kind,
                node: ev.node,
                message: ev.message,
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

async fn node_bench(
    args: &Args,
    kcored: &Path,
    heartbeat: f64,
    timeout: f64,
) -> anyhow::Result<NodeResult> {
    let dir = tempfile::Builder::new()
        .prefix("kcore-bench-cluster-")
        .tempdir()?;
    // The daemons are gone when this returns (their guards dropped), whatever the outcome.
    let r = node_cluster(args, kcored, heartbeat, timeout, dir.path()).await;
    let left = processes_under(dir.path());
    if !left.is_empty() {
        for &pid in &left {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        bail!(
            "processes left behind in {}: {left:?}",
            dir.path().display()
        );
    }
    r
}

/// Controller and node in `dir`, then the rounds.
async fn node_cluster(
    args: &Args,
    kcored: &Path,
    heartbeat: f64,
    timeout: f64,
    dir: &Path,
) -> anyhow::Result<NodeResult> {
    let ctl_port = free_port()?;
    let cd = dir.join("ctl");
    std::fs::create_dir_all(&cd)?;
    std::fs::create_dir_all(dir.join("node"))?;
    let argv: Vec<OsString> = vec![
        "controller".into(),
        "--listen".into(),
        format!("127.0.0.1:{ctl_port}").into(),
        "--data-dir".into(),
        cd.join("data").into(),
        "--run-dir".into(),
        cd.join("run").into(),
        "--heartbeat-interval".into(),
        heartbeat.to_string().into(),
        "--node-timeout".into(),
        timeout.to_string().into(),
    ];
    let ctl_log = cd.join("kcored.log");
    let mut ctl = spawn_kcored(kcored, &argv, &ctl_log, "info")?;
    wait_for_socket(
        &mut ctl,
        &cd.join("run/kcore.sock"),
        &ctl_log,
        Duration::from_secs(30),
    )
    .await?;
    let api = admin_client(ctl_port, &cd.join("data/pki")).await?;
    let token = api
        .clone()
        .create_join_token(pb::CreateJoinTokenRequest { ttl_seconds: 600 })
        .await
        .context("CreateJoinToken")?
        .into_inner()
        .token;
    let events = watch(&api).await?;
    let mut c = Cluster {
        kcored: kcored.to_path_buf(),
        dir: dir.to_path_buf(),
        ctl_port,
        node_port: free_port()?,
        api,
        events,
        unexpected: Vec::new(),
    };
    node_rounds(&mut c, args, heartbeat, timeout, &token).await
}

async fn node_rounds(
    c: &mut Cluster,
    args: &Args,
    heartbeat: f64,
    timeout: f64,
    token: &str,
) -> anyhow::Result<NodeResult> {
    let limit = Duration::from_secs_f64(timeout * 3.0 + 30.0);
    let node_sock = c.dir.join("node/run/node.sock");
    let t = Instant::now();
    let mut node = c.spawn_node(Some(token))?;
    wait_for_socket(
        &mut node,
        &node_sock,
        &c.node_log(),
        Duration::from_secs(30),
    )
    .await?;
    let ev = c.wait_event("node.ready", limit).await?;
    let join_ms = ev.at.duration_since(t).as_secs_f64() * 1000.0;
    let mut lag_max = c.wait_state(pb::NodeState::Ready, ev.at).await?;
    eprintln!("  n1 joined and READY after {join_ms:.0} ms");
    let mut r = NodeResult {
        heartbeat,
        timeout,
        join_ms,
        kill_nr: Vec::new(),
        startup: Vec::new(),
        restart_ready: Vec::new(),
        stop_nr: Vec::new(),
        cont_ready: Vec::new(),
        lag_max: 0.0,
        reasons: BTreeSet::new(),
        unexpected: Vec::new(),
    };
    // Stop at evenly spread points of the heartbeat cycle: after a settle of one heartbeat
    // interval, plus (i + 0.5) / runs of another.
    let settle =
        |i: usize| Duration::from_secs_f64(heartbeat * (1.0 + (i as f64 + 0.5) / args.runs as f64));
    for i in 0..args.runs {
        // (a) kill -9 -> NotReady; restart -> READY.
        tokio::time::sleep(settle(i)).await;
        c.drain();
        let t = Instant::now();
        node.0.kill().context("kill -9 the node")?;
        node.0.wait()?;
        let ev = c.wait_event("node.not_ready", limit).await?;
        let kill_ms = ev.at.duration_since(t).as_secs_f64() * 1000.0;
        r.reasons.insert(format!("kill -9: {}", ev.message));
        lag_max = lag_max.max(c.wait_state(pb::NodeState::NotReady, ev.at).await?);
        let t = Instant::now();
        node = c.spawn_node(None)?;
        wait_for_socket(
            &mut node,
            &node_sock,
            &c.node_log(),
            Duration::from_secs(30),
        )
        .await?;
        let startup = ms_since(t);
        let ev = c.wait_event("node.ready", limit).await?;
        let ready_ms = ev.at.duration_since(t).as_secs_f64() * 1000.0;
        lag_max = lag_max.max(c.wait_state(pb::NodeState::Ready, ev.at).await?);
        // (b) SIGSTOP -> NotReady; SIGCONT -> READY.
        tokio::time::sleep(settle(i)).await;
        c.drain();
        let t = Instant::now();
        kill(node.pid(), Signal::SIGSTOP).context("SIGSTOP the node")?;
        let ev = c.wait_event("node.not_ready", limit).await?;
        let stop_ms = ev.at.duration_since(t).as_secs_f64() * 1000.0;
        r.reasons.insert(format!("SIGSTOP: {}", ev.message));
        lag_max = lag_max.max(c.wait_state(pb::NodeState::NotReady, ev.at).await?);
        if args.stop_hold > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(args.stop_hold)).await;
        }
        let t = Instant::now();
        kill(node.pid(), Signal::SIGCONT).context("SIGCONT the node")?;
        let ev = c.wait_event("node.ready", limit).await?;
        let cont_ms = ev.at.duration_since(t).as_secs_f64() * 1000.0;
        lag_max = lag_max.max(c.wait_state(pb::NodeState::Ready, ev.at).await?);
        eprintln!(
            "  round {i}: kill -9 -> NotReady {kill_ms:.1} ms, restart -> READY {ready_ms:.1} ms \
             (node up {startup:.1} ms) | SIGSTOP -> NotReady {stop_ms:.1} ms, SIGCONT -> READY \
             {cont_ms:.1} ms"
        );
        r.kill_nr.push(kill_ms);
        r.startup.push(startup);
        r.restart_ready.push(ready_ms);
        r.stop_nr.push(stop_ms);
        r.cont_ready.push(cont_ms);
    }
    drop(node);
    r.lag_max = lag_max;
    r.unexpected = std::mem::take(&mut c.unexpected);
    Ok(r)
}

/// A ratio with 3 significant digits or so.
fn ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.1}")
    } else if r >= 0.1 {
        format!("{r:.3}")
    } else {
        format!("{r:.4}")
    }
}

/// A result line: name, samples, baseline (what, ms).
type Row<'a> = (&'a str, &'a mut Vec<f64>, Option<(String, f64)>);

impl NodeResult {
    fn print(mut self, args: &Args) {
        println!(
            "\nNode failure detection: controller + 1 joined node over TCP/mTLS, heartbeat {} s, \
             node timeout {} s, {} rounds (ms; event = WatchEvents node.not_ready / node.ready)",
            self.heartbeat, self.timeout, args.runs
        );
        println!(
            "{:<26} {:>9} {:>9} {:>9} {:>24} {:>8}",
            "", "median", "min", "max", "baseline", "ratio"
        );
        let to_ms = self.timeout * 1000.0;
        let mut startup = self.startup.clone();
        let startup_med = median(&mut startup);
        let rows: [Row<'_>; 4] = [
            (
                "kill -9 -> NotReady",
                &mut self.kill_nr,
                Some(("node timeout".into(), to_ms)),
            ),
            (
                "restart -> READY",
                &mut self.restart_ready,
                Some(("node up (node.sock)".into(), startup_med)),
            ),
            (
                "SIGSTOP -> NotReady",
                &mut self.stop_nr,
                Some(("node timeout".into(), to_ms)),
            ),
            (
                if args.stop_hold > 0.0 {
                    "SIGCONT (held) -> READY"
                } else {
                    "SIGCONT -> READY"
                },
                &mut self.cont_ready,
                None,
            ),
        ];
        for (name, v, base) in rows {
            let med = median(v);
            let (min, max) = (
                v.first().copied().unwrap_or(f64::NAN),
                v.last().copied().unwrap_or(f64::NAN),
            );
            match base {
                Some((what, b)) => println!(
                    "{name:<26} {med:>9.1} {min:>9.1} {max:>9.1} {:>24} {:>8}",
                    format!("{what} {b:.1}"),
                    ratio(med / b)
                ),
                None => println!("{name:<26} {med:>9.1} {min:>9.1} {max:>9.1}"),
            }
        }
        if args.stop_hold > 0.0 {
            println!(
                "SIGCONT came {} s after NotReady (--stop-hold)",
                args.stop_hold
            );
        }
        println!(
            "first join (spawn with token -> READY) {:.1} ms; ListNodes agreed with the events \
             within {:.1} ms",
            self.join_ms, self.lag_max
        );
        for why in &self.reasons {
            println!("  NotReady reason, {why}");
        }
        if self.unexpected.is_empty() {
            println!("  no unexpected node events");
        }
        for u in &self.unexpected {
            println!("  unexpected: {u}");
        }
    }
}

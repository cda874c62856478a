//! 1. ListVMs / GetVM latency with many VMs in the store.

use super::*;

/// Latencies (ms) at one store size.
struct AtSize {
    vms: usize,
    list: Vec<f64>,
    get: Vec<f64>,
}

pub(crate) struct ListResult {
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

pub(crate) async fn list_bench(args: &Args, kcored: &Path) -> anyhow::Result<ListResult> {
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
    pub(crate) fn print(mut self, args: &Args) {
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

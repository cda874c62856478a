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

mod list;
mod nodes;

use list::list_bench;
use nodes::node_bench;

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

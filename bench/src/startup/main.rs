//! `kcore-bench-startup`: guest start-up on kcore, libvirt and bare QEMU side by side, in
//! one run, on the same guest (the test guest's kernel and initramfs, 1 vCPU, 128 MiB, an
//! empty 1 GiB qcow2 data disk, a virtio NIC on a bench bridge, TCG on all three).
//!
//! - **One at a time**, for each machine (q35, pc, microvm): `--rounds` rounds after an
//!   uncounted warm-up, each round running the guest once on every system, in an order
//!   that rotates from round to round: kcore (`kctl vm create`, the VM's boot timeline),
//!   libvirt (`virsh create` of the equivalent domain XML: kcore's firmware and final
//!   command line, the same disk and NIC set), bare QEMU (kcore's argv with the bench's
//!   own descriptors), and on q35 also libvirt with its default firmware (SeaBIOS) and,
//!   when kctl has it, `--profile fast`. Create -> vCPUs running, create -> guest ready
//!   (the marker on the serial console), stop --force.
//! - **Ten at once** (`--concurrent`): create -> all ready on each system, the daemon's
//!   RSS (kcored; libvirtd + virtlogd) and the guests' summed PSS with all of them up.
//! - **Idle daemons**: RSS right after start and after the rounds, with no VM.
//! - **Templates**, when kctl has them: template start -> ready against the same guest's
//!   cold boot, ten clones' summed PSS against ten cold guests'.
//!
//! Run: `scripts/bench-startup.sh` (it installs libvirt, starts libvirtd and virtlogd in
//! the foreground, gives /dev/kvm to root:kvm 0660 for the run, makes the bridge, and
//! undoes all of it at the end).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use kcore_bench::{dial, kcored_binary, processes_under, spawn_kcored, wait_for_socket};
use kcore_proto::v1::kcore_service_client::KcoreServiceClient;

mod bare;
mod kcore;
mod libvirt;
mod probe;
mod report;
mod rounds;
mod run;
mod stats;

use rounds::Sys;
use stats::Stats;

#[derive(Parser, Debug)]
#[command(about = "Guest start-up: kcore vs libvirt vs bare QEMU, side by side")]
struct Args {
    /// Counted rounds per machine (after one warm-up round).
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Machines, in order (the first one is used for the concurrent creates).
    #[arg(long, value_delimiter = ',', default_value = "q35,pc,microvm")]
    machines: Vec<String>,
    /// Guests created at once.
    #[arg(long, default_value_t = 10)]
    concurrent: usize,
    /// Rounds of the concurrent creates (each: every system once).
    #[arg(long, default_value_t = 3)]
    concurrent_rounds: usize,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128)]
    memory: u32,
    /// The benchmark's work directory (must exist, searchable by the QEMU users).
    #[arg(long)]
    work: PathBuf,
    /// The guest's kernel (a copy of the test guest's, in the work dir: libvirt chowns
    /// it while a domain uses it).
    #[arg(long)]
    kernel: PathBuf,
    #[arg(long)]
    initrd: PathBuf,
    /// The bridge every guest's NIC joins (it must exist).
    #[arg(long, default_value = "kbench0")]
    bridge: String,
    /// No data disk and no NIC (the bare test guest).
    #[arg(long)]
    no_devices: bool,
    /// Pid of the libvirtd the script started.
    #[arg(long)]
    libvirtd_pid: u32,
    /// Pid of the virtlogd the script started.
    #[arg(long)]
    virtlogd_pid: u32,
    /// The kcored binary (default: next to this one).
    #[arg(long)]
    kcored: Option<PathBuf>,
    /// The kctl binary (default: next to this one).
    #[arg(long)]
    kctl: Option<PathBuf>,
}

/// What every part of the benchmark uses.
pub struct Bench {
    pub kcore: kcore::Kcore,
    pub guest: kcore::Guest,
    pub dir: PathBuf,
    pub bridge: String,
    pub kcored_pid: u32,
    pub libvirtd_pid: u32,
    pub virtlogd_pid: u32,
}

/// On the way out, however it ends: destroy the bench's libvirt domains and kill every
/// process that still mentions the work dir (kcore's and bare QEMUs, kcored).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        libvirt::destroy_all("kb-");
        for pid in processes_under(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let _cleanup = Cleanup(a.work.clone());
    let kcored = kcored_binary(a.kcored.as_deref())?;
    let kctl = match &a.kctl {
        Some(p) => p.clone(),
        None => kcored.with_file_name("kctl"),
    };
    let kdir = a.work.join("kcore");
    let run_dir = kdir.join("run");
    let sock = run_dir.join("kcore.sock");
    let log = kdir.join("kcored.log");
    std::fs::create_dir_all(&kdir)?;
    let mut daemon = spawn_kcored(
        &kcored,
        &[
            "all-in-one".into(),
            "--accel".into(),
            "tcg".into(),
            // Ten 1-vCPU guests at once (and a template's clones) on 2 cores.
            "--cpu-overcommit".into(),
            "16".into(),
            "--data-dir".into(),
            kdir.join("data").into(),
            "--run-dir".into(),
            run_dir.clone().into(),
        ],
        &log,
        "warn",
    )?;
    wait_for_socket(&mut daemon, &sock, &log, Duration::from_secs(30)).await?;
    let api = KcoreServiceClient::new(dial(sock.clone()).await?);
    let dir = a.work.join("guests");
    std::fs::create_dir_all(&dir)?;
    let b = Arc::new(Bench {
        kcore: kcore::Kcore::new(kctl, &sock, api, run_dir),
        guest: kcore::Guest {
            memory_mib: a.memory,
            vcpus: 1,
            kernel: a.kernel.clone(),
            initrd: a.initrd.clone(),
            cmdline: "console=ttyS0 quiet panic=-1".into(),
            disk: !a.no_devices,
            network: (!a.no_devices).then(|| "kbench".to_string()),
        },
        dir,
        bridge: a.bridge.clone(),
        kcored_pid: daemon.0.id(),
        libvirtd_pid: a.libvirtd_pid,
        virtlogd_pid: a.virtlogd_pid,
    });
    let mut st = Stats::default();
    // Idle, fresh: the daemons up, nothing asked of them yet (libvirtd has answered the
    // script's first `virsh version`, which fills its QEMU capabilities cache), read once
    // they have settled.
    rounds::idle_rss(&b, &mut st, "fresh").await?;
    if !a.no_devices {
        b.kcore
            .kctl(&[
                "network", "create", "kbench", "--mode", "bridge", "--bridge", &a.bridge,
            ])
            .await?;
    }
    // What a CLI call costs before it does anything: a listing on each.
    for _ in 0..5 {
        st.add("cli/kctl", b.kcore.kctl(&["vm", "list"]).await?.0);
        st.add(
            "cli/virsh",
            run::timed("virsh", ["-q", "-c", libvirt::URI, "list"])
                .await?
                .0,
        );
    }
    let fast = b.kcore.supports(&["vm", "create"], "--profile").await;
    let templates = b.kcore.supports(&["template"], "create").await;

    let mut libvirt_cannot = Vec::new();
    let mut first_reference = None;
    for m in &a.machines {
        eprintln!("{m}: one guest at a time, {} rounds + warm-up", a.rounds);
        let (cannot, reference) = rounds::sequential(&b, &mut st, m, a.rounds, fast)
            .await
            .with_context(|| format!("machine {m}"))?;
        if let Some(why) = cannot {
            libvirt_cannot.push((m.clone(), why));
        }
        if first_reference.is_none() {
            first_reference = Some((m.clone(), reference));
        }
    }
    rounds::idle_rss(&b, &mut st, "after").await?;
    let (cm, reference) = first_reference.context("no machine given")?;
    eprintln!(
        "{cm}: {} at once, {} rounds",
        a.concurrent, a.concurrent_rounds
    );
    for round in 0..a.concurrent_rounds {
        let mut order = vec![Sys::Kcore, Sys::Libvirt, Sys::Bare];
        order.rotate_left(round % 3);
        for sys in order {
            rounds::concurrent(
                &b,
                &mut st,
                sys,
                a.concurrent,
                round,
                Some(&reference),
                kcore::How::Machine(cm.clone()),
            )
            .await
            .with_context(|| format!("{} at once on {}", a.concurrent, sys.key()))?;
        }
    }
    let template_result = if templates {
        eprintln!("templates: {} rounds + warm-up", a.rounds);
        Some(
            rounds::templates(&b, &mut st, a.rounds, a.concurrent)
                .await
                .map_err(|e| format!("{e:#}")),
        )
    } else {
        None
    };
    report::print(&report::Run {
        st: &st,
        rounds: a.rounds,
        machines: &a.machines,
        concurrent: a.concurrent,
        concurrent_rounds: a.concurrent_rounds,
        memory: a.memory,
        devices: !a.no_devices,
        libvirt_cannot: &libvirt_cannot,
        fast,
        templates: template_result.as_ref(),
    });
    if let Some(Err(e)) = &template_result {
        anyhow::bail!("the template rows failed: {e}");
    }
    Ok(())
}

//! The measured runs: one guest at a time on each system (rounds), ten at once, and the
//! template clones.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::kcore::{Created, Guest, How};
use crate::probe::{self, pss_sum_mib, ready_at, rss_sum_mib, stop_and_exit};
use crate::stats::Stats;
use crate::{Bench, bare, libvirt};

/// The template the benchmark makes (and deletes).
const TEMPLATE: &str = "kb-tpl";

/// How long the daemons are left alone before their RSS is read (as scripts/bench-rss.sh
/// does): kcored releases its code pages once it has been quiet for 3 s.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

/// The systems a round alternates between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sys {
    Kcore,
    Libvirt,
    Bare,
    /// libvirt with its default firmware (SeaBIOS) instead of kcore's.
    LibvirtSeabios,
    /// `kctl vm create --profile fast`.
    KcoreFast,
    /// `kctl vm create --template T`.
    KcoreClone,
}

impl Sys {
    pub fn key(self) -> &'static str {
        match self {
            Sys::Kcore => "kcore",
            Sys::Libvirt => "libvirt",
            Sys::Bare => "bare",
            Sys::LibvirtSeabios => "libvirt-seabios",
            Sys::KcoreFast => "kcore-fast",
            Sys::KcoreClone => "kcore-clone",
        }
    }

    fn is_libvirt(self) -> bool {
        matches!(self, Sys::Libvirt | Sys::LibvirtSeabios)
    }
}

/// What kcore's QEMU got for machine `m`, which libvirt and bare QEMU copy.
pub struct Reference {
    pub machine: String,
    pub argv: Vec<String>,
}

impl Reference {
    fn value(&self, flag: &str) -> Option<String> {
        self.argv
            .windows(2)
            .find(|w| w[0] == flag)
            .map(|w| w[1].clone())
    }

    /// The libvirt domain of the same guest (machine `m`; kcore's firmware unless
    /// `seabios`).
    fn libvirt_guest(&self, b: &Bench, seabios: bool) -> libvirt::Guest {
        libvirt::Guest {
            machine: self.machine.clone(),
            memory_mib: b.guest.memory_mib,
            vcpus: b.guest.vcpus,
            kernel: b.guest.kernel.clone(),
            initrd: b.guest.initrd.clone(),
            // kcore's final command line (on microvm it carries tsc_early_khz).
            cmdline: self
                .value("-append")
                .unwrap_or_else(|| b.guest.cmdline.clone()),
            bios: if seabios {
                None
            } else {
                self.value("-bios").map(Into::into)
            },
            disk: b.guest.disk,
            bridge: b.guest.network.as_ref().map(|_| b.bridge.clone()),
        }
    }
}

/// One guest on `sys`: create, ready, stop --force (ms) recorded under `m/sys/...`
/// unless `record` is false (the warm-up round).
async fn one(
    b: &Bench,
    st: &mut Stats,
    sys: Sys,
    m: &str,
    round: usize,
    reference: &mut Option<Reference>,
) -> anyhow::Result<()> {
    let name = format!("kb-{m}-{}-{round}", sys.key());
    // stop: the stop command's own time; exit: until QEMU had exited.
    let (running, ready, stop, exit) = match sys {
        Sys::Kcore | Sys::KcoreFast | Sys::KcoreClone => {
            let how = match sys {
                Sys::Kcore => How::Machine(m.into()),
                Sys::KcoreFast => How::Profile("fast".into()),
                _ => How::Template(TEMPLATE.into()),
            };
            let (vm, running) = b.kcore.create(&name, &b.guest, &how).await?;
            let ready = b.kcore.phase_ms(&vm, "guest_ready").await?;
            if round > 0 {
                record_phases(b, st, &vm, &format!("{m}/{}", sys.key())).await?;
            }
            if sys == Sys::KcoreFast {
                let spec = b.kcore.get(&name).await?.spec.unwrap_or_default();
                let machine = kcore_proto::v1::MachineType::try_from(spec.machine)
                    .map_or("unknown", |m| m.as_str_name());
                st.add(format!("fast-machine/{machine}"), 1.0);
            } else if reference.is_none() {
                *reference = Some(Reference {
                    machine: m.to_string(),
                    argv: b.kcore.argv(&name).await?,
                });
            }
            let pid = b.kcore.pid(&name).await?;
            let (stop, exit) = stop_and_exit(pid, b.kcore.stop_force(&name)).await?;
            b.kcore.delete(&name).await?;
            (running, ready, stop, exit)
        }
        Sys::Libvirt | Sys::LibvirtSeabios => {
            let r = reference.as_ref().context("libvirt before kcore")?;
            let g = r.libvirt_guest(b, sys == Sys::LibvirtSeabios);
            let (mut dom, running) = libvirt::create(&name, &g, &b.dir).await?;
            let ready = ready_at(&mut dom.ready).await;
            let t0 = dom.t0;
            let (stop, exit) = libvirt::destroy(dom).await?;
            (running, (ready? - t0).as_secs_f64() * 1000.0, stop, exit)
        }
        Sys::Bare => {
            let r = reference.as_ref().context("bare QEMU before kcore")?;
            let (mut vm, running) = bare::start(&r.argv, 0, &b.dir, &b.bridge).await?;
            let ready = match vm.ready.as_mut() {
                Some(t) => ready_at(t).await,
                None => Err(anyhow::anyhow!("no console")),
            };
            let t0 = vm.t0;
            let stop = bare::kill(vm).await;
            (running, (ready? - t0).as_secs_f64() * 1000.0, stop, stop)
        }
    };
    eprintln!(
        "  {m} round {round} {:<16} running {running:>7.1} ms  ready {ready:>7.0} ms  stop --force {stop:>6.1} ms (exited {exit:>6.1} ms)",
        sys.key()
    );
    if round > 0 {
        let k = format!("{m}/{}", sys.key());
        st.add(format!("{k}/running"), running);
        st.add(format!("{k}/ready"), ready);
        st.add(format!("{k}/stop"), stop);
        st.add(format!("{k}/exit"), exit);
    }
    Ok(())
}

/// kcore's own timeline: kctl spawn -> request, request -> network_ready / qemu_exec /
/// vcpus_running.
async fn record_phases(b: &Bench, st: &mut Stats, vm: &Created, k: &str) -> anyhow::Result<()> {
    for (name, since_spawn, offset) in b.kcore.phases(vm).await? {
        match name.as_str() {
            "request_received" => st.add(format!("{k}/kctl_to_request"), since_spawn),
            "network_ready" | "qemu_exec" | "vcpus_running" => {
                st.add(format!("{k}/{name}"), offset)
            }
            _ => {}
        }
    }
    Ok(())
}

/// `rounds` rounds (plus an uncounted warm-up) of one guest at a time on machine `m`, the
/// systems in a different order each round. Returns why libvirt could not run `m`, if so.
pub async fn sequential(
    b: &Bench,
    st: &mut Stats,
    m: &str,
    rounds: usize,
    fast: bool,
) -> anyhow::Result<(Option<String>, Reference)> {
    let mut systems = vec![Sys::Kcore, Sys::Libvirt, Sys::Bare];
    if m == "q35" {
        systems.push(Sys::LibvirtSeabios);
        if fast {
            systems.push(Sys::KcoreFast);
        }
    }
    let mut reference = None;
    let mut libvirt_cannot: Option<String> = None;
    for round in 0..=rounds {
        let mut order = systems.clone();
        // Round 0 starts with kcore (the others copy its argv); then each round rotates.
        order.rotate_left(round % systems.len());
        for sys in order {
            if sys.is_libvirt() && libvirt_cannot.is_some() {
                continue;
            }
            if sys != Sys::Kcore && reference.is_none() {
                continue;
            }
            match one(b, st, sys, m, round, &mut reference).await {
                Err(e) if sys.is_libvirt() && round == 0 => {
                    let why = format!("{e:#}");
                    eprintln!("  libvirt cannot run {m}: {why}");
                    libvirt::destroy_all("kb-");
                    libvirt_cannot = Some(why);
                }
                r => r.with_context(|| format!("{m} round {round} on {}", sys.key()))?,
            }
        }
    }
    let reference = reference.context("kcore never started the guest")?;
    Ok((libvirt_cannot, reference))
}

/// `n` guests created at once on `sys` (kcore: as `how` says; libvirt and bare QEMU: as
/// `reference`): all ready (ms from the first create command to the last ready marker;
/// each guest's empty disk is made just before its own command, as one at a time), the
/// daemon's RSS and the guests' summed PSS with all `n` running.
pub async fn concurrent(
    b: &Arc<Bench>,
    st: &mut Stats,
    sys: Sys,
    n: usize,
    round: usize,
    reference: Option<&Reference>,
    how: How,
) -> anyhow::Result<()> {
    let k = format!("conc/{}", sys.key());
    let prefix = format!("kb-c{round}-{}", sys.key());
    // The daemon's own CPU time from before the first create to all ready.
    let daemon = match sys {
        Sys::Kcore | Sys::KcoreFast | Sys::KcoreClone => vec![b.kcored_pid],
        Sys::Libvirt | Sys::LibvirtSeabios => vec![b.libvirtd_pid, b.virtlogd_pid],
        Sys::Bare => Vec::new(),
    };
    let cpu_before = probe::cpu_ms(&daemon)?;
    // (first start, last ready) over the guests.
    let mut span: Option<(Instant, Instant)> = None;
    let mut widen = |t0: Instant, ready: Instant| {
        span = Some(match span {
            None => (t0, ready),
            Some((a, z)) => (a.min(t0), z.max(ready)),
        });
    };
    match sys {
        Sys::Kcore | Sys::KcoreFast | Sys::KcoreClone => {
            let mut tasks = Vec::new();
            for i in 0..n {
                let b = b.clone();
                let (name, how) = (format!("{prefix}-{i}"), how.clone());
                tasks.push(tokio::spawn(async move {
                    let (vm, _) = b.kcore.create(&name, &b.guest, &how).await?;
                    let ready = b.kcore.phase_ms(&vm, "guest_ready").await?;
                    let at = vm.t0_mono + std::time::Duration::from_secs_f64(ready / 1000.0);
                    anyhow::Ok((vm.t0_mono, at))
                }));
            }
            let mut failed = None;
            for t in tasks {
                match t.await? {
                    Ok((t0, at)) => widen(t0, at),
                    Err(e) => failed = Some(e),
                }
            }
            let measured = async {
                if let Some(e) = failed {
                    return Err(e);
                }
                st.add(
                    format!("{k}/daemon_cpu"),
                    probe::cpu_ms(&daemon)? - cpu_before,
                );
                let mut pids = Vec::new();
                for i in 0..n {
                    pids.push(b.kcore.pid(&format!("{prefix}-{i}")).await?);
                }
                st.add(format!("{k}/pss"), pss_sum_mib(&pids)?);
                tokio::time::sleep(SETTLE).await;
                st.add(format!("{k}/daemon_rss"), rss_sum_mib(&[b.kcored_pid])?);
                anyhow::Ok(())
            }
            .await;
            let stops = (0..n).map(|i| {
                let b = b.clone();
                let name = format!("{prefix}-{i}");
                tokio::spawn(async move { b.kcore.delete(&name).await })
            });
            for t in stops.collect::<Vec<_>>() {
                let _ = t.await?;
            }
            measured?;
        }
        Sys::Libvirt | Sys::LibvirtSeabios => {
            let r = reference.context("no kcore reference")?;
            let g = r.libvirt_guest(b, sys == Sys::LibvirtSeabios);
            let mut tasks = Vec::new();
            for i in 0..n {
                let (g, dir, name) = (g.clone(), b.dir.clone(), format!("{prefix}-{i}"));
                tasks.push(tokio::spawn(async move {
                    let (mut dom, _) = libvirt::create(&name, &g, &dir).await?;
                    let at = ready_at(&mut dom.ready).await;
                    anyhow::Ok((dom, at))
                }));
            }
            let mut doms = Vec::new();
            let mut failed = None;
            for t in tasks {
                match t.await? {
                    Ok((dom, Ok(at))) => {
                        widen(dom.t0, at);
                        doms.push(dom);
                    }
                    Ok((dom, Err(e))) => {
                        doms.push(dom);
                        failed = Some(e);
                    }
                    Err(e) => failed = Some(e),
                }
            }
            let measured = async {
                if let Some(e) = failed {
                    return Err(e);
                }
                for d in &doms {
                    if probe::pss_kib(d.pid).is_none() {
                        anyhow::bail!(
                            "{}'s QEMU (pid {}) is gone; its log ends:\n{}",
                            d.name,
                            d.pid,
                            libvirt::log_tail(&d.name)
                        );
                    }
                }
                st.add(
                    format!("{k}/daemon_cpu"),
                    probe::cpu_ms(&daemon)? - cpu_before,
                );
                let pids: Vec<u32> = doms.iter().map(|d| d.pid).collect();
                st.add(format!("{k}/pss"), pss_sum_mib(&pids)?);
                tokio::time::sleep(SETTLE).await;
                st.add(
                    format!("{k}/daemon_rss"),
                    rss_sum_mib(&[b.libvirtd_pid, b.virtlogd_pid])?,
                );
                anyhow::Ok(())
            }
            .await;
            for d in doms {
                let _ = libvirt::destroy(d).await;
            }
            measured?;
        }
        Sys::Bare => {
            let r = reference.context("no kcore reference")?;
            let mut tasks = Vec::new();
            for i in 0..n {
                let (argv, dir, bridge) = (r.argv.clone(), b.dir.clone(), b.bridge.clone());
                tasks.push(tokio::spawn(async move {
                    let (mut vm, _) = bare::start(&argv, i + 1, &dir, &bridge).await?;
                    let at = match vm.ready.as_mut() {
                        Some(t) => ready_at(t).await,
                        None => Err(anyhow::anyhow!("no console")),
                    };
                    anyhow::Ok((vm, at))
                }));
            }
            let mut vms = Vec::new();
            let mut failed = None;
            for t in tasks {
                match t.await? {
                    Ok((vm, Ok(at))) => {
                        widen(vm.t0, at);
                        vms.push(vm);
                    }
                    Ok((vm, Err(e))) => {
                        vms.push(vm);
                        failed = Some(e);
                    }
                    Err(e) => failed = Some(e),
                }
            }
            let pids: Vec<u32> = vms.iter().map(|v| v.pid()).collect();
            let pss = pss_sum_mib(&pids);
            for vm in vms {
                bare::kill(vm).await;
            }
            if let Some(e) = failed {
                return Err(e);
            }
            st.add(format!("{k}/pss"), pss?);
        }
    }
    let (first, last) = span.context("no guest started")?;
    let all = (last - first).as_secs_f64() * 1000.0;
    st.add(format!("{k}/all_ready"), all);
    eprintln!("  {n} at once on {:<16} all ready {all:>7.0} ms", sys.key());
    Ok(())
}

/// Templates: a template of the q35 guest (`kctl template create --from-vm
/// --stop-source`), `rounds` clones one at a time (start -> ready, after a warm-up), then
/// `n` clones at once (all ready, summed PSS); the template is deleted at the end.
pub async fn templates(
    b: &Arc<Bench>,
    st: &mut Stats,
    rounds: usize,
    n: usize,
) -> anyhow::Result<()> {
    // A template is taken without NICs (each clone gets its own, hot-plugged after the
    // restore): the source is the same guest without its NIC.
    let source = Guest {
        network: None,
        ..b.guest.clone()
    };
    let (src, _) = b
        .kcore
        .create("kb-tsrc", &source, &How::Machine("q35".into()))
        .await?;
    b.kcore.phase_ms(&src, "guest_ready").await?;
    let (ms, _) = b
        .kcore
        .kctl(&[
            "template",
            "create",
            TEMPLATE,
            "--from-vm",
            "kb-tsrc",
            "--stop-source",
        ])
        .await?;
    st.add("tpl/create", ms);
    eprintln!("  template create --from-vm --stop-source: {ms:.0} ms");
    for round in 0..=rounds {
        let name = format!("kb-clone-{round}");
        let how = How::Template(TEMPLATE.into());
        let (vm, running) = b.kcore.create(&name, &b.guest, &how).await?;
        // A clone continues where the template stood: a minute is plenty (a cold boot
        // here takes 2-6 s).
        let ready = b
            .kcore
            .phase_ms_within(&vm, "guest_ready", std::time::Duration::from_secs(60))
            .await?;
        let phases = b.kcore.phases(&vm).await?;
        let stop = b.kcore.stop_force(&name).await?;
        b.kcore.delete(&name).await?;
        eprintln!(
            "  template round {round}: running {running:.1} ms ready {ready:.0} ms stop {stop:.1} ms; \
             phases (ms from the request): {}",
            phases
                .iter()
                .map(|(p, _, o)| format!("{p} {o:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if round > 0 {
            st.add("tpl/running", running);
            st.add("tpl/ready", ready);
            st.add("tpl/stop", stop);
        }
    }
    let how = How::Template(TEMPLATE.into());
    concurrent(b, st, Sys::KcoreClone, n, 0, None, how)
        .await
        .context("clones at once")?;
    b.kcore.kctl(&["template", "delete", TEMPLATE]).await?;
    b.kcore.delete("kb-tsrc").await?;
    Ok(())
}

/// Idle daemon RSS (MiB): kcored, and libvirtd + virtlogd, recorded under `key`, read
/// [`SETTLE`] after the last request.
pub async fn idle_rss(b: &Bench, st: &mut Stats, key: &str) -> anyhow::Result<()> {
    tokio::time::sleep(SETTLE).await;
    st.add(
        format!("rss/{key}/kcored"),
        probe::rss_sum_mib(&[b.kcored_pid])?,
    );
    st.add(
        format!("rss/{key}/libvirt"),
        probe::rss_sum_mib(&[b.libvirtd_pid, b.virtlogd_pid])?,
    );
    st.add(
        format!("rss/{key}/libvirtd"),
        probe::rss_sum_mib(&[b.libvirtd_pid])?,
    );
    Ok(())
}

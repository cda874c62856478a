//! kcore, driven like a user drives it: `kctl` against the benchmark's own `kcored
//! all-in-one`. Running = `kctl vm create`'s wall time (it returns once the vCPUs run);
//! ready = the `guest_ready` phase of the VM's boot timeline (stamped by the node when the
//! marker reached the console), taken against the instant kctl was spawned; stop =
//! `kctl vm stop --force`. GetVM (gRPC over the unix socket) reads the timeline, the pid
//! and `qemu.argv`.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use kcore_proto::v1 as pb;
use kcore_proto::v1::kcore_service_client::KcoreServiceClient;
use tonic::transport::Channel;

use crate::probe::BOOT_TIMEOUT;
use crate::run;

/// How often a VM's timeline is read while waiting for a phase.
const POLL: Duration = Duration::from_millis(250);

/// The guest every kcore VM of the benchmark boots.
#[derive(Clone, Debug)]
pub struct Guest {
    pub memory_mib: u32,
    pub vcpus: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    /// A 1 GiB data disk: an empty volume `<vm>-d` in the `default` pool, made before
    /// the create.
    pub disk: bool,
    /// A NIC on this kcore network.
    pub network: Option<String>,
}

/// How a VM is made.
#[derive(Clone, Debug)]
pub enum How {
    /// `--machine M`.
    Machine(String),
    /// `--profile P` (the profile picks the machine and firmware).
    Profile(String),
    /// `--template T` (memory, disks and the rest come from the template).
    Template(String),
}

pub struct Kcore {
    kctl: PathBuf,
    endpoint: String,
    api: KcoreServiceClient<Channel>,
    run_dir: PathBuf,
}

/// A VM that `kctl vm create` returned.
pub struct Created {
    pub name: String,
    /// kctl spawned (wall clock, to compare with the node's timeline stamps).
    pub t0: SystemTime,
    /// kctl spawned.
    pub t0_mono: Instant,
}

fn at_ms(phase: &pb::BootPhase, t0: SystemTime) -> anyhow::Result<f64> {
    let at = chrono::DateTime::parse_from_rfc3339(&phase.at)
        .with_context(|| format!("phase {} at {:?}", phase.name, phase.at))?;
    let at = SystemTime::from(at);
    Ok(match at.duration_since(t0) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    })
}

impl Kcore {
    pub fn new(
        kctl: PathBuf,
        sock: &std::path::Path,
        api: KcoreServiceClient<Channel>,
        run_dir: PathBuf,
    ) -> Self {
        Kcore {
            kctl,
            endpoint: format!("unix://{}", sock.display()),
            api,
            run_dir,
        }
    }

    /// `kctl --endpoint E args...`, timed.
    pub async fn kctl<S: AsRef<str>>(&self, args: &[S]) -> anyhow::Result<(f64, String)> {
        let mut all = vec!["--endpoint".to_string(), self.endpoint.clone()];
        all.extend(args.iter().map(|s| s.as_ref().to_string()));
        run::timed(&self.kctl.to_string_lossy(), &all).await
    }

    /// Whether `kctl ARGS --help` succeeds and mentions `word`.
    pub async fn supports(&self, args: &[&str], word: &str) -> bool {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--help");
        match run::cmd(&self.kctl.to_string_lossy(), &all).await {
            Ok(out) => out.contains(word),
            Err(_) => false,
        }
    }

    /// `kctl vm create NAME ...`; returns once RUNNING, with kctl's wall time in ms.
    pub async fn create(&self, name: &str, g: &Guest, how: &How) -> anyhow::Result<(Created, f64)> {
        let mut a: Vec<String> = vec!["vm".into(), "create".into(), name.into()];
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        match how {
            How::Template(t) => push(&["--template", t]),
            How::Machine(_) | How::Profile(_) => {
                let (mem, cpus) = (g.memory_mib.to_string(), g.vcpus.to_string());
                push(&["--vcpu", &cpus, "--memory", &mem]);
                push(&["--kernel", &g.kernel.to_string_lossy()]);
                push(&["--initrd", &g.initrd.to_string_lossy()]);
                push(&["--cmdline", &g.cmdline]);
                push(&["--ready-pattern", crate::probe::READY]);
                if g.disk {
                    push(&["--disk", &format!("default:{name}-d")]);
                }
                match how {
                    How::Profile(p) => push(&["--profile", p]),
                    How::Machine(m) => push(&["--machine", m]),
                    How::Template(_) => {}
                }
            }
        }
        if let Some(net) = &g.network {
            push(&["--nic", net]);
        }
        if g.disk && !matches!(how, How::Template(_)) {
            // The empty disk is made before the clock starts, as for libvirt and bare
            // QEMU (`qemu-img create`): the VM gets it as an existing volume.
            let vol = format!("{name}-d");
            self.kctl(&["volume", "create", &vol, "--size", "1"])
                .await?;
        }
        let t0 = SystemTime::now();
        let t0_mono = Instant::now();
        let (ms, _) = self.kctl(&a).await?;
        Ok((
            Created {
                name: name.to_string(),
                t0,
                t0_mono,
            },
            ms,
        ))
    }

    pub async fn get(&self, name: &str) -> anyhow::Result<pb::Vm> {
        Ok(self
            .api
            .clone()
            .get_vm(pb::GetVmRequest { name: name.into() })
            .await
            .with_context(|| format!("GetVM {name}"))?
            .into_inner())
    }

    /// ms from kctl's spawn to the phase `phase` of the VM's timeline (waits for it, at
    /// most `BOOT_TIMEOUT`).
    pub async fn phase_ms(&self, vm: &Created, phase: &str) -> anyhow::Result<f64> {
        self.phase_ms_within(vm, phase, BOOT_TIMEOUT).await
    }

    /// [`Kcore::phase_ms`], waiting at most `timeout` from kctl's spawn; asks every
    /// [`POLL`].
    pub async fn phase_ms_within(
        &self,
        vm: &Created,
        phase: &str,
        timeout: Duration,
    ) -> anyhow::Result<f64> {
        loop {
            let got = self.get(&vm.name).await?;
            let phases = got.timeline.map(|t| t.phases).unwrap_or_default();
            if let Some(p) = phases.iter().find(|p| p.name == phase) {
                return at_ms(p, vm.t0);
            }
            if got.status != pb::VmStatus::Running as i32 {
                bail!(
                    "{} is {} ({}) before {phase}",
                    vm.name,
                    got.status,
                    got.status_reason
                );
            }
            if vm.t0_mono.elapsed() > timeout {
                let names: Vec<_> = phases.iter().map(|p| p.name.as_str()).collect();
                bail!("{} reached no {phase} in time (phases: {names:?})", vm.name);
            }
            // The phase's time is the node's own stamp, so how often this asks changes
            // nothing measured; asking less leaves kcored's CPU to the guests (10 VMs
            // polled every 50 ms cost it ~0.4 s of CPU in a 10-at-once round).
            tokio::time::sleep(POLL).await;
        }
    }

    /// The timeline's phases: name, ms from kctl's spawn, ms from the request (the
    /// node's own offset).
    pub async fn phases(&self, vm: &Created) -> anyhow::Result<Vec<(String, f64, f64)>> {
        let got = self.get(&vm.name).await?;
        got.timeline
            .map(|t| t.phases)
            .unwrap_or_default()
            .into_iter()
            .map(|p| Ok((p.name.clone(), at_ms(&p, vm.t0)?, p.offset_ms)))
            .collect()
    }

    /// The VM's QEMU pid.
    pub async fn pid(&self, name: &str) -> anyhow::Result<u32> {
        let vm = self.get(name).await?;
        u32::try_from(vm.pid)
            .ok()
            .filter(|&p| p > 0)
            .with_context(|| format!("{name} has no QEMU pid"))
    }

    /// The argv kcore started the VM's QEMU with.
    pub async fn argv(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let vm = self.get(name).await?;
        let path = self.run_dir.join("vms").join(&vm.id).join("qemu.argv");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("read {}", path.display()))?
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// `kctl vm stop NAME --force`: its wall time in ms.
    pub async fn stop_force(&self, name: &str) -> anyhow::Result<f64> {
        Ok(self.kctl(&["vm", "stop", name, "--force"]).await?.0)
    }

    /// `kctl vm delete NAME --force` (its disk goes too).
    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.kctl(&["vm", "delete", name, "--force"])
            .await
            .map(drop)
    }

    /// Names of the VMs whose name starts with `prefix`.
    pub async fn names(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let vms = self
            .api
            .clone()
            .list_v_ms(pb::ListVMsRequest::default())
            .await?
            .into_inner()
            .vms;
        Ok(vms
            .into_iter()
            .map(|v| v.name)
            .filter(|n| n.starts_with(prefix))
            .collect())
    }
}

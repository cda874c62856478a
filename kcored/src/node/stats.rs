//! What the node's VMs use, sampled: every `interval` (`--stats-interval`, 10 s) each VM
//! with a QEMU gets a sample (CPU time and RSS from `/proc/<pid>`, its taps' counters
//! from `/proc/net/dev`, its disks' from QMP `query-blockstats`), kept in memory for the
//! last hour. `GetVMStats` serves the history with a fresh sample; the metrics exposition
//! reads `/proc` fresh at each scrape and the disks' counters from the last sample, so a
//! scrape never talks QMP, and a QEMU that does not answer costs the sampler
//! [`BLOCKSTATS_TIMEOUT`] at most (its disk figures stay as they were).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kcore_netstack::link::LinkCounters;
use kcore_vmm::spec::VmSpec;
use kcore_vmm::usage::BlockStats;
use kcore_vmm::vm::{Vm, VmState};

use super::Node;
use crate::error::ApiResult;
use crate::model::{DiskCounters, NicCounters, StatsSample, VmStats, VmStatus};

/// How long the history goes back.
pub const HISTORY: Duration = Duration::from_secs(3600);
/// The longest a sampler waits for one QEMU's block stats.
pub const BLOCKSTATS_TIMEOUT: Duration = Duration::from_secs(1);
/// How many QEMUs the sampler asks at once.
const CONCURRENT_QMP: usize = 16;

/// One VM's samples and its disks' last counters.
#[derive(Debug, Default)]
struct VmHistory {
    samples: VecDeque<StatsSample>,
    disks: Vec<DiskCounters>,
}

/// The samples of every VM of the node.
#[derive(Debug)]
pub struct StatsKeeper {
    interval: Duration,
    capacity: usize,
    vms: Mutex<HashMap<String, VmHistory>>,
}

impl StatsKeeper {
    pub fn new(interval: Duration) -> StatsKeeper {
        let interval = interval.max(Duration::from_millis(100));
        let capacity = (HISTORY.as_secs_f64() / interval.as_secs_f64()).ceil() as usize;
        StatsKeeper {
            interval,
            capacity: capacity.clamp(1, 36_000),
            vms: Mutex::default(),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VmHistory>> {
        self.vms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add a sample of VM `id` (its cpu_percent worked out from the one before) and its
    /// disks' counters (None: keep the last ones).
    fn record(&self, id: &str, sample: StatsSample, disks: Option<Vec<DiskCounters>>) {
        let mut vms = self.lock();
        let h = vms.entry(id.to_string()).or_default();
        let sample = sample.after(h.samples.back());
        h.samples.push_back(sample);
        while h.samples.len() > self.capacity {
            h.samples.pop_front();
        }
        if let Some(d) = disks {
            h.disks = d;
        }
    }

    /// Forget VMs not in `ids`.
    fn retain(&self, ids: &std::collections::HashSet<String>) {
        self.lock().retain(|id, _| ids.contains(id));
    }

    /// The disks' last counters of VM `id`.
    pub fn disks(&self, id: &str) -> Vec<DiskCounters> {
        self.lock()
            .get(id)
            .map(|h| h.disks.clone())
            .unwrap_or_default()
    }

    /// VM `id`'s samples taken at or after `since_ms`, and the last one.
    fn history(&self, id: &str, since_ms: i64) -> (Vec<StatsSample>, Option<StatsSample>) {
        let vms = self.lock();
        let Some(h) = vms.get(id) else {
            return (Vec::new(), None);
        };
        (
            h.samples
                .iter()
                .filter(|s| s.at_unix_ms >= since_ms)
                .copied()
                .collect(),
            h.samples.back().copied(),
        )
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The status the API names for a node's VM state.
pub fn model_status(s: VmState) -> VmStatus {
    match s {
        VmState::Stopped => VmStatus::Stopped,
        VmState::Starting => VmStatus::Starting,
        VmState::Running => VmStatus::Running,
        VmState::Paused => VmStatus::Paused,
        VmState::Stopping => VmStatus::Stopping,
        VmState::Crashed => VmStatus::Crashed,
        VmState::Error => VmStatus::Error,
        VmState::Unknown => VmStatus::Unknown,
    }
}

/// The NICs' counters as the guest sees them (a tap's transmit is the guest's receive).
pub fn nic_counters(spec: &VmSpec, links: &HashMap<String, LinkCounters>) -> Vec<NicCounters> {
    spec.nics
        .iter()
        .filter_map(|n| {
            let c = links.get(&n.tap)?;
            Some(NicCounters {
                id: n.id.clone(),
                tap: n.tap.clone(),
                rx_bytes: c.tx_bytes,
                rx_packets: c.tx_packets,
                tx_bytes: c.rx_bytes,
                tx_packets: c.rx_packets,
            })
        })
        .collect()
}

/// QEMU's block stats matched to the VM's disks, in guest order.
pub fn disk_counters(spec: &VmSpec, stats: &[BlockStats]) -> Vec<DiskCounters> {
    super::view::disk_views(&spec.disks)
        .into_iter()
        .zip(&spec.disks)
        .filter_map(|(view, disk)| {
            let s = stats.iter().find(|s| s.is_disk(&disk.id))?;
            Some(DiskCounters {
                device: view.device,
                volume: view.volume,
                read_bytes: s.read_bytes,
                written_bytes: s.written_bytes,
                read_ops: s.read_ops,
                write_ops: s.write_ops,
                flush_ops: s.flush_ops,
            })
        })
        .collect()
}

/// A sample of `vm` now from what is cheap to read (None: no QEMU, or it just went).
fn sample_now(
    vm: &Vm,
    links: &HashMap<String, LinkCounters>,
    disks: &[DiskCounters],
) -> Option<StatsSample> {
    if !vm.status().state.is_active() {
        return None;
    }
    let usage = vm.usage()?;
    let nics = nic_counters(&vm.spec(), links);
    Some(StatsSample {
        at_unix_ms: now_ms(),
        cpu_seconds: usage.cpu_seconds,
        cpu_percent: 0.0,
        rss_bytes: usage.rss_bytes,
        disk_read_bytes: disks.iter().map(|d| d.read_bytes).sum(),
        disk_written_bytes: disks.iter().map(|d| d.written_bytes).sum(),
        net_rx_bytes: nics.iter().map(|n| n.rx_bytes).sum(),
        net_tx_bytes: nics.iter().map(|n| n.tx_bytes).sum(),
    })
}

fn link_counters() -> HashMap<String, LinkCounters> {
    kcore_netstack::link::read_counters().unwrap_or_else(|e| {
        tracing::debug!(error = %e, "cannot read link counters");
        HashMap::new()
    })
}

impl Node {
    /// Sample every VM every interval, for as long as the node lives.
    pub(super) fn spawn_sampler(self: &Arc<Self>) {
        let node = Arc::downgrade(self);
        tokio::spawn(async move {
            let interval = match node.upgrade() {
                Some(n) => n.stats.interval(),
                None => return,
            };
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(n) = node.upgrade() else { return };
                n.sample_all().await;
            }
        });
    }

    /// One round of the sampler.
    async fn sample_all(&self) {
        let vms: Vec<Vm> = self.read_vms().values().cloned().collect();
        self.stats
            .retain(&vms.iter().map(|v| v.id().to_string()).collect());
        let links = link_counters();
        let asks = vms
            .into_iter()
            .filter(|vm| vm.status().state.is_active())
            .map(|vm| async move {
                let disks = match vm.qmp() {
                    Ok(qmp) => match qmp.query_blockstats(BLOCKSTATS_TIMEOUT).await {
                        Ok(s) => Some(disk_counters(&vm.spec(), &s)),
                        Err(e) => {
                            tracing::debug!(vm = %vm.name(), error = %e, "no block stats");
                            None
                        }
                    },
                    Err(_) => None,
                };
                (vm, disks)
            });
        let done: Vec<(Vm, Option<Vec<DiskCounters>>)> = futures::stream::iter(asks)
            .buffer_unordered(CONCURRENT_QMP)
            .collect()
            .await;
        for (vm, disks) in done {
            let known = disks.clone().unwrap_or_else(|| self.stats.disks(vm.id()));
            if let Some(sample) = sample_now(&vm, &links, &known) {
                self.stats.record(vm.id(), sample, disks);
            }
        }
    }

    /// VM `id`'s resource use: a sample now and the history of the last `since` (None:
    /// all of it).
    pub fn vm_stats(&self, id: &str, since: Option<Duration>) -> ApiResult<VmStats> {
        let vm = self.vm(id)?;
        let spec = vm.spec();
        let status = vm.status();
        let links = link_counters();
        let disks = self.stats.disks(id);
        let since_ms = since.map_or(i64::MIN, |d| now_ms() - d.as_millis() as i64);
        let (history, last) = self.stats.history(id, since_ms);
        let current = sample_now(&vm, &links, &disks).map(|s| s.after(last.as_ref()));
        Ok(VmStats {
            vm: spec.name.clone(),
            id: id.to_string(),
            node: self.cfg.name.clone(),
            status: model_status(status.state),
            pid: status.pid,
            vcpu: spec.vcpus,
            memory_mib: spec.memory_mib,
            interval_seconds: self.stats.interval().as_secs_f64(),
            nics: if status.state.is_active() {
                nic_counters(&spec, &links)
            } else {
                Vec::new()
            },
            current,
            history,
            disks,
            restarts: vm.restarts_total(),
        })
    }

    /// Every VM with what the metrics exposition shows of it (see [`VmFigures`]).
    pub fn vm_figures(&self) -> Vec<VmFigures> {
        let vms: Vec<Vm> = self.read_vms().values().cloned().collect();
        let links = link_counters();
        vms.iter()
            .map(|vm| {
                let spec = vm.spec();
                let state = vm.status().state;
                let active = state.is_active();
                let timeline = vm.timeline();
                let offset = |p: kcore_vmm::timeline::Phase| {
                    timeline
                        .offsets()
                        .into_iter()
                        .find(|(q, _, _)| *q == p)
                        .map(|(_, _, ms)| ms / 1000.0)
                };
                VmFigures {
                    name: spec.name.clone(),
                    id: spec.id.clone(),
                    status: model_status(state),
                    vcpus: spec.vcpus,
                    memory_bytes: u64::from(spec.memory_mib) << 20,
                    usage: if active { vm.usage() } else { None },
                    disks: if active {
                        self.stats.disks(vm.id())
                    } else {
                        Vec::new()
                    },
                    nics: if active {
                        nic_counters(&spec, &links)
                    } else {
                        Vec::new()
                    },
                    restarts: vm.restarts_total(),
                    boot_running_seconds: offset(kcore_vmm::timeline::Phase::VcpusRunning),
                    boot_ready_seconds: offset(kcore_vmm::timeline::Phase::GuestReady),
                }
            })
            .collect()
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }
}

/// One VM as the metrics exposition shows it.
#[derive(Debug, Clone)]
pub struct VmFigures {
    pub name: String,
    pub id: String,
    pub status: VmStatus,
    pub vcpus: u32,
    pub memory_bytes: u64,
    pub usage: Option<kcore_vmm::usage::ProcessUsage>,
    pub disks: Vec<DiskCounters>,
    pub nics: Vec<NicCounters>,
    pub restarts: u64,
    /// Last start: request to vCPUs running, and to guest ready, in seconds.
    pub boot_running_seconds: Option<f64>,
    pub boot_ready_seconds: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_filtered_by_time() {
        let k = StatsKeeper::new(Duration::from_secs(1200));
        assert_eq!(k.capacity, 3);
        for i in 0..5 {
            k.record(
                "a",
                StatsSample {
                    at_unix_ms: i * 1000,
                    cpu_seconds: i as f64,
                    ..Default::default()
                },
                None,
            );
        }
        let (all, last) = k.history("a", i64::MIN);
        assert_eq!(
            all.iter().map(|s| s.at_unix_ms).collect::<Vec<_>>(),
            [2000, 3000, 4000]
        );
        assert!((all[2].cpu_percent - 100.0).abs() < 1e-9);
        assert_eq!(last.map(|s| s.at_unix_ms), Some(4000));
        assert_eq!(k.history("a", 3500).0.len(), 1);
        k.retain(&std::collections::HashSet::new());
        assert!(k.history("a", i64::MIN).0.is_empty());
    }
}

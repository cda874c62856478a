//! What a VM uses, as its node samples it: CPU time and memory of its QEMU, what its disks
//! and NICs carried, a sample now and the last hour's. The node keeps the history in
//! memory ([`crate::node::stats`]); `GetVMStats` carries it to clients.

use super::VmStatus;

/// One sample. Counters are cumulative since the VM's QEMU started.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StatsSample {
    /// Unix epoch, milliseconds.
    pub at_unix_ms: i64,
    pub cpu_seconds: f64,
    /// Percent of one host cpu since the sample before (0 for the first of a run).
    pub cpu_percent: f64,
    pub rss_bytes: u64,
    pub disk_read_bytes: u64,
    pub disk_written_bytes: u64,
    /// As the guest sees it: what its taps transmitted.
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

impl StatsSample {
    /// `self` with `cpu_percent` worked out from `prev`, the sample before it. A CPU time
    /// that went down (a new QEMU) or no time between the two gives 0.
    pub fn after(mut self, prev: Option<&StatsSample>) -> StatsSample {
        self.cpu_percent = match prev {
            Some(p) if self.cpu_seconds >= p.cpu_seconds && self.at_unix_ms > p.at_unix_ms => {
                let wall = (self.at_unix_ms - p.at_unix_ms) as f64 / 1000.0;
                (self.cpu_seconds - p.cpu_seconds) / wall * 100.0
            }
            _ => 0.0,
        };
        self
    }
}

/// What one disk did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskCounters {
    /// vda, vdb, ...
    pub device: String,
    pub volume: String,
    pub read_bytes: u64,
    pub written_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
    pub flush_ops: u64,
}

/// What one NIC carried, as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NicCounters {
    /// net0, net1, ...
    pub id: String,
    pub tap: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// A VM's resource use: now, and over the last hour.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VmStats {
    pub vm: String,
    pub id: String,
    pub node: String,
    pub status: VmStatus,
    pub pid: Option<u32>,
    pub vcpu: u32,
    pub memory_mib: u32,
    /// Seconds between history samples.
    pub interval_seconds: f64,
    /// None when the VM has no QEMU.
    pub current: Option<StatsSample>,
    /// Oldest first.
    pub history: Vec<StatsSample>,
    pub disks: Vec<DiskCounters>,
    pub nics: Vec<NicCounters>,
    pub restarts: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_from_the_sample_before() {
        let a = StatsSample {
            at_unix_ms: 10_000,
            cpu_seconds: 1.0,
            ..Default::default()
        };
        let b = StatsSample {
            at_unix_ms: 12_000,
            cpu_seconds: 2.0,
            ..Default::default()
        }
        .after(Some(&a));
        assert!((b.cpu_percent - 50.0).abs() < 1e-9);
        // A new QEMU: its CPU time starts again.
        let c = StatsSample {
            at_unix_ms: 14_000,
            cpu_seconds: 0.1,
            ..Default::default()
        }
        .after(Some(&b));
        assert_eq!(c.cpu_percent, 0.0);
        assert_eq!(a.after(None).cpu_percent, 0.0);
    }
}

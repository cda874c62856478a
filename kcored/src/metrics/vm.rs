//! The node's VMs at scrape time: state, size, restarts and the last start's timings for
//! every VM; CPU time and RSS (read from `/proc` now), NIC counters (`/proc/net/dev`, now)
//! and disk counters (the sampler's last `query-blockstats`) for those with a QEMU. A
//! scrape reads files only: it never waits on a QEMU.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{Labels, encode_rows};
use crate::model::VmStatus;
use crate::node::Node;
use crate::node::stats::VmFigures;

/// The states a VM of a node can be in, each a series of `kcore_vm_state`.
const NODE_STATES: &[VmStatus] = &[
    VmStatus::Stopped,
    VmStatus::Starting,
    VmStatus::Running,
    VmStatus::Paused,
    VmStatus::Stopping,
    VmStatus::Crashed,
    VmStatus::Error,
    VmStatus::Unknown,
];

/// The per-VM collector of a node.
#[derive(Debug)]
pub struct VmCollector {
    node: Arc<Node>,
}

impl VmCollector {
    pub fn new(node: Arc<Node>) -> VmCollector {
        VmCollector { node }
    }
}

fn vm_labels(node: &str, v: &VmFigures) -> Labels {
    vec![("vm", v.name.clone()), ("node", node.to_string())]
}

fn with(mut l: Labels, more: &[(&'static str, &str)]) -> Labels {
    l.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    l
}

impl Collector for VmCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let node = self.node.name().to_string();
        let vms = self.node.vm_figures();
        let gauge = |f: &dyn Fn(&VmFigures) -> Option<f64>| -> Vec<(Labels, ConstGauge<f64>)> {
            vms.iter()
                .filter_map(|v| Some((vm_labels(&node, v), ConstGauge::new(f(v)?))))
                .collect()
        };
        let counter = |f: &dyn Fn(&VmFigures) -> Option<f64>| -> Vec<(Labels, ConstCounter<f64>)> {
            vms.iter()
                .filter_map(|v| Some((vm_labels(&node, v), ConstCounter::new(f(v)?))))
                .collect()
        };
        encode_rows(
            &mut enc,
            "kcore_vm_info",
            "A VM this node has (value 1), with its id",
            MetricType::Gauge,
            vms.iter()
                .map(|v| {
                    (
                        with(vm_labels(&node, v), &[("id", &v.id)]),
                        ConstGauge::new(1i64),
                    )
                })
                .collect(),
        )?;
        encode_rows(
            &mut enc,
            "kcore_vm_state",
            "1 for the state the VM is in, 0 for the others",
            MetricType::Gauge,
            vms.iter()
                .flat_map(|v| {
                    NODE_STATES.iter().map(|s| {
                        (
                            with(vm_labels(&node, v), &[("state", s.as_str())]),
                            ConstGauge::new(i64::from(v.status == *s)),
                        )
                    })
                })
                .collect(),
        )?;
        encode_rows(
            &mut enc,
            "kcore_vm_vcpus",
            "vCPUs the VM is given",
            MetricType::Gauge,
            gauge(&|v| Some(f64::from(v.vcpus))),
        )?;
        encode_rows(
            &mut enc,
            "kcore_vm_memory_configured_bytes",
            "Memory the VM is given",
            MetricType::Gauge,
            gauge(&|v| Some(v.memory_bytes as f64)),
        )?;
        encode_rows(
            &mut enc,
            "kcore_vm_cpu_seconds",
            "CPU time of the VM's QEMU process (vCPUs and QEMU's threads) since it started, \
             from /proc/<pid>/stat",
            MetricType::Counter,
            counter(&|v| v.usage.map(|u| u.cpu_seconds)),
        )?;
        encode_rows(
            &mut enc,
            "kcore_vm_memory_rss_bytes",
            "Resident memory of the VM's QEMU process, from /proc/<pid>/statm",
            MetricType::Gauge,
            gauge(&|v| v.usage.map(|u| u.rss_bytes as f64)),
        )?;
        encode_rows(
            &mut enc,
            "kcore_vm_restarts",
            "Starts of the VM by its restart policy since the node daemon started",
            MetricType::Counter,
            counter(&|v| Some(v.restarts as f64)),
        )?;
        encode_rows(
            &mut enc,
            "kcore_vm_boot_running_seconds",
            "Last start of the VM: from the request to its vCPUs running",
            MetricType::Gauge,
            gauge(&|v| v.boot_running_seconds),
        )?;
        encode_rows(
            &mut enc,
            "kcore_vm_boot_ready_seconds",
            "Last start of the VM: from the request to the guest ready (its ready pattern on \
             the console)",
            MetricType::Gauge,
            gauge(&|v| v.boot_ready_seconds),
        )?;
        type DiskField = fn(&crate::model::DiskCounters) -> u64;
        let disk_families: [(&str, &str, DiskField); 5] = [
            (
                "kcore_vm_disk_read_bytes",
                "Bytes the guest read from the disk",
                |d| d.read_bytes,
            ),
            (
                "kcore_vm_disk_written_bytes",
                "Bytes the guest wrote to the disk",
                |d| d.written_bytes,
            ),
            (
                "kcore_vm_disk_read_operations",
                "Read requests of the guest on the disk",
                |d| d.read_ops,
            ),
            (
                "kcore_vm_disk_write_operations",
                "Write requests of the guest on the disk",
                |d| d.write_ops,
            ),
            (
                "kcore_vm_disk_flush_operations",
                "Flush requests of the guest on the disk",
                |d| d.flush_ops,
            ),
        ];
        for (name, help, field) in disk_families {
            let rows = vms
                .iter()
                .flat_map(|v| {
                    v.disks.iter().map(|d| {
                        (
                            with(
                                vm_labels(&node, v),
                                &[("device", &d.device), ("volume", &d.volume)],
                            ),
                            ConstCounter::new(field(d)),
                        )
                    })
                })
                .collect();
            let help = format!("{help} (QMP query-blockstats, as of the node's last sample)");
            encode_rows(&mut enc, name, &help, MetricType::Counter, rows)?;
        }
        type NicField = fn(&crate::model::NicCounters) -> u64;
        let nic_families: [(&str, &str, NicField); 4] = [
            (
                "kcore_vm_network_receive_bytes",
                "Bytes the guest received",
                |n| n.rx_bytes,
            ),
            (
                "kcore_vm_network_transmit_bytes",
                "Bytes the guest sent",
                |n| n.tx_bytes,
            ),
            (
                "kcore_vm_network_receive_packets",
                "Packets the guest received",
                |n| n.rx_packets,
            ),
            (
                "kcore_vm_network_transmit_packets",
                "Packets the guest sent",
                |n| n.tx_packets,
            ),
        ];
        for (name, help, field) in nic_families {
            let rows = vms
                .iter()
                .flat_map(|v| {
                    v.nics.iter().map(|n| {
                        (
                            with(vm_labels(&node, v), &[("nic", &n.id), ("tap", &n.tap)]),
                            ConstCounter::new(field(n)),
                        )
                    })
                })
                .collect();
            let help = format!("{help} on the NIC (its tap's counters, /proc/net/dev)");
            encode_rows(&mut enc, name, &help, MetricType::Counter, rows)?;
        }
        Ok(())
    }
}

//! `VMStats` and its parts, both ways: the node makes it from [`VmStats`], the controller
//! reads it back and passes it on to the client.

use kcore_proto::v1 as pb;

use crate::model::{DiskCounters, NicCounters, StatsSample, VmStats, VmStatus};

fn sample_to_pb(s: &StatsSample) -> pb::VmStatsSample {
    pb::VmStatsSample {
        at_unix_ms: s.at_unix_ms,
        cpu_seconds: s.cpu_seconds,
        cpu_percent: s.cpu_percent,
        rss_bytes: s.rss_bytes,
        disk_read_bytes: s.disk_read_bytes,
        disk_written_bytes: s.disk_written_bytes,
        net_rx_bytes: s.net_rx_bytes,
        net_tx_bytes: s.net_tx_bytes,
    }
}

fn sample_from_pb(s: &pb::VmStatsSample) -> StatsSample {
    StatsSample {
        at_unix_ms: s.at_unix_ms,
        cpu_seconds: s.cpu_seconds,
        cpu_percent: s.cpu_percent,
        rss_bytes: s.rss_bytes,
        disk_read_bytes: s.disk_read_bytes,
        disk_written_bytes: s.disk_written_bytes,
        net_rx_bytes: s.net_rx_bytes,
        net_tx_bytes: s.net_tx_bytes,
    }
}

pub fn vm_stats_to_pb(s: &VmStats) -> pb::VmStats {
    pb::VmStats {
        vm: s.vm.clone(),
        id: s.id.clone(),
        node: s.node.clone(),
        status: s.status as i32,
        pid: s.pid.and_then(|p| i32::try_from(p).ok()).unwrap_or(0),
        vcpu: s.vcpu,
        memory_mb: s.memory_mib,
        interval_seconds: s.interval_seconds,
        current: s.current.as_ref().map(sample_to_pb),
        history: s.history.iter().map(sample_to_pb).collect(),
        disks: s
            .disks
            .iter()
            .map(|d| pb::DiskStats {
                device: d.device.clone(),
                volume: d.volume.clone(),
                read_bytes: d.read_bytes,
                written_bytes: d.written_bytes,
                read_ops: d.read_ops,
                write_ops: d.write_ops,
                flush_ops: d.flush_ops,
            })
            .collect(),
        nics: s
            .nics
            .iter()
            .map(|n| pb::NicStats {
                id: n.id.clone(),
                tap: n.tap.clone(),
                rx_bytes: n.rx_bytes,
                rx_packets: n.rx_packets,
                tx_bytes: n.tx_bytes,
                tx_packets: n.tx_packets,
            })
            .collect(),
        restarts: s.restarts,
    }
}

pub fn vm_stats_from_pb(s: &pb::VmStats) -> VmStats {
    VmStats {
        vm: s.vm.clone(),
        id: s.id.clone(),
        node: s.node.clone(),
        status: VmStatus::from_i32(s.status),
        pid: u32::try_from(s.pid).ok().filter(|p| *p > 0),
        vcpu: s.vcpu,
        memory_mib: s.memory_mb,
        interval_seconds: s.interval_seconds,
        current: s.current.as_ref().map(sample_from_pb),
        history: s.history.iter().map(sample_from_pb).collect(),
        disks: s
            .disks
            .iter()
            .map(|d| DiskCounters {
                device: d.device.clone(),
                volume: d.volume.clone(),
                read_bytes: d.read_bytes,
                written_bytes: d.written_bytes,
                read_ops: d.read_ops,
                write_ops: d.write_ops,
                flush_ops: d.flush_ops,
            })
            .collect(),
        nics: s
            .nics
            .iter()
            .map(|n| NicCounters {
                id: n.id.clone(),
                tap: n.tap.clone(),
                rx_bytes: n.rx_bytes,
                rx_packets: n.rx_packets,
                tx_bytes: n.tx_bytes,
                tx_packets: n.tx_packets,
            })
            .collect(),
        restarts: s.restarts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_survive_the_round_trip() {
        let s = VmStats {
            vm: "web".into(),
            id: "id-1".into(),
            node: "n1".into(),
            status: VmStatus::Running,
            pid: Some(42),
            vcpu: 2,
            memory_mib: 256,
            interval_seconds: 10.0,
            current: Some(StatsSample {
                at_unix_ms: 5,
                cpu_seconds: 1.5,
                cpu_percent: 12.0,
                rss_bytes: 1 << 20,
                disk_read_bytes: 7,
                disk_written_bytes: 8,
                net_rx_bytes: 9,
                net_tx_bytes: 10,
            }),
            history: vec![StatsSample::default(); 3],
            disks: vec![DiskCounters {
                device: "vda".into(),
                read_ops: 3,
                ..Default::default()
            }],
            nics: vec![NicCounters {
                id: "net0".into(),
                rx_packets: 4,
                ..Default::default()
            }],
            restarts: 2,
        };
        assert_eq!(vm_stats_from_pb(&vm_stats_to_pb(&s)), s);
    }
}

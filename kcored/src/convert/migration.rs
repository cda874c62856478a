//! Live migration messages: requests, TLS material and progress, both sides of NodeAgent
//! and the public API.

use kcore_proto::v1 as pb;
use kcore_vmm::migration::{Progress, TlsFiles};

use crate::model::{DrainedVm, MigrateVm, MigrationProgress};

pub fn tls_to_pb(t: &TlsFiles) -> pb::MigrationTls {
    pb::MigrationTls {
        ca_pem: t.ca_pem.clone(),
        cert_pem: t.cert_pem.clone(),
        key_pem: t.key_pem.clone(),
    }
}

pub fn tls_from_pb(t: Option<&pb::MigrationTls>) -> TlsFiles {
    let t = t.cloned().unwrap_or_default();
    TlsFiles {
        ca_pem: t.ca_pem,
        cert_pem: t.cert_pem,
        key_pem: t.key_pem,
    }
}

/// A node's progress report (the source QEMU's figures).
pub fn vmm_progress_to_pb(p: &Progress) -> pb::MigrationProgress {
    pb::MigrationProgress {
        phase: p.phase.map(|p| p.as_str()).unwrap_or_default().to_string(),
        bytes_done: p.bytes_done,
        bytes_total: p.bytes_total,
        dirty_rate: p.dirty_rate,
        expected_downtime_ms: p.expected_downtime_ms,
        ram_passes: p.ram_passes.min(u64::from(u32::MAX)) as u32,
        downtime_ms: p.downtime_ms,
        ..Default::default()
    }
}

pub fn migration_progress_to_pb(p: &MigrationProgress) -> pb::MigrationProgress {
    pb::MigrationProgress {
        vm: p.vm.clone(),
        phase: p.phase.clone(),
        bytes_done: p.bytes_done,
        bytes_total: p.bytes_total,
        dirty_rate: p.dirty_rate,
        expected_downtime_ms: p.expected_downtime_ms,
        ram_passes: p.ram_passes,
        downtime_ms: p.downtime_ms,
        elapsed_ms: p.elapsed_ms,
        from_node: p.from_node.clone(),
        to_node: p.to_node.clone(),
    }
}

pub fn migration_progress_from_pb(p: &pb::MigrationProgress) -> MigrationProgress {
    MigrationProgress {
        vm: p.vm.clone(),
        phase: p.phase.clone(),
        bytes_done: p.bytes_done,
        bytes_total: p.bytes_total,
        dirty_rate: p.dirty_rate,
        expected_downtime_ms: p.expected_downtime_ms,
        ram_passes: p.ram_passes,
        downtime_ms: p.downtime_ms,
        elapsed_ms: p.elapsed_ms,
        from_node: p.from_node.clone(),
        to_node: p.to_node.clone(),
    }
}

pub fn migrate_from_pb(r: &pb::MigrateVmRequest) -> MigrateVm {
    MigrateVm {
        vm: r.name.clone(),
        to: r.to_node.clone(),
        timeout_secs: r.timeout_secs,
        max_downtime_ms: r.max_downtime_ms,
        bandwidth_mib: r.bandwidth_mib,
    }
}

pub fn drained_to_pb(d: &DrainedVm) -> pb::DrainedVm {
    pb::DrainedVm {
        name: d.name.clone(),
        action: d.action.clone(),
        to_node: d.to_node.clone(),
        reason: d.reason.clone(),
        downtime_ms: d.downtime_ms,
    }
}

//! Translation between the proto API types and the vmm domain types.

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use kcore_proto::v1 as pb;
use kcore_vmm::spec::{Firmware, MachineType, RestartPolicy, VmSpec};
use kcore_vmm::timeline::Timeline;
use kcore_vmm::vm::VmState;

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The names of the networks in place (ready) on a node.
pub fn ready_networks(nets: Vec<pb::NodeNetwork>) -> Vec<String> {
    nets.into_iter()
        .filter(|n| n.status.as_ref().is_some_and(|s| s.ready))
        .filter_map(|n| n.network.map(|d| d.name))
        .collect()
}

pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

pub fn status_to_pb(s: VmState) -> pb::VmStatus {
    match s {
        VmState::Stopped => pb::VmStatus::Stopped,
        VmState::Starting => pb::VmStatus::Starting,
        VmState::Running => pb::VmStatus::Running,
        VmState::Paused => pb::VmStatus::Paused,
        VmState::Stopping => pb::VmStatus::Stopping,
        VmState::Crashed => pb::VmStatus::Crashed,
        VmState::Error => pb::VmStatus::Error,
        VmState::Unknown => pb::VmStatus::Unknown,
    }
}

/// The short status name users see (RUNNING, not VM_STATUS_RUNNING).
pub fn status_name(s: pb::VmStatus) -> &'static str {
    s.as_str_name().trim_start_matches("VM_STATUS_")
}

pub fn timeline_to_pb(t: &Timeline) -> pb::BootTimeline {
    pb::BootTimeline {
        phases: t
            .offsets()
            .into_iter()
            .map(|(phase, at, off)| pb::BootPhase {
                name: phase.as_str().to_string(),
                offset_ms: (off * 1000.0).round() / 1000.0,
                at: rfc3339(at),
            })
            .collect(),
    }
}

fn opt_path(s: &str) -> Option<std::path::PathBuf> {
    (!s.is_empty()).then(|| s.into())
}

fn opt_str(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The node's spec from the API's.
pub fn spec_from_pb(id: &str, name: &str, s: &pb::VmSpec) -> VmSpec {
    let machine = match pb::MachineType::try_from(s.machine).unwrap_or_default() {
        pb::MachineType::Pc => MachineType::Pc,
        pb::MachineType::Microvm => MachineType::Microvm,
        pb::MachineType::Q35 | pb::MachineType::Unspecified => MachineType::Q35,
    };
    let restart_policy = match pb::RestartPolicy::try_from(s.restart_policy).unwrap_or_default() {
        pb::RestartPolicy::OnFailure => RestartPolicy::OnFailure,
        pb::RestartPolicy::Always => RestartPolicy::Always,
        pb::RestartPolicy::Never | pb::RestartPolicy::Unspecified => RestartPolicy::Never,
    };
    VmSpec {
        id: id.to_string(),
        name: name.to_string(),
        machine,
        vcpus: s.vcpu,
        memory_mib: s.memory_mb,
        kernel: opt_path(&s.kernel),
        initrd: opt_path(&s.initrd),
        cmdline: opt_str(&s.cmdline),
        ready_pattern: opt_str(&s.ready_pattern),
        restart_policy,
        disks: Vec::new(),
        firmware: match pb::Firmware::try_from(s.firmware).unwrap_or_default() {
            pb::Firmware::Uefi => Firmware::Uefi,
            pb::Firmware::Bios | pb::Firmware::Unspecified => Firmware::Bios,
        },
        uefi_code: None,
        uefi_vars: None,
        // The node makes the NICs (ids, taps) from the request's.
        nics: Vec::new(),
        // The node gives the VM its QEMU uid.
        qemu_uid: None,
        autostart: s.autostart,
    }
}

/// The API's spec from the node's.
pub fn spec_to_pb(s: &VmSpec) -> pb::VmSpec {
    let path = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    pb::VmSpec {
        vcpu: s.vcpus,
        memory_mb: s.memory_mib,
        machine: match s.machine {
            MachineType::Q35 => pb::MachineType::Q35,
            MachineType::Pc => pb::MachineType::Pc,
            MachineType::Microvm => pb::MachineType::Microvm,
        } as i32,
        kernel: path(&s.kernel),
        initrd: path(&s.initrd),
        cmdline: s.cmdline.clone().unwrap_or_default(),
        ready_pattern: s.ready_pattern.clone().unwrap_or_default(),
        restart_policy: match s.restart_policy {
            RestartPolicy::Never => pb::RestartPolicy::Never,
            RestartPolicy::OnFailure => pb::RestartPolicy::OnFailure,
            RestartPolicy::Always => pb::RestartPolicy::Always,
        } as i32,
        firmware: match s.firmware {
            Firmware::Bios => pb::Firmware::Bios,
            Firmware::Uefi => pb::Firmware::Uefi,
        } as i32,
        nics: s
            .nics
            .iter()
            .map(|n| pb::NicRequest {
                network: n.network.clone(),
                mac: n.mac.to_string(),
                model: n.model.as_str().to_string(),
            })
            .collect(),
        autostart: s.autostart,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_through_the_api() {
        let pb_spec = pb::VmSpec {
            vcpu: 2,
            memory_mb: 256,
            machine: pb::MachineType::Microvm as i32,
            kernel: "/k".into(),
            initrd: String::new(),
            cmdline: "console=ttyS0".into(),
            ready_pattern: "READY".into(),
            restart_policy: pb::RestartPolicy::OnFailure as i32,
            firmware: pb::Firmware::Uefi as i32,
            autostart: true,
            ..Default::default()
        };
        let s = spec_from_pb("id", "n", &pb_spec);
        assert_eq!(s.initrd, None);
        assert_eq!(spec_to_pb(&s), pb_spec);
        assert_eq!(status_name(pb::VmStatus::Running), "RUNNING");
    }
}

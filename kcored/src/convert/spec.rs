//! A VM's spec between the API and the domain: what a create or an update asks for
//! ([`VmSpec`](pb::VmSpec) to and from [`VmRequest`]), with its machine, profile, restart
//! policy, firmware, NICs and cloud-init data.

use kcore_proto::v1 as pb;
use kcore_types::{ImageName, MacAddr, NetworkName, NodeName, PoolName, VmName, VolumeName};
use kcore_vmm::spec::{Firmware, MachineType, Profile, RestartPolicy};

use super::{opt_name, opt_str};
use crate::error::{ApiError, ApiResult};
use crate::model::{
    Boot, CloudInit, CreateVm, DiskRequest, ImageDisk, KernelBoot, NicRequest, VmRequest, VmUpdate,
};

pub(crate) fn machine_from_pb(m: i32) -> Option<MachineType> {
    match pb::MachineType::try_from(m).unwrap_or_default() {
        pb::MachineType::Q35 => Some(MachineType::Q35),
        pb::MachineType::Pc => Some(MachineType::Pc),
        pb::MachineType::Microvm => Some(MachineType::Microvm),
        pb::MachineType::Unspecified => None,
    }
}

pub(crate) fn machine_to_pb(m: Option<MachineType>) -> pb::MachineType {
    match m {
        None => pb::MachineType::Unspecified,
        Some(MachineType::Q35) => pb::MachineType::Q35,
        Some(MachineType::Pc) => pb::MachineType::Pc,
        Some(MachineType::Microvm) => pb::MachineType::Microvm,
    }
}

pub(crate) fn profile_from_pb(p: i32) -> Option<Profile> {
    match pb::Profile::try_from(p).unwrap_or_default() {
        pb::Profile::Standard => Some(Profile::Standard),
        pb::Profile::Fast => Some(Profile::Fast),
        pb::Profile::Unspecified => None,
    }
}

pub(crate) fn profile_to_pb(p: Option<Profile>) -> pb::Profile {
    match p {
        None => pb::Profile::Unspecified,
        Some(Profile::Standard) => pb::Profile::Standard,
        Some(Profile::Fast) => pb::Profile::Fast,
    }
}

pub(crate) fn restart_from_pb(r: i32) -> Option<RestartPolicy> {
    match pb::RestartPolicy::try_from(r).unwrap_or_default() {
        pb::RestartPolicy::Never => Some(RestartPolicy::Never),
        pb::RestartPolicy::OnFailure => Some(RestartPolicy::OnFailure),
        pb::RestartPolicy::Always => Some(RestartPolicy::Always),
        pb::RestartPolicy::Unspecified => None,
    }
}

pub(crate) fn restart_to_pb(r: Option<RestartPolicy>) -> pb::RestartPolicy {
    match r {
        None => pb::RestartPolicy::Unspecified,
        Some(RestartPolicy::Never) => pb::RestartPolicy::Never,
        Some(RestartPolicy::OnFailure) => pb::RestartPolicy::OnFailure,
        Some(RestartPolicy::Always) => pb::RestartPolicy::Always,
    }
}

pub(crate) fn firmware_from_pb(f: i32) -> Option<Firmware> {
    match pb::Firmware::try_from(f).unwrap_or_default() {
        pb::Firmware::Bios => Some(Firmware::Bios),
        pb::Firmware::Uefi => Some(Firmware::Uefi),
        pb::Firmware::Unspecified => None,
    }
}

pub(crate) fn firmware_to_pb(f: Option<Firmware>) -> pb::Firmware {
    match f {
        None => pb::Firmware::Unspecified,
        Some(Firmware::Bios) => pb::Firmware::Bios,
        Some(Firmware::Uefi) => pb::Firmware::Uefi,
    }
}

/// A NIC request from the API's (as in a create, or `AttachNic`).
pub fn nic_from_pb(n: &pb::NicRequest) -> ApiResult<NicRequest> {
    Ok(NicRequest {
        network: NetworkName::parse(&n.network)?,
        mac: opt_name::<MacAddr>(&n.mac)?,
        model: if n.model.is_empty() {
            None
        } else {
            Some(n.model.parse().map_err(ApiError::InvalidArgument)?)
        },
    })
}

pub(crate) fn nics_from_pb(nics: &[pb::NicRequest]) -> ApiResult<Vec<NicRequest>> {
    nics.iter().map(nic_from_pb).collect()
}

pub(crate) fn nics_to_pb(nics: &[NicRequest]) -> Vec<pb::NicRequest> {
    nics.iter()
        .map(|n| pb::NicRequest {
            network: n.network.to_string(),
            mac: n.mac.map(|m| m.to_string()).unwrap_or_default(),
            model: n.model.map(|m| m.as_str().to_string()).unwrap_or_default(),
        })
        .collect()
}

/// A spec the store kept as the proto's JSON (schema versions up to 11): as a request,
/// or, when it is none (a VM adopted from a node), described from what it has.
pub fn request_from_stored_proto_json(spec: &str, disks: &str) -> VmRequest {
    let old: pb::VmSpec = serde_json::from_str(spec).unwrap_or_default();
    let disks: Vec<pb::VmDisk> = serde_json::from_str(disks).unwrap_or_default();
    request_from_pb(&old).unwrap_or_else(|_| request_of_defined(&old, &disks))
}

/// A create from the API's request.
pub fn create_from_pb(r: pb::CreateVmRequest) -> ApiResult<CreateVm> {
    let spec = r
        .spec
        .ok_or_else(|| ApiError::InvalidArgument("spec is required".into()))?;
    Ok(CreateVm {
        name: VmName::parse(&r.name)?,
        request: request_from_pb(&spec)?,
        node: if r.node.is_empty() {
            None
        } else {
            Some(NodeName::parse(&r.node)?)
        },
        start: !r.no_start,
        wait: !r.no_wait,
    })
}

/// What a create asks for, from the API's spec: names, MACs and models parsed, the boot
/// source and the disks in their shapes. Ranges are [`VmRequest::validate`]'s.
pub fn request_from_pb(s: &pb::VmSpec) -> ApiResult<VmRequest> {
    let bad = |m: &str| Err(ApiError::InvalidArgument(m.to_string()));
    let kernel = if s.kernel.is_empty() {
        if !s.initrd.is_empty() {
            return bad("initrd given without a kernel");
        }
        if !s.cmdline.is_empty() {
            return bad("cmdline given without a kernel");
        }
        None
    } else {
        Some(KernelBoot {
            kernel: s.kernel.clone().into(),
            initrd: opt_str(&s.initrd).map(Into::into),
            cmdline: opt_str(&s.cmdline),
        })
    };
    let image = if s.image.is_empty() {
        if s.disk_size_gb > 0 {
            return bad("--disk-size needs --image (it sizes the boot disk cloned from it)");
        }
        if !s.root_pool.is_empty() {
            return bad("--root-pool needs --image (it is where the boot disk is cloned)");
        }
        None
    } else {
        Some(ImageDisk {
            image: ImageName::parse(&s.image)?,
            size_gib: (s.disk_size_gb > 0).then_some(s.disk_size_gb),
            pool: opt_name(&s.root_pool)?,
        })
    };
    let boot = match (kernel, image) {
        _ if !s.template.is_empty() => {
            if !s.kernel.is_empty() || !s.image.is_empty() || !s.disks.is_empty() {
                return bad(
                    "a clone of a template boots nothing of its own: give no kernel, image or \
                     disks with --template",
                );
            }
            Boot::Template(kcore_types::TemplateName::parse(&s.template)?)
        }
        (Some(k), Some(i)) => Boot::Both(k, i),
        (Some(k), None) => Boot::Kernel(k),
        (None, i) => Boot::Disk(i),
    };
    let disks = s
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let pool = opt_name(&d.pool)?;
            if d.volume.is_empty() {
                Ok(DiskRequest::New {
                    pool,
                    size_gib: d.size_gb,
                })
            } else if d.size_gb != 0 {
                Err(ApiError::InvalidArgument(format!(
                    "disk {}: give a size for a new volume or an existing volume, not both",
                    i + 1
                )))
            } else {
                Ok(DiskRequest::Existing {
                    pool,
                    volume: VolumeName::parse(&d.volume)?,
                })
            }
        })
        .collect::<ApiResult<_>>()?;
    Ok(VmRequest {
        vcpus: s.vcpu,
        memory_mib: s.memory_mb,
        machine: machine_from_pb(s.machine),
        profile: profile_from_pb(s.profile),
        firmware: firmware_from_pb(s.firmware),
        restart: restart_from_pb(s.restart_policy),
        boot,
        disks,
        nics: nics_from_pb(&s.nics)?,
        ready_pattern: opt_str(&s.ready_pattern),
        autostart: s.autostart,
        // A message with every file empty is no cloud-init.
        cloud_init: s
            .cloud_init
            .as_ref()
            .map(cloud_init_from_pb)
            .filter(|c| !c.is_empty()),
    })
}

pub(crate) fn cloud_init_from_pb(c: &pb::CloudInit) -> CloudInit {
    CloudInit {
        user_data: c.user_data.clone(),
        meta_data: c.meta_data.clone(),
        network_config: c.network_config.clone(),
    }
}

pub(crate) fn cloud_init_to_pb(c: &CloudInit) -> pb::CloudInit {
    pb::CloudInit {
        user_data: c.user_data.clone(),
        meta_data: c.meta_data.clone(),
        network_config: c.network_config.clone(),
    }
}

/// A change to a VM from the API's request (its `name` is the VM's name or id).
pub fn update_from_pb(r: &pb::UpdateVmRequest) -> VmUpdate {
    VmUpdate {
        vcpus: r.vcpu,
        memory_mib: r.memory_mb,
        cloud_init: r.cloud_init.as_ref().map(cloud_init_from_pb),
        autostart: r.autostart,
    }
}

/// The API's request of a change to VM `name` (a node takes the VM's id).
pub fn update_to_pb(name: &str, u: &VmUpdate) -> pb::UpdateVmRequest {
    pb::UpdateVmRequest {
        name: name.to_string(),
        vcpu: u.vcpus,
        memory_mb: u.memory_mib,
        cloud_init: u.cloud_init.as_ref().map(cloud_init_to_pb),
        autostart: u.autostart,
    }
}

/// The API's spec of a request (the spec a VM was created from).
pub fn request_to_pb(r: &VmRequest) -> pb::VmSpec {
    let k = r.boot.kernel();
    let i = r.boot.image();
    let path = |p: Option<&std::path::PathBuf>| {
        p.map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    pb::VmSpec {
        vcpu: r.vcpus,
        memory_mb: r.memory_mib,
        machine: machine_to_pb(r.machine) as i32,
        profile: profile_to_pb(r.profile) as i32,
        kernel: path(k.map(|k| &k.kernel)),
        initrd: path(k.and_then(|k| k.initrd.as_ref())),
        cmdline: k.and_then(|k| k.cmdline.clone()).unwrap_or_default(),
        ready_pattern: r.ready_pattern.clone().unwrap_or_default(),
        restart_policy: restart_to_pb(r.restart) as i32,
        image: i.map(|i| i.image.to_string()).unwrap_or_default(),
        template: match &r.boot {
            crate::model::Boot::Template(t) => t.to_string(),
            _ => String::new(),
        },
        disk_size_gb: i.and_then(|i| i.size_gib).unwrap_or(0),
        disks: r
            .disks
            .iter()
            .map(|d| match d {
                DiskRequest::New { pool, size_gib } => pb::DiskRequest {
                    pool: pool.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                    size_gb: *size_gib,
                    volume: String::new(),
                },
                DiskRequest::Existing { pool, volume } => pb::DiskRequest {
                    pool: pool.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                    size_gb: 0,
                    volume: volume.to_string(),
                },
            })
            .collect(),
        firmware: firmware_to_pb(r.firmware) as i32,
        root_pool: i
            .and_then(|i| i.pool.as_ref())
            .map(|p| p.to_string())
            .unwrap_or_default(),
        nics: nics_to_pb(&r.nics),
        autostart: r.autostart,
        cloud_init: r.cloud_init.as_ref().map(cloud_init_to_pb),
    }
}

/// A request that describes a VM a node has defined, for a VM the store does not know (or
/// a stored spec older versions wrote that does not parse as a request): its kernel, its
/// disks as the existing volumes they are, its NICs. Nothing here is refused.
pub fn request_of_defined(s: &pb::VmSpec, disks: &[pb::VmDisk]) -> VmRequest {
    let kernel = (!s.kernel.is_empty()).then(|| KernelBoot {
        kernel: s.kernel.clone().into(),
        initrd: opt_str(&s.initrd).map(Into::into),
        cmdline: opt_str(&s.cmdline),
    });
    let nics = s
        .nics
        .iter()
        .filter_map(|n| {
            Some(NicRequest {
                network: NetworkName::parse(&n.network).ok()?,
                mac: n.mac.parse().ok(),
                model: n.model.parse().ok(),
            })
        })
        .collect();
    VmRequest {
        vcpus: s.vcpu,
        memory_mib: s.memory_mb,
        machine: machine_from_pb(s.machine),
        profile: profile_from_pb(s.profile),
        firmware: firmware_from_pb(s.firmware),
        restart: restart_from_pb(s.restart_policy),
        boot: match (kernel, kcore_types::TemplateName::parse(&s.template)) {
            (_, Ok(t)) => Boot::Template(t),
            (Some(k), _) => Boot::Kernel(k),
            (None, _) => Boot::Disk(None),
        },
        disks: disks
            .iter()
            .filter_map(|d| {
                Some(DiskRequest::Existing {
                    pool: PoolName::parse(&d.pool).ok(),
                    volume: VolumeName::parse(&d.volume).ok()?,
                })
            })
            .collect(),
        nics,
        ready_pattern: opt_str(&s.ready_pattern),
        autostart: s.autostart,
        cloud_init: None,
    }
}

//! Translation between the proto API types and the domain types: what a create asks for,
//! VMs, nodes, events, certificates here; pools, images, volumes and networks in
//! [`listing`]. The node's own views are converted at its edge, `node/convert.rs`.

mod listing;
mod migration;
mod stats;
mod template;

pub use listing::*;
pub use migration::*;
pub use stats::{vm_stats_from_pb, vm_stats_to_pb};
pub use template::{template_from_pb, template_to_pb};

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use kcore_proto::v1 as pb;
use kcore_types::{ImageName, MacAddr, NetworkName, NodeName, PoolName, VmName, VolumeName};
use kcore_vmm::spec::{Firmware, MachineType, Profile, RestartPolicy};

use crate::caller::Caller;
use crate::controller::store::VmRow;
use crate::error::{ApiError, ApiResult};
use crate::model::{
    Boot, CertInfo, CloudInit, CreateVm, DiskRequest, DiskView, Event, ImageDisk, KernelBoot,
    NicRequest, NicView, NodeFacts, NodeInfo, NodeView, NodeVms, Timeline, TimelinePhase, VmReport,
    VmRequest, VmStatus, VmUpdate,
};

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

fn opt_str(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn opt_name<T: std::str::FromStr<Err = kcore_types::TypeError>>(s: &str) -> ApiResult<Option<T>> {
    Ok(if s.is_empty() { None } else { Some(s.parse()?) })
}

fn machine_from_pb(m: i32) -> Option<MachineType> {
    match pb::MachineType::try_from(m).unwrap_or_default() {
        pb::MachineType::Q35 => Some(MachineType::Q35),
        pb::MachineType::Pc => Some(MachineType::Pc),
        pb::MachineType::Microvm => Some(MachineType::Microvm),
        pb::MachineType::Unspecified => None,
    }
}

fn machine_to_pb(m: Option<MachineType>) -> pb::MachineType {
    match m {
        None => pb::MachineType::Unspecified,
        Some(MachineType::Q35) => pb::MachineType::Q35,
        Some(MachineType::Pc) => pb::MachineType::Pc,
        Some(MachineType::Microvm) => pb::MachineType::Microvm,
    }
}

fn profile_from_pb(p: i32) -> Option<Profile> {
    match pb::Profile::try_from(p).unwrap_or_default() {
        pb::Profile::Standard => Some(Profile::Standard),
        pb::Profile::Fast => Some(Profile::Fast),
        pb::Profile::Unspecified => None,
    }
}

fn profile_to_pb(p: Option<Profile>) -> pb::Profile {
    match p {
        None => pb::Profile::Unspecified,
        Some(Profile::Standard) => pb::Profile::Standard,
        Some(Profile::Fast) => pb::Profile::Fast,
    }
}

fn restart_from_pb(r: i32) -> Option<RestartPolicy> {
    match pb::RestartPolicy::try_from(r).unwrap_or_default() {
        pb::RestartPolicy::Never => Some(RestartPolicy::Never),
        pb::RestartPolicy::OnFailure => Some(RestartPolicy::OnFailure),
        pb::RestartPolicy::Always => Some(RestartPolicy::Always),
        pb::RestartPolicy::Unspecified => None,
    }
}

fn restart_to_pb(r: Option<RestartPolicy>) -> pb::RestartPolicy {
    match r {
        None => pb::RestartPolicy::Unspecified,
        Some(RestartPolicy::Never) => pb::RestartPolicy::Never,
        Some(RestartPolicy::OnFailure) => pb::RestartPolicy::OnFailure,
        Some(RestartPolicy::Always) => pb::RestartPolicy::Always,
    }
}

fn firmware_from_pb(f: i32) -> Option<Firmware> {
    match pb::Firmware::try_from(f).unwrap_or_default() {
        pb::Firmware::Bios => Some(Firmware::Bios),
        pb::Firmware::Uefi => Some(Firmware::Uefi),
        pb::Firmware::Unspecified => None,
    }
}

fn firmware_to_pb(f: Option<Firmware>) -> pb::Firmware {
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

fn nics_from_pb(nics: &[pb::NicRequest]) -> ApiResult<Vec<NicRequest>> {
    nics.iter().map(nic_from_pb).collect()
}

fn nics_to_pb(nics: &[NicRequest]) -> Vec<pb::NicRequest> {
    nics.iter()
        .map(|n| pb::NicRequest {
            network: n.network.to_string(),
            mac: n.mac.map(|m| m.to_string()).unwrap_or_default(),
            model: n.model.map(|m| m.as_str().to_string()).unwrap_or_default(),
        })
        .collect()
}

fn timeline_view_to_pb(t: &Timeline) -> pb::BootTimeline {
    pb::BootTimeline {
        phases: t
            .phases
            .iter()
            .map(|p| pb::BootPhase {
                name: p.name.clone(),
                offset_ms: p.offset_ms,
                at: p.at.clone(),
            })
            .collect(),
    }
}

fn timeline_view_from_pb(t: &pb::BootTimeline) -> Timeline {
    Timeline {
        phases: t
            .phases
            .iter()
            .map(|p| TimelinePhase {
                name: p.name.clone(),
                offset_ms: p.offset_ms,
                at: p.at.clone(),
            })
            .collect(),
    }
}

fn disk_view_to_pb(d: &DiskView) -> pb::VmDisk {
    pb::VmDisk {
        volume: d.volume.clone(),
        pool: d.pool.clone(),
        device: d.device.clone(),
        size_bytes: d.size_bytes,
        format: d.format.clone(),
        image: d.image.clone(),
    }
}

fn disk_view_from_pb(d: &pb::VmDisk) -> DiskView {
    DiskView {
        volume: d.volume.clone(),
        pool: d.pool.clone(),
        device: d.device.clone(),
        size_bytes: d.size_bytes,
        format: d.format.clone(),
        image: d.image.clone(),
    }
}

fn nic_view_to_pb(n: &NicView) -> pb::VmNic {
    pb::VmNic {
        id: n.id.clone(),
        network: n.network.clone(),
        mac: n.mac.clone(),
        model: n.model.clone(),
        tap: n.tap.clone(),
        ip: n.ip.clone(),
    }
}

fn nic_view_from_pb(n: &pb::VmNic) -> NicView {
    NicView {
        id: n.id.clone(),
        network: n.network.clone(),
        mac: n.mac.clone(),
        model: n.model.clone(),
        tap: n.tap.clone(),
        ip: n.ip.clone(),
    }
}

/// What a node reports of a VM, as the controller keeps it.
pub fn report_from_pb(nv: &pb::NodeVm) -> VmReport {
    VmReport {
        id: nv.id.clone(),
        name: nv.name.clone(),
        status: VmStatus::from_i32(nv.status),
        reason: nv.status_reason.clone(),
        pid: nv.pid,
        timeline: nv.timeline.as_ref().map(timeline_view_from_pb),
        seq: nv.seq,
        disks: nv.disks.iter().map(disk_view_from_pb).collect(),
        nics: nv.nics.iter().map(nic_view_from_pb).collect(),
        defined: nv.spec.as_ref().map(|s| request_of_defined(s, &nv.disks)),
    }
}

/// What a heartbeat says of a node's VMs.
pub fn node_vms_from_pb(hb: &pb::NodeHeartbeat) -> NodeVms {
    NodeVms {
        seq: hb.seq,
        defining: hb.defining.clone(),
        vms: hb
            .vms
            .iter()
            .map(|v| (v.id.clone(), v.name.clone(), VmStatus::from_i32(v.status)))
            .collect(),
    }
}

/// A node's own facts, as it reports them.
pub fn node_info_from_pb(i: &pb::NodeInfo) -> NodeInfo {
    NodeInfo {
        name: i.name.clone(),
        hostname: i.hostname.clone(),
        cpus: i.cpus,
        memory_mb: i.memory_mb,
        version: i.version.clone(),
        qemu_version: i.qemu_version.clone(),
        accel: i.accel.clone(),
    }
}

/// What the controller keeps of a heartbeat (its VM list is reconciled, not kept).
pub fn node_facts_from_pb(hb: &pb::NodeHeartbeat) -> NodeFacts {
    NodeFacts {
        info: hb.info.as_ref().map(node_info_from_pb),
        pools: hb.pools.iter().map(pool_from_pb).collect(),
        networks: hb.networks.clone(),
        images: hb.images.clone(),
    }
}

/// A node as the API shows it.
pub fn node_to_pb(n: &NodeView) -> pb::Node {
    pb::Node {
        name: n.name.clone(),
        address: n.address.clone(),
        state: if n.ready {
            pb::NodeState::Ready
        } else {
            pb::NodeState::NotReady
        } as i32,
        cpus: n.info.cpus,
        memory_mb: n.info.memory_mb,
        vm_count: n.vm_count,
        allocated_vcpu: n.allocated_vcpu,
        allocated_memory_mb: n.allocated_memory_mb,
        version: n.info.version.clone(),
        last_heartbeat: n.last_heartbeat.clone(),
        qemu_version: n.info.qemu_version.clone(),
        accel: n.info.accel.clone(),
        hostname: n.info.hostname.clone(),
        cordoned: n.cordoned,
        pools: n.pools.iter().map(pool_to_pb).collect(),
        networks: n.networks.clone(),
    }
}

/// A certificate of the controller's list, as the API shows it.
pub fn cert_to_pb(c: &CertInfo) -> pb::CertificateInfo {
    pb::CertificateInfo {
        serial: c.serial.clone(),
        name: c.name.clone(),
        role: c.role.clone(),
        not_after: c.not_after.clone(),
        issued_at: c.issued_at.clone(),
        revoked_at: c.revoked_at.clone(),
    }
}

/// An event as the API sends it.
pub fn event_to_pb(e: &Event) -> pb::Event {
    pb::Event {
        id: e.id,
        at: e.at.clone(),
        kind: e.kind.clone(),
        vm_id: e.vm_id.clone(),
        vm_name: e.vm_name.clone(),
        status: e.status as i32,
        node: e.node.clone(),
        message: e.message.clone(),
    }
}

/// A spec the store kept as the proto's JSON (schema versions up to 11): as a request,
/// or, when it is none (a VM adopted from a node), described from what it has.
pub fn request_from_stored_proto_json(spec: &str, disks: &str) -> VmRequest {
    let old: pb::VmSpec = serde_json::from_str(spec).unwrap_or_default();
    let disks: Vec<pb::VmDisk> = serde_json::from_str(disks).unwrap_or_default();
    request_from_pb(&old).unwrap_or_else(|_| request_of_defined(&old, &disks))
}

/// A VM as the API shows it.
pub fn vm_to_pb(r: &VmRow) -> pb::Vm {
    pb::Vm {
        id: r.id.clone(),
        name: r.name.clone(),
        status: r.status as i32,
        node: r.node.clone(),
        memory_mb: r.spec.memory_mib,
        vcpu: r.spec.vcpus,
        storage_gb: r
            .disks
            .iter()
            .map(|d| d.size_bytes.div_ceil(1 << 30) as u32)
            .sum(),
        created_at: r.created_at.clone(),
        spec: Some(request_to_pb(&r.spec)),
        timeline: r.timeline.as_ref().map(timeline_view_to_pb),
        status_reason: r.status_reason.clone(),
        pid: r.pid,
        updated_at: r.updated_at.clone(),
        disks: r.disks.iter().map(disk_view_to_pb).collect(),
        nics: r.nics.iter().map(nic_view_to_pb).collect(),
        tainted: r.tainted,
    }
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

fn cloud_init_from_pb(c: &pb::CloudInit) -> CloudInit {
    CloudInit {
        user_data: c.user_data.clone(),
        meta_data: c.meta_data.clone(),
        network_config: c.network_config.clone(),
    }
}

fn cloud_init_to_pb(c: &CloudInit) -> pb::CloudInit {
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

/// Who called, as the node hears it from the controller.
impl From<&Caller> for pb::Caller {
    fn from(c: &Caller) -> pb::Caller {
        use pb::caller::Who;
        let who = match c {
            Caller::Unix {
                uid,
                gid,
                pid,
                user,
                groups,
            } => Some(Who::Unix(pb::caller::Unix {
                uid: *uid,
                gid: *gid,
                groups: groups.clone(),
                pid: pid.unwrap_or(0),
                user: user.clone().unwrap_or_default(),
            })),
            Caller::Certificate { name, role } => Some(Who::Certificate(pb::caller::Certificate {
                name: name.clone(),
                role: role.clone(),
            })),
            Caller::Unknown => None,
        };
        pb::Caller { who }
    }
}

impl From<Option<&pb::Caller>> for Caller {
    fn from(c: Option<&pb::Caller>) -> Caller {
        use pb::caller::Who;
        match c.and_then(|c| c.who.as_ref()) {
            Some(Who::Unix(u)) => Caller::Unix {
                uid: u.uid,
                gid: u.gid,
                pid: (u.pid != 0).then_some(u.pid),
                user: (!u.user.is_empty()).then(|| u.user.clone()),
                groups: u.groups.clone(),
            },
            Some(Who::Certificate(c)) => Caller::Certificate {
                name: c.name.clone(),
                role: c.role.clone(),
            },
            None => Caller::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_through_the_api() {
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
            image: "debian".into(),
            disk_size_gb: 20,
            disks: vec![
                pb::DiskRequest {
                    pool: "fast".into(),
                    size_gb: 5,
                    volume: String::new(),
                },
                pb::DiskRequest {
                    pool: String::new(),
                    size_gb: 0,
                    volume: "kept".into(),
                },
            ],
            nics: vec![pb::NicRequest {
                network: "lan".into(),
                mac: "52:54:00:00:00:01".into(),
                model: "e1000".into(),
            }],
            autostart: true,
            cloud_init: Some(pb::CloudInit {
                user_data: "#cloud-config\n".into(),
                meta_data: String::new(),
                network_config: "version: 2\n".into(),
            }),
            ..Default::default()
        };
        let r = request_from_pb(&pb_spec).expect("parses");
        assert!(r.has_seed());
        assert!(matches!(r.boot, Boot::Both(..)), "{r:?}");
        assert_eq!(request_to_pb(&r), pb_spec);
        // Unspecified stays unspecified.
        let bare = pb::VmSpec {
            vcpu: 1,
            memory_mb: 64,
            kernel: "/k".into(),
            ..Default::default()
        };
        assert_eq!(
            request_to_pb(&request_from_pb(&bare).expect("parses")),
            bare
        );
        // An empty CloudInit message is no cloud-init.
        let empty = pb::VmSpec {
            cloud_init: Some(pb::CloudInit::default()),
            ..bare.clone()
        };
        assert_eq!(request_from_pb(&empty).expect("parses").cloud_init, None);
        // An update keeps what it does not set; all-empty cloud-init removes the seed.
        let u = pb::UpdateVmRequest {
            name: "web".into(),
            vcpu: Some(2),
            cloud_init: Some(pb::CloudInit::default()),
            ..Default::default()
        };
        assert_eq!(update_to_pb("web", &update_from_pb(&u)), u);
    }

    #[test]
    fn shapes_are_refused_at_the_edge() {
        let spec = |f: &dyn Fn(&mut pb::VmSpec)| {
            let mut s = pb::VmSpec {
                vcpu: 1,
                memory_mb: 64,
                ..Default::default()
            };
            f(&mut s);
            request_from_pb(&s).map(drop).map_err(|e| e.to_string())
        };
        assert_eq!(
            spec(&|s| s.initrd = "/i".into()),
            Err("initrd given without a kernel".into())
        );
        assert!(
            spec(&|s| s.disk_size_gb = 5)
                .expect_err("size needs image")
                .contains("--disk-size needs --image")
        );
        assert!(
            spec(&|s| s.nics = vec![pb::NicRequest {
                network: "Bad".into(),
                ..Default::default()
            }])
            .expect_err("bad network")
            .contains("invalid network name")
        );
        assert!(
            spec(&|s| s.disks = vec![pb::DiskRequest {
                pool: String::new(),
                size_gb: 3,
                volume: "v".into(),
            }])
            .expect_err("both")
            .contains("not both")
        );
    }

    #[test]
    fn callers_survive_the_proto() {
        for c in [
            Caller::Unix {
                uid: 4242,
                gid: 4242,
                pid: Some(7),
                user: None,
                groups: vec![4242, 100],
            },
            Caller::Certificate {
                name: "ops".into(),
                role: "admin".into(),
            },
            Caller::Unknown,
        ] {
            let p = pb::Caller::from(&c);
            assert_eq!(Caller::from(Some(&p)), c);
        }
        assert_eq!(Caller::from(None), Caller::Unknown);
        let cert = Caller::Certificate {
            name: "ops".into(),
            role: "admin".into(),
        };
        assert_eq!(cert.to_string(), "ops (admin certificate)");
        assert_eq!(
            Caller::unix(4242, 4242, None).to_string(),
            "uid 4242 on the local socket"
        );
    }

    /// The rule of the domain model, enforced: the proto crate is named only by the gRPC
    /// layer (the handlers, the controller's client of its nodes, the node's client of
    /// its controller, the server assembly) and the conversions; everything else takes
    /// and returns `crate::model` types. Tests may build messages anywhere.
    #[test]
    fn the_proto_stays_in_the_grpc_layer() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let layer = [
            "controller/grpc.rs",
            "controller/join.rs",
            "controller/node_client.rs",
            "convert/listing.rs",
            "convert/migration.rs",
            "convert/mod.rs",
            "convert/stats.rs",
            "convert/template.rs",
            "node/convert.rs",
            "node/grpc.rs",
            "node_tls.rs",
            "server.rs",
        ];
        let (mut files, mut found) = (0, Vec::new());
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read the source directory") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let rel = path.strip_prefix(&src).expect("under src");
                let rel = rel.to_string_lossy();
                if !rel.ends_with(".rs") || layer.contains(&rel.as_ref()) {
                    continue;
                }
                files += 1;
                let text = std::fs::read_to_string(&path).expect("read a source file");
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                if code.contains("kcore_proto") {
                    found.push(rel.into_owned());
                }
            }
        }
        assert!(files > 30, "{files} source files under {}?", src.display());
        assert!(
            found.is_empty(),
            "kcore_proto outside the gRPC layer in {found:?}: take and return crate::model \
             types and convert in convert/ (or node/convert.rs)"
        );
    }
}

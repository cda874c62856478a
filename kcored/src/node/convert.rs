//! The node's proto edge: its views ([`super::view`]) as NodeAgent messages, and the
//! NodeAgent requests as the node's types. Only the gRPC handlers (`grpc.rs`) call this;
//! what a create and a NIC ask for is parsed by the shared `crate::convert`
//! (`request_from_pb`, `nic_from_pb`), which the controller uses too.

use kcore_proto::v1 as pb;
use kcore_types::ImageName;
use kcore_vmm::spec::{Firmware, MachineType, RestartPolicy, VmSpec};
use kcore_vmm::timeline::Timeline;
use kcore_vmm::vm::VmState;

use super::view::{
    AttachDisk, DiskView, Heartbeat, ImportImage, NicView, NodeInfo, VmBrief, VmEvent, VmView,
};
use crate::convert::rfc3339;
pub use crate::convert::{
    image_to_pb, network_def_from_pb, network_status_to_pb, network_view_to_pb, pool_to_pb,
    template_to_pb, volume_to_pb,
};
use crate::error::{ApiError, ApiResult};
use crate::model::NicRequest;

fn opt_str(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
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

/// The API's spec from the node's (what a listing carries).
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
        template: s
            .restore
            .as_ref()
            .map(|r| r.template.clone())
            .unwrap_or_default(),
        profile: match s.profile {
            kcore_vmm::spec::Profile::Standard => pb::Profile::Standard,
            kcore_vmm::spec::Profile::Fast => pb::Profile::Fast,
        } as i32,
        ..Default::default()
    }
}

fn disk_to_pb(d: &DiskView) -> pb::VmDisk {
    pb::VmDisk {
        volume: d.volume.clone(),
        pool: d.pool.clone(),
        device: d.device.clone(),
        size_bytes: d.size_bytes,
        format: d.format.as_str().to_string(),
        image: d.image.clone().unwrap_or_default(),
    }
}

fn nic_to_pb(n: &NicView) -> pb::VmNic {
    pb::VmNic {
        id: n.id.clone(),
        network: n.network.clone(),
        mac: n.mac.to_string(),
        model: n.model.as_str().to_string(),
        tap: n.tap.clone(),
        ip: n.ip.map(|ip| ip.to_string()).unwrap_or_default(),
    }
}

/// A VM as the node reports it (with its spec only when the view has one: a listing).
pub fn vm_to_pb(v: &VmView) -> pb::NodeVm {
    pb::NodeVm {
        id: v.id.clone(),
        name: v.name.clone(),
        status: status_to_pb(v.state) as i32,
        status_reason: v.reason.clone(),
        pid: v.pid.map(|p| p as i32).unwrap_or(0),
        timeline: Some(timeline_to_pb(&v.timeline)),
        seq: v.seq,
        spec: v.spec.as_deref().map(spec_to_pb),
        disks: v.disks.iter().map(disk_to_pb).collect(),
        nics: v.nics.iter().map(nic_to_pb).collect(),
    }
}

fn vm_event(vm: pb::NodeVm, kind: &str) -> pb::NodeVmEvent {
    pb::NodeVmEvent {
        vm: Some(vm),
        kind: kind.into(),
        message: String::new(),
        heartbeat: None,
    }
}

/// A change the node published: `status` with the VM as it is now, or `undefined` with
/// its id, name and sequence number only.
pub fn event_to_pb(e: &VmEvent) -> pb::NodeVmEvent {
    match e {
        VmEvent::Changed(v) => vm_event(vm_to_pb(v), "status"),
        VmEvent::Undefined { id, name, seq } => vm_event(
            pb::NodeVm {
                id: id.clone(),
                name: name.clone(),
                seq: *seq,
                ..Default::default()
            },
            "undefined",
        ),
    }
}

/// One VM of the snapshot a watch starts with.
pub fn snapshot_event(v: &VmView) -> pb::NodeVmEvent {
    vm_event(vm_to_pb(v), "snapshot")
}

/// A heartbeat on the watch stream (`kind`: synced or heartbeat); None when it could not
/// be made.
pub fn heartbeat_event(kind: &str, hb: Option<&Heartbeat>) -> pb::NodeVmEvent {
    pb::NodeVmEvent {
        vm: None,
        kind: kind.into(),
        message: String::new(),
        heartbeat: hb.map(heartbeat_to_pb),
    }
}

pub fn info_to_pb(i: &NodeInfo) -> pb::NodeInfo {
    pb::NodeInfo {
        name: i.name.clone(),
        hostname: i.hostname.clone(),
        cpus: i.cpus,
        memory_mb: i.memory_mib,
        version: i.version.clone(),
        qemu_version: i.qemu_version.clone(),
        accel: i.accel.as_str().to_string(),
    }
}

pub fn heartbeat_to_pb(h: &Heartbeat) -> pb::NodeHeartbeat {
    pb::NodeHeartbeat {
        info: Some(info_to_pb(&h.info)),
        pools: h.pools.iter().map(pool_to_pb).collect(),
        networks: h.networks.clone(),
        vms: h.vms.iter().map(brief_to_pb).collect(),
        images: h.images.clone(),
        seq: h.seq,
        defining: h.defining.clone(),
    }
}

fn brief_to_pb(v: &VmBrief) -> pb::NodeVmState {
    pb::NodeVmState {
        id: v.id.clone(),
        name: v.name.clone(),
        status: status_to_pb(v.state) as i32,
    }
}

/// The disk an `AttachNodeDisk` asks for: a size (a new volume) or a volume, not both;
/// neither is a new volume of size 0, which the node refuses.
pub fn attach_disk_from_pb(r: &pb::AttachDiskRequest) -> ApiResult<AttachDisk> {
    let pool = opt_str(&r.pool);
    if r.volume.is_empty() {
        return Ok(AttachDisk::New {
            pool,
            size_gib: r.size_gb,
        });
    }
    if r.size_gb != 0 {
        return Err(ApiError::InvalidArgument(
            "give a size for a new volume or an existing volume, not both".into(),
        ));
    }
    Ok(AttachDisk::Existing {
        pool,
        volume: r.volume.clone(),
    })
}

/// The NIC an `AttachNodeNic` asks for (parsed as a create's NICs are).
pub fn attach_nic_from_pb(r: &pb::AttachNicRequest) -> ApiResult<NicRequest> {
    crate::convert::nic_from_pb(&pb::NicRequest {
        network: r.network.clone(),
        mac: r.mac.clone(),
        model: r.model.clone(),
    })
}

/// What a `NodeImportImage` asks for, but its source (opened by the handler).
pub fn import_from_pb(r: &pb::ImportImageRequest) -> ApiResult<ImportImage> {
    Ok(ImportImage {
        name: ImageName::parse(&r.name)?,
        pool: opt_str(&r.pool),
        sha256: opt_str(&r.sha256),
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, UNIX_EPOCH};

    use kcore_storage::VolumeFormat;
    use kcore_types::{MacAddr, NetworkName, VmName};
    use kcore_vmm::argv::Accel;
    use kcore_vmm::spec::{DiskFormat, Nic, NicModel};
    use kcore_vmm::timeline::Phase;

    use kcore_storage::PoolKind;

    use super::super::view::{ImageView, NetworkView, PoolView, VolumeView};
    use super::*;
    use crate::model::{Boot, KernelBoot, VmRequest};
    use crate::netdef::{Mode, NetworkDef};
    use crate::node::view::{ImportImage, NetworkStatus};

    fn mac() -> MacAddr {
        "52:54:00:00:00:01".parse().expect("a MAC")
    }

    fn view() -> VmView {
        let at = UNIX_EPOCH + Duration::from_secs(1);
        let mut timeline = Timeline::new(at);
        timeline.record(Phase::QemuExec, at + Duration::from_micros(1500));
        VmView {
            id: "id-1".into(),
            name: "web".into(),
            state: VmState::Running,
            reason: "started".into(),
            pid: Some(42),
            timeline,
            seq: 7,
            disks: vec![DiskView {
                volume: "web-root".into(),
                pool: "default".into(),
                device: "vda".into(),
                size_bytes: 1 << 30,
                format: DiskFormat::Qcow2,
                image: Some("debian".into()),
            }],
            nics: vec![NicView {
                id: "net0".into(),
                network: "lan".into(),
                mac: mac(),
                model: NicModel::Virtio,
                tap: "ktap-x".into(),
                ip: Some("10.0.0.5".parse().expect("an address")),
            }],
            spec: None,
        }
    }

    /// The message a snapshot always was: every field filled, no spec.
    fn message() -> pb::NodeVm {
        pb::NodeVm {
            id: "id-1".into(),
            name: "web".into(),
            status: pb::VmStatus::Running as i32,
            status_reason: "started".into(),
            pid: 42,
            timeline: Some(pb::BootTimeline {
                phases: vec![
                    pb::BootPhase {
                        name: "request_received".into(),
                        offset_ms: 0.0,
                        at: "1970-01-01T00:00:01.000Z".into(),
                    },
                    pb::BootPhase {
                        name: "qemu_exec".into(),
                        offset_ms: 1.5,
                        at: "1970-01-01T00:00:01.001Z".into(),
                    },
                ],
            }),
            seq: 7,
            spec: None,
            disks: vec![pb::VmDisk {
                volume: "web-root".into(),
                pool: "default".into(),
                device: "vda".into(),
                size_bytes: 1 << 30,
                format: "qcow2".into(),
                image: "debian".into(),
            }],
            nics: vec![pb::VmNic {
                id: "net0".into(),
                network: "lan".into(),
                mac: "52:54:00:00:00:01".into(),
                model: "virtio".into(),
                tap: "ktap-x".into(),
                ip: "10.0.0.5".into(),
            }],
        }
    }

    #[test]
    fn a_vm_is_the_message_it_was() {
        assert_eq!(vm_to_pb(&view()), message());
        // Nothing known is empty, not absent: no pid 0, no image "", no ip "".
        let mut v = view();
        v.pid = None;
        v.disks[0].image = None;
        v.nics[0].ip = None;
        let m = vm_to_pb(&v);
        assert_eq!(
            (m.pid, m.disks[0].image.as_str(), m.nics[0].ip.as_str()),
            (0, "", "")
        );
        for s in [
            VmState::Stopped,
            VmState::Starting,
            VmState::Running,
            VmState::Paused,
            VmState::Stopping,
            VmState::Crashed,
            VmState::Error,
            VmState::Unknown,
        ] {
            let name = status_to_pb(s)
                .as_str_name()
                .trim_start_matches("VM_STATUS_");
            assert_eq!(name, s.to_string().to_uppercase(), "{s:?}");
        }
    }

    #[test]
    fn events_carry_their_kind_and_only_a_listing_its_spec() {
        let ev = event_to_pb(&VmEvent::Changed(view()));
        assert_eq!((ev.kind.as_str(), ev.vm), ("status", Some(message())));
        let ev = snapshot_event(&view());
        assert_eq!((ev.kind.as_str(), ev.vm), ("snapshot", Some(message())));
        let ev = event_to_pb(&VmEvent::Undefined {
            id: "id-1".into(),
            name: "web".into(),
            seq: 9,
        });
        assert_eq!(ev.kind, "undefined");
        assert_eq!(
            ev.vm,
            Some(pb::NodeVm {
                id: "id-1".into(),
                name: "web".into(),
                seq: 9,
                ..Default::default()
            })
        );
        assert_eq!(heartbeat_event("synced", None).heartbeat, None);

        // A listing's spec goes through the controller's parse back to the request.
        let name = VmName::parse("web").expect("a name");
        let req = VmRequest {
            vcpus: 2,
            memory_mib: 256,
            machine: Some(MachineType::Q35),
            profile: Some(kcore_vmm::spec::Profile::Standard),
            firmware: Some(Firmware::Bios),
            restart: Some(RestartPolicy::OnFailure),
            boot: Boot::Kernel(KernelBoot {
                kernel: "/k".into(),
                initrd: Some("/i".into()),
                cmdline: Some("console=ttyS0".into()),
            }),
            disks: Vec::new(),
            nics: vec![NicRequest {
                network: NetworkName::parse("lan").expect("a name"),
                mac: Some(mac()),
                model: Some(NicModel::E1000),
            }],
            ready_pattern: Some("READY".into()),
            autostart: true,
            cloud_init: None,
        };
        let mut spec = req.to_vm_spec("id-1", &name);
        spec.nics = vec![Nic {
            id: "net0".into(),
            network: "lan".into(),
            mac: mac(),
            model: NicModel::E1000,
            tap: "ktap-x".into(),
            port: None,
        }];
        let listed = vm_to_pb(&VmView {
            spec: Some(Box::new(spec)),
            ..view()
        });
        let back = crate::convert::request_from_pb(&listed.spec.expect("a spec"));
        assert_eq!(back.expect("parses"), req);
    }

    #[test]
    fn a_heartbeat_is_the_message_it_was() {
        let pool = |kind| PoolView::of("p", "n1", &kind, 10, 4);
        let hb = Heartbeat {
            info: NodeInfo {
                name: "n1".into(),
                hostname: "host".into(),
                cpus: 4,
                memory_mib: 2048,
                version: "0.1.0".into(),
                qemu_version: "9.2".into(),
                accel: Accel::Kvm,
            },
            pools: vec![
                pool(PoolKind::Dir {
                    path: "/var/lib/kcore/pools/default".into(),
                }),
                pool(PoolKind::Lvm {
                    vg: "vg0".into(),
                    thin_pool: Some("thin".into()),
                }),
                pool(PoolKind::Lvm {
                    vg: "vg1".into(),
                    thin_pool: None,
                }),
            ],
            networks: vec!["lan".into()],
            vms: vec![VmBrief {
                id: "id-1".into(),
                name: "web".into(),
                state: VmState::Paused,
            }],
            images: vec!["debian".into()],
            seq: 3,
            defining: vec!["id-2".into()],
        };
        let m = heartbeat_to_pb(&hb);
        let info = m.info.clone().expect("info");
        assert_eq!((info.memory_mb, info.accel.as_str()), (2048, "kvm"));
        let sources: Vec<_> = m
            .pools
            .iter()
            .map(|p| (p.r#type.as_str(), p.source.as_str(), p.free_bytes))
            .collect();
        assert_eq!(
            sources,
            [
                ("dir", "/var/lib/kcore/pools/default", 4),
                ("lvm", "vg0/thin", 4),
                ("lvm", "vg1", 4)
            ]
        );
        assert_eq!(
            m.vms,
            [pb::NodeVmState {
                id: "id-1".into(),
                name: "web".into(),
                status: pb::VmStatus::Paused as i32,
            }]
        );
        assert_eq!(
            (m.networks, m.images, m.seq, m.defining),
            (
                vec!["lan".to_string()],
                vec!["debian".to_string()],
                3,
                vec!["id-2".to_string()]
            )
        );
        let ev = heartbeat_event("heartbeat", Some(&hb));
        assert_eq!((ev.kind.as_str(), ev.vm), ("heartbeat", None));
    }

    #[test]
    fn storage_and_networks_are_the_messages_they_were() {
        let image = ImageView {
            name: "debian".into(),
            node: "n1".into(),
            pool: "default".into(),
            format: VolumeFormat::Qcow2,
            virtual_size: 8,
            actual_size: 2,
            sha256: None,
        };
        assert_eq!(
            image_to_pb(&image),
            pb::Image {
                name: "debian".into(),
                node: "n1".into(),
                pool: "default".into(),
                format: "qcow2".into(),
                virtual_size: 8,
                actual_size: 2,
                sha256: String::new(),
            }
        );
        let volume = VolumeView {
            name: "web-root".into(),
            node: "n1".into(),
            pool: "default".into(),
            vm: Some("web".into()),
            format: VolumeFormat::Raw,
            virtual_size: 8,
            actual_size: 1,
            backing: None,
            path: PathBuf::from("/dev/vg0/web-root"),
        };
        assert_eq!(
            volume_to_pb(&volume),
            pb::Volume {
                name: "web-root".into(),
                node: "n1".into(),
                pool: "default".into(),
                vm: "web".into(),
                format: "raw".into(),
                virtual_size: 8,
                actual_size: 1,
                backing: String::new(),
                path: "/dev/vg0/web-root".into(),
            }
        );
        let def = NetworkDef {
            name: "lan".into(),
            mode: Mode::Nat,
            subnet: Some("10.77.0.0/24".into()),
            bridge: "kbr-lan".into(),
            uplink: None,
            created_at: String::new(),
        };
        let status = NetworkStatus {
            node: "n1".into(),
            ready: true,
            message: String::new(),
            dnsmasq_pid: None,
            leases: 2,
        };
        let m = network_view_to_pb(&NetworkView {
            def: def.clone(),
            status,
        });
        assert_eq!(m.network, Some(crate::convert::network_def_to_pb(&def)));
        assert_eq!(
            m.status,
            Some(pb::NetworkOnNode {
                node: "n1".into(),
                ready: true,
                message: String::new(),
                dnsmasq_pid: 0,
                leases: 2,
            })
        );
    }

    #[test]
    fn requests_are_parsed_at_the_edge() {
        let disk = |pool: &str, size_gb, volume: &str| {
            attach_disk_from_pb(&pb::AttachDiskRequest {
                vm: "id-1".into(),
                pool: pool.into(),
                size_gb,
                volume: volume.into(),
            })
        };
        let new = disk("", 5, "").expect("a new volume");
        assert_eq!(new.pool(), "default");
        assert_eq!(
            new,
            AttachDisk::New {
                pool: None,
                size_gib: 5
            }
        );
        let kept = disk("fast", 0, "kept").expect("an existing volume");
        assert_eq!(kept.pool(), "fast");
        assert_eq!(
            kept,
            AttachDisk::Existing {
                pool: Some("fast".into()),
                volume: "kept".into()
            }
        );
        let both = disk("", 5, "kept").expect_err("both").to_string();
        assert!(both.contains("not both"), "{both}");
        // Neither: a new volume of size 0, which the node refuses with the VM known.
        assert!(matches!(
            disk("", 0, ""),
            Ok(AttachDisk::New { size_gib: 0, .. })
        ));

        let nic = attach_nic_from_pb(&pb::AttachNicRequest {
            vm: "id-1".into(),
            network: "lan".into(),
            mac: "52:54:00:00:00:01".into(),
            model: "e1000".into(),
        })
        .expect("a NIC");
        assert_eq!(
            (nic.network.as_str(), nic.mac, nic.model),
            ("lan", Some(mac()), Some(NicModel::E1000))
        );
        assert!(
            attach_nic_from_pb(&pb::AttachNicRequest {
                network: "Bad".into(),
                ..Default::default()
            })
            .is_err()
        );

        let import = |name: &str, pool: &str, sha256: &str| {
            import_from_pb(&pb::ImportImageRequest {
                name: name.into(),
                source: "/tmp/x.qcow2".into(),
                pool: pool.into(),
                sha256: sha256.into(),
                ..Default::default()
            })
        };
        assert_eq!(
            import("debian", "", "").expect("an import"),
            ImportImage {
                name: ImageName::parse("debian").expect("a name"),
                pool: None,
                sha256: None,
            }
        );
        let i = import("debian", "fast", "ab12").expect("an import");
        assert_eq!(
            (i.pool.as_deref(), i.sha256.as_deref()),
            (Some("fast"), Some("ab12"))
        );
        assert!(import("../etc", "", "").is_err());
    }
}

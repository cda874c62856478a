//! Translation between the proto API types and the domain types: VMs, nodes, events and
//! certificates here; what a create or an update asks for (a VM's spec) in [`spec`]; pools,
//! images, volumes and networks in [`listing`]. The node's own views are converted at its
//! edge, `node/convert.rs`.

mod listing;
mod migration;
mod spec;
mod stats;
mod template;

pub use listing::*;
pub use migration::*;
pub use spec::{
    create_from_pb, nic_from_pb, request_from_pb, request_from_stored_proto_json,
    request_of_defined, request_to_pb, update_from_pb, update_to_pb,
};
pub use stats::{vm_stats_from_pb, vm_stats_to_pb};
pub use template::{template_from_pb, template_to_pb};

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use kcore_proto::v1 as pb;

use crate::caller::Caller;
use crate::controller::store::VmRow;
use crate::error::ApiResult;
use crate::model::{
    CertInfo, DiskView, Event, NicView, NodeFacts, NodeInfo, NodeView, NodeVms, Timeline,
    TimelinePhase, VmReport, VmStatus,
};

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

pub(crate) fn opt_str(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

pub(crate) fn opt_name<T: std::str::FromStr<Err = kcore_types::TypeError>>(
    s: &str,
) -> ApiResult<Option<T>> {
    Ok(if s.is_empty() { None } else { Some(s.parse()?) })
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
    use crate::model::Boot;

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
            "controller/grpc/pki.rs",
            "controller/grpc/streams.rs",
            "controller/join.rs",
            "controller/node_client.rs",
            "convert/listing.rs",
            "convert/migration.rs",
            "convert/mod.rs",
            "convert/spec.rs",
            "convert/stats.rs",
            "convert/template.rs",
            "node/convert.rs",
            "node/grpc.rs",
            "node/grpc/migration.rs",
            "node/grpc/streams.rs",
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

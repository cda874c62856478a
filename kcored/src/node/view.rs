//! What the node reports and what it is asked, as its own types: a VM as the node sees it,
//! the node's facts and heartbeat, its pools, images, volumes and networks, the events it
//! publishes, and the requests that change a VM's disks or import an image. The NodeAgent
//! messages are made from these, and these from the requests, in one place
//! ([`super::convert`], used by the gRPC handlers only); nothing else under `node/` knows
//! the proto.

use std::net::Ipv4Addr;

use kcore_types::{ImageName, MacAddr};
use kcore_vmm::argv::Accel;
use kcore_vmm::spec::{Disk, DiskFormat, NicModel, VmSpec};
use kcore_vmm::timeline::Timeline;
use kcore_vmm::vm::VmState;

pub use crate::model::{ImageView, NetworkStatus, NetworkView, PoolView, VolumeView};

/// The node's view of one VM, with the sequence number of this view (it grows with every
/// change of any VM on the node, so the controller can drop stale news).
#[derive(Debug, Clone, PartialEq)]
pub struct VmView {
    pub id: String,
    pub name: String,
    pub state: VmState,
    /// Why it is in that state (an exit, an error), or empty.
    pub reason: String,
    /// QEMU's pid while it has one.
    pub pid: Option<u32>,
    pub timeline: Timeline,
    pub seq: u64,
    pub disks: Vec<DiskView>,
    pub nics: Vec<NicView>,
    /// The whole spec: only in a listing (what a controller that lost its store adopts);
    /// a change needs no more than the disks and NICs.
    pub spec: Option<Box<VmSpec>>,
}

/// A disk of a VM, in guest order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskView {
    /// The volume's name in its pool.
    pub volume: String,
    pub pool: String,
    /// vda, vdb, ...
    pub device: String,
    pub size_bytes: u64,
    pub format: DiskFormat,
    /// The image it was cloned from.
    pub image: Option<String>,
}

/// A NIC of a VM, with the address its guest leased on a nat network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicView {
    /// net0, net1, ...
    pub id: String,
    pub network: String,
    pub mac: MacAddr,
    pub model: NicModel,
    pub tap: String,
    pub ip: Option<Ipv4Addr>,
}

/// What happened to a VM, as the node publishes it.
#[derive(Debug, Clone, PartialEq)]
pub enum VmEvent {
    /// It changed (state, disks, NICs, a lease): how it is now.
    Changed(VmView),
    /// It is gone from this node.
    Undefined { id: String, name: String, seq: u64 },
}

/// Static facts about this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub hostname: String,
    pub cpus: u32,
    pub memory_mib: u32,
    /// kcored's version.
    pub version: String,
    pub qemu_version: String,
    /// What `auto` resolved to on this node.
    pub accel: Accel,
}

/// What this node has and runs, for the controller's heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub info: NodeInfo,
    pub pools: Vec<PoolView>,
    /// The names of the networks in place (ready).
    pub networks: Vec<String>,
    pub vms: Vec<VmBrief>,
    /// The images boot disks can be cloned from.
    pub images: Vec<String>,
    /// The node's sequence number when it was made: news of a VM with a higher one is
    /// newer than this heartbeat.
    pub seq: u64,
    /// Ids of the VMs being defined now (not in `vms` yet).
    pub defining: Vec<String>,
}

/// A VM in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmBrief {
    pub id: String,
    pub name: String,
    pub state: VmState,
}

/// A disk to add to a VM. The node only looks the pool and volume up (a name that is not
/// there is not found), so they stay strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachDisk {
    /// A new empty volume of `size_gib` GiB in `pool` (None: `default`).
    New { pool: Option<String>, size_gib: u32 },
    /// An existing volume of `pool` (None: `default`) that no VM uses.
    Existing {
        pool: Option<String>,
        volume: String,
    },
}

impl AttachDisk {
    /// The pool (`default` when none was given).
    pub fn pool(&self) -> &str {
        let p = match self {
            AttachDisk::New { pool, .. } | AttachDisk::Existing { pool, .. } => pool,
        };
        p.as_deref().unwrap_or("default")
    }
}

/// An image to import (its source is opened by the gRPC layer, as the caller may).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportImage {
    pub name: ImageName,
    /// The dir pool to keep it in (None: `default`).
    pub pool: Option<String>,
    /// Expected sha256 (hex): the import fails if it differs.
    pub sha256: Option<String>,
}

/// The views of a VM's disks, in guest order (vda, vdb, ...).
pub fn disk_views(disks: &[Disk]) -> Vec<DiskView> {
    disks
        .iter()
        .enumerate()
        .map(|(i, d)| DiskView {
            volume: d.volume.clone(),
            pool: d.pool.clone(),
            device: format!("vd{}", (b'a' + (i as u8).min(25)) as char),
            size_bytes: d.size_bytes,
            format: d.format,
            image: (!d.image.is_empty()).then(|| d.image.clone()),
        })
        .collect()
}

//! The daemon's domain types. The gRPC layer turns the proto into these at its edge
//! (`convert.rs`) and nowhere else:
//!
//! - [`request`]: what a create asks for ([`VmRequest`]), checked once;
//! - [`cloud_init`]: the cloud-init files a VM's NoCloud seed holds ([`CloudInit`]);
//! - [`vm`]: what the controller knows of a VM and what nodes report ([`VmStatus`],
//!   [`VmReport`], [`Timeline`], disks and NICs as nodes made them) and its events;
//! - [`cluster`]: nodes, their facts and certificates;
//! - [`storage`]: pools, images, volumes; [`network`]: networks on nodes and the cluster;
//! - [`template`]: memory-snapshot templates ([`TemplateView`]);
//! - [`stats`]: what a VM uses (CPU, memory, disks, NICs), now and over the last hour.

pub mod cloud_init;
pub mod cluster;
pub mod migration;
pub mod network;
pub mod request;
pub mod stats;
pub mod storage;
pub mod template;
pub mod vm;

pub use cloud_init::CloudInit;
pub use cluster::{CertInfo, Issued, NodeFacts, NodeInfo, NodeView};
pub use migration::{
    DrainedVm, IncomingPorts, MigrateVm, MigrationProgress, PrepareIncoming, SendVm,
};
pub use network::{ClusterNetwork, NetworkDef, NetworkMode, NetworkStatus, NetworkView};
pub use request::{
    Boot, CreateVm, DiskRequest, ImageDisk, KernelBoot, NicRequest, VmRequest, VmUpdate,
};
pub use stats::{DiskCounters, NicCounters, StatsSample, VmStats};
pub use storage::{ImageView, ImportProgress, PoolView, VolumeView};
pub use template::TemplateView;
pub use vm::{DiskView, Event, NicView, NodeVms, Timeline, TimelinePhase, VmReport, VmStatus};

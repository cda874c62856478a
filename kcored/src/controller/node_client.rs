//! The controller's side of `NodeAgent` for a node's VMs: calls that take and give the
//! domain's types, the proto converted here (the client edge of the gRPC layer). Calls
//! whose answers the API passes on as they are (pools, images, volumes, networks, the
//! console, QMP) use the raw client ([`NodeClient::raw`]) from the modules that serve them.

use std::time::{SystemTime, UNIX_EPOCH};

use kcore_proto::v1 as pb;
use kcore_proto::v1::node_agent_client::NodeAgentClient;
use tonic::transport::Channel;

use crate::caller::Caller;
use crate::convert::{report_from_pb, request_to_pb, update_to_pb};
use crate::error::ApiResult;
use crate::model::{NicRequest, VmReport, VmRequest, VmUpdate};

/// A node's NodeAgent. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeClient(NodeAgentClient<Channel>);

/// How to stop a VM.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    pub force: bool,
    /// Seconds for the guest to power off (None: the node's default, 30 s).
    pub timeout_secs: Option<u32>,
}

/// A change to a VM's disks.
#[derive(Debug, Clone)]
pub enum DiskOp {
    /// A new volume of `size_gb` GiB in `pool`, or the existing `volume` of it.
    Attach {
        pool: String,
        size_gb: u32,
        volume: String,
    },
    /// Unplug disk `disk` (volume name or device); delete its volume unless `keep`.
    Detach { disk: String, keep: bool },
    /// Grow disk `disk` to `size_gb` GiB.
    Resize { disk: String, size_gb: u32 },
}

/// An operation that is one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmOp {
    Reboot,
    Pause,
    Resume,
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl NodeClient {
    pub fn new(c: NodeAgentClient<Channel>) -> NodeClient {
        NodeClient(c)
    }

    /// The proto client, for calls the API passes on as they are.
    pub fn raw(&mut self) -> &mut NodeAgentClient<Channel> {
        &mut self.0
    }

    /// Define a VM (made stopped) for `caller`, whose host files the node checks.
    pub async fn define(
        &mut self,
        id: &str,
        name: &str,
        request: &VmRequest,
        caller: &Caller,
    ) -> ApiResult<VmReport> {
        let nv = self
            .0
            .define_vm(pb::DefineVmRequest {
                id: id.to_string(),
                name: name.to_string(),
                spec: Some(request_to_pb(request)),
                caller: Some(caller.into()),
            })
            .await?
            .into_inner();
        Ok(report_from_pb(&nv))
    }

    /// Start; `requested_at` is the origin of its boot timeline.
    pub async fn start(&mut self, id: &str, requested_at: SystemTime) -> ApiResult<VmReport> {
        let nv = self
            .0
            .start_node_vm(pb::NodeVmStartRequest {
                id: id.to_string(),
                requested_at_us: micros(requested_at),
            })
            .await?
            .into_inner();
        Ok(report_from_pb(&nv))
    }

    pub async fn stop(&mut self, id: &str, how: Stop) -> ApiResult<VmReport> {
        let nv = self
            .0
            .stop_node_vm(pb::NodeVmStopRequest {
                id: id.to_string(),
                force: how.force,
                timeout_secs: how.timeout_secs,
            })
            .await?
            .into_inner();
        Ok(report_from_pb(&nv))
    }

    pub async fn op(&mut self, id: &str, op: VmOp) -> ApiResult<VmReport> {
        let r = pb::NodeVmRef { id: id.to_string() };
        let nv = match op {
            VmOp::Reboot => self.0.reboot_node_vm(r).await?,
            VmOp::Pause => self.0.pause_node_vm(r).await?,
            VmOp::Resume => self.0.resume_node_vm(r).await?,
        }
        .into_inner();
        Ok(report_from_pb(&nv))
    }

    /// Change a VM in place (its vCPUs and memory only while it is stopped).
    pub async fn update(&mut self, id: &str, u: &VmUpdate) -> ApiResult<VmReport> {
        let nv = self
            .0
            .update_node_vm(update_to_pb(id, u))
            .await?
            .into_inner();
        Ok(report_from_pb(&nv))
    }

    /// Forget a VM on the node (killed with `force`), its volumes too unless `keep_disks`.
    pub async fn undefine(&mut self, id: &str, force: bool, keep_disks: bool) -> ApiResult<()> {
        self.0
            .undefine_vm(pb::UndefineVmRequest {
                id: id.to_string(),
                force,
                keep_disks,
            })
            .await?;
        Ok(())
    }

    pub async fn disk(&mut self, id: &str, op: &DiskOp) -> ApiResult<VmReport> {
        let vm = id.to_string();
        let nv = match op.clone() {
            DiskOp::Attach {
                pool,
                size_gb,
                volume,
            } => {
                self.0
                    .attach_node_disk(pb::AttachDiskRequest {
                        vm,
                        pool,
                        size_gb,
                        volume,
                    })
                    .await?
            }
            DiskOp::Detach { disk, keep } => {
                self.0
                    .detach_node_disk(pb::DetachDiskRequest { vm, disk, keep })
                    .await?
            }
            DiskOp::Resize { disk, size_gb } => {
                self.0
                    .resize_node_disk(pb::ResizeDiskRequest { vm, disk, size_gb })
                    .await?
            }
        }
        .into_inner();
        Ok(report_from_pb(&nv))
    }

    /// A NIC for the VM (its MAC assigned), hot-plugged when it runs.
    pub async fn attach_nic(&mut self, id: &str, nic: &NicRequest) -> ApiResult<VmReport> {
        let nv = self
            .0
            .attach_node_nic(pb::AttachNicRequest {
                vm: id.to_string(),
                network: nic.network.to_string(),
                mac: nic.mac.map(|m| m.to_string()).unwrap_or_default(),
                model: nic
                    .model
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default(),
            })
            .await?
            .into_inner();
        Ok(report_from_pb(&nv))
    }

    /// Unplug NIC `nic` (id, MAC, tap or index).
    pub async fn detach_nic(&mut self, id: &str, nic: &str) -> ApiResult<VmReport> {
        let nv = self
            .0
            .detach_node_nic(pb::DetachNicRequest {
                vm: id.to_string(),
                nic: nic.to_string(),
            })
            .await?
            .into_inner();
        Ok(report_from_pb(&nv))
    }

    /// One QMP command (JSON) to the VM's QEMU; QEMU's reply object as JSON.
    pub async fn exec_qmp(&mut self, id: &str, command_json: String) -> ApiResult<String> {
        Ok(self
            .0
            .node_exec_qmp(pb::NodeExecQmpRequest {
                id: id.to_string(),
                command_json,
            })
            .await?
            .into_inner()
            .reply_json)
    }

    /// Every VM of the node, with what it runs (for adoption).
    pub async fn list_vms(&mut self) -> ApiResult<Vec<VmReport>> {
        let vms = self
            .0
            .list_node_v_ms(pb::ListNodeVMsRequest {})
            .await?
            .into_inner()
            .vms;
        Ok(vms.iter().map(report_from_pb).collect())
    }
}

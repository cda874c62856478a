//! The controller's side of `NodeAgent`: calls that take and give the domain's types, the
//! proto converted here (the client edge of the gRPC layer). Only the console, whose bytes
//! the API passes on as they are, uses the raw client ([`NodeClient::raw`]) from the gRPC
//! handlers.

use std::time::{SystemTime, UNIX_EPOCH};

use futures::{Stream, StreamExt};
use kcore_proto::v1 as pb;
use kcore_proto::v1::node_agent_client::NodeAgentClient;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::caller::Caller;
use crate::convert::{
    image_from_pb, migration_progress_from_pb, network_def_to_pb, network_status_from_pb,
    network_view_from_pb, node_facts_from_pb, node_info_from_pb, node_vms_from_pb, pool_from_pb,
    progress_from_pb, report_from_pb, request_to_pb, template_from_pb, tls_to_pb, update_to_pb,
    vm_stats_from_pb, volume_from_pb,
};
use crate::error::{ApiError, ApiResult};
use crate::model::{
    ImageView, ImportProgress, IncomingPorts, MigrationProgress, NetworkDef, NetworkStatus,
    NetworkView, NicRequest, NodeFacts, NodeInfo, NodeVms, PoolView, PrepareIncoming, SendVm,
    TemplateView, VmReport, VmRequest, VmStats, VmUpdate, VolumeView,
};

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

/// A migration's progress, as the source node sends it.
pub type MigrationStream =
    std::pin::Pin<Box<dyn Stream<Item = ApiResult<MigrationProgress>> + Send>>;

/// An image import's progress, as the node sends it.
pub type ProgressStream = std::pin::Pin<Box<dyn Stream<Item = ApiResult<ImportProgress>> + Send>>;

/// What a node's watch stream says.
#[derive(Debug)]
pub enum NodeNews {
    /// A heartbeat, the first one ending the snapshot: the node's facts and VMs (None
    /// when the node could not make them this time).
    Heartbeat(Option<Box<(NodeFacts, NodeVms)>>),
    /// A VM as it is now (in the snapshot, or a change).
    Vm(Box<VmReport>),
    /// A VM left the node (the next heartbeat's reconciliation handles it).
    Undefined,
}

/// A node's watch stream.
pub struct NodeWatch(Streaming<pb::NodeVmEvent>);

impl NodeWatch {
    /// The next news; None when the node closed the stream.
    pub async fn next(&mut self) -> ApiResult<Option<NodeNews>> {
        let Some(ev) = self.0.message().await? else {
            return Ok(None);
        };
        Ok(Some(match (ev.kind.as_str(), &ev.vm) {
            ("synced" | "heartbeat", _) => NodeNews::Heartbeat(
                ev.heartbeat
                    .as_ref()
                    .map(|hb| Box::new((node_facts_from_pb(hb), node_vms_from_pb(hb)))),
            ),
            ("undefined", _) | (_, None) => NodeNews::Undefined,
            (_, Some(vm)) => NodeNews::Vm(Box::new(report_from_pb(vm))),
        }))
    }
}

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl NodeClient {
    /// The node agent at the other end of `channel`.
    pub fn over(channel: Channel) -> NodeClient {
        NodeClient(NodeAgentClient::new(channel))
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

    /// Migration, destination: make the VM and listen; the ports.
    pub async fn prepare_migration(&mut self, p: &PrepareIncoming) -> ApiResult<IncomingPorts> {
        let r = self
            .0
            .prepare_migration(pb::PrepareMigrationRequest {
                vm: Some(pb::DefineVmRequest {
                    id: p.id.clone(),
                    name: p.name.to_string(),
                    spec: Some(request_to_pb(&p.request)),
                    caller: None,
                }),
                tls: Some(tls_to_pb(&p.tls)),
                listen_host: p.listen_host.clone(),
                client_dn: p.client_dn.clone(),
                timeout_secs: p.timeout_secs,
            })
            .await?
            .into_inner();
        let port = |p: u32| {
            u16::try_from(p)
                .map_err(|_| ApiError::Internal(format!("the destination answered port {p}")))
        };
        Ok(IncomingPorts {
            migration: port(r.migration_port)?,
            nbd: port(r.nbd_port)?,
        })
    }

    /// Migration, source: send the VM; its progress, then the end of the stream (or an
    /// error).
    pub async fn migrate_out(&mut self, s: &SendVm) -> ApiResult<MigrationStream> {
        let st = self
            .0
            .migrate_node_vm(pb::MigrateNodeVmRequest {
                id: s.id.clone(),
                host: s.host.clone(),
                migration_port: s.ports.migration.into(),
                nbd_port: s.ports.nbd.into(),
                tls: Some(tls_to_pb(&s.tls)),
                max_downtime_ms: s.max_downtime_ms,
                bandwidth_mib: s.bandwidth_mib,
                timeout_secs: s.timeout_secs,
            })
            .await?
            .into_inner();
        Ok(Box::pin(st.map(|p| {
            p.map_err(ApiError::from)
                .map(|p| migration_progress_from_pb(&p))
        })))
    }

    /// Migration, destination: the switch-over.
    pub async fn commit_migration(
        &mut self,
        id: &str,
        source_paused: Option<SystemTime>,
        mirrored: Option<SystemTime>,
    ) -> ApiResult<VmReport> {
        let us = |t: Option<SystemTime>| {
            t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_micros() as i64)
                .unwrap_or(0)
        };
        let nv = self
            .0
            .commit_migration(pb::CommitMigrationRequest {
                id: id.to_string(),
                source_paused_us: us(source_paused),
                disks_mirrored_us: us(mirrored),
            })
            .await?
            .into_inner();
        Ok(report_from_pb(&nv))
    }

    /// Migration, source: run the guest here again after a stream whose destination did
    /// not take over.
    pub async fn resume_migrated(&mut self, id: &str) -> ApiResult<VmReport> {
        let nv = self
            .0
            .resume_migrated_vm(pb::NodeVmRef { id: id.to_string() })
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

    /// What VM `id` uses: now, and the history of the last `since_seconds` (0: all).
    pub async fn vm_stats(&mut self, id: &str, since_seconds: u32) -> ApiResult<VmStats> {
        let s = self
            .0
            .get_node_vm_stats(pb::GetVmStatsRequest {
                name: id.to_string(),
                since_seconds,
            })
            .await?
            .into_inner();
        Ok(vm_stats_from_pb(&s))
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
    /// What the node is.
    pub async fn info(&mut self) -> ApiResult<NodeInfo> {
        let i = self
            .0
            .get_node_info(pb::GetNodeInfoRequest {})
            .await?
            .into_inner();
        Ok(node_info_from_pb(&i))
    }

    /// Follow the node: a snapshot of its VMs, then changes and heartbeats.
    pub async fn watch(&mut self, heartbeat_ms: u32) -> ApiResult<NodeWatch> {
        let s = self
            .0
            .watch_node_v_ms(pb::WatchNodeVMsRequest { heartbeat_ms })
            .await?
            .into_inner();
        Ok(NodeWatch(s))
    }

    pub async fn list_pools(&mut self) -> ApiResult<Vec<PoolView>> {
        let r = self
            .0
            .list_node_pools(pb::ListPoolsRequest::default())
            .await?;
        Ok(r.into_inner().pools.iter().map(pool_from_pb).collect())
    }

    pub async fn list_images(&mut self) -> ApiResult<Vec<ImageView>> {
        let r = self
            .0
            .list_node_images(pb::ListImagesRequest::default())
            .await?;
        r.into_inner().images.iter().map(image_from_pb).collect()
    }

    pub async fn list_volumes(&mut self) -> ApiResult<Vec<VolumeView>> {
        let r = self
            .0
            .list_node_volumes(pb::ListVolumesRequest::default())
            .await?;
        r.into_inner().volumes.iter().map(volume_from_pb).collect()
    }

    /// Take template `name` of VM `vm` (its id) on the node.
    pub async fn create_template(
        &mut self,
        name: &str,
        vm: &str,
        stop_source: bool,
    ) -> ApiResult<TemplateView> {
        let r = self
            .0
            .create_node_template(pb::CreateNodeTemplateRequest {
                name: name.to_string(),
                vm: vm.to_string(),
                stop_source,
            })
            .await?;
        Ok(template_from_pb(&r.into_inner()))
    }

    pub async fn list_templates(&mut self) -> ApiResult<Vec<TemplateView>> {
        let r = self
            .0
            .list_node_templates(pb::ListTemplatesRequest::default())
            .await?;
        Ok(r.into_inner()
            .templates
            .iter()
            .map(template_from_pb)
            .collect())
    }

    pub async fn delete_template(&mut self, name: &str) -> ApiResult<()> {
        self.0
            .delete_node_template(pb::DeleteTemplateRequest {
                name: name.to_string(),
            })
            .await?;
        Ok(())
    }

    /// A new empty volume `name` of `size_gb` GiB in `pool` (empty: default).
    pub async fn create_volume(
        &mut self,
        name: &str,
        pool: &str,
        size_gb: u32,
    ) -> ApiResult<VolumeView> {
        let r = self
            .0
            .create_node_volume(pb::CreateVolumeRequest {
                name: name.to_string(),
                pool: pool.to_string(),
                size_gb,
                node: String::new(),
            })
            .await?;
        volume_from_pb(&r.into_inner())
    }

    pub async fn delete_volume(&mut self, node: &str, name: &str, pool: &str) -> ApiResult<()> {
        self.0
            .delete_node_volume(pb::DeleteVolumeRequest {
                name: name.to_string(),
                pool: pool.to_string(),
                node: node.to_string(),
            })
            .await?;
        Ok(())
    }

    /// Import image `name` from `source` (a path the node reads if `caller` may, or a URL)
    /// into dir pool `pool` (empty: default), checked against `sha256` when given.
    pub async fn import_image(
        &mut self,
        caller: &Caller,
        name: &str,
        source: &str,
        sha256: &str,
        pool: &str,
    ) -> ApiResult<ProgressStream> {
        let s = self
            .0
            .node_import_image(pb::ImportImageRequest {
                name: name.to_string(),
                source: source.to_string(),
                sha256: sha256.to_string(),
                node: String::new(),
                pool: pool.to_string(),
                caller: Some(caller.into()),
            })
            .await?
            .into_inner();
        Ok(Box::pin(s.map(|p| {
            p.map_err(ApiError::from).and_then(|p| progress_from_pb(&p))
        })))
    }

    pub async fn delete_image(&mut self, name: &str, pool: &str) -> ApiResult<()> {
        self.0
            .delete_node_image(pb::DeleteImageRequest {
                name: name.to_string(),
                node: String::new(),
                pool: pool.to_string(),
            })
            .await?;
        Ok(())
    }

    /// The node's networks (one whose definition does not check out is left out: the
    /// controller then sees it as missing there).
    pub async fn list_networks(&mut self) -> ApiResult<Vec<NetworkView>> {
        let r = self
            .0
            .list_node_networks(pb::ListNetworksRequest {})
            .await?;
        Ok(r.into_inner()
            .networks
            .iter()
            .filter_map(network_view_from_pb)
            .collect())
    }

    /// Put a network in place on the node (again, if it is there already).
    pub async fn ensure_network(&mut self, def: &NetworkDef) -> ApiResult<NetworkStatus> {
        let r = self.0.ensure_network(network_def_to_pb(def)).await?;
        Ok(network_status_from_pb(&r.into_inner()))
    }

    pub async fn delete_network(&mut self, name: &str) -> ApiResult<()> {
        self.0
            .delete_node_network(pb::DeleteNetworkRequest {
                name: name.to_string(),
            })
            .await?;
        Ok(())
    }
}

//! `NodeAgent` gRPC handlers: translate requests to [`Node`] calls and back, through the
//! node's edge ([`super::convert`]), the one place under `node/` that knows the proto.
//! The long handlers live beside it: the streams (VM events, console, image import) in
//! [`streams`], a live migration's steps in [`migration`].

mod migration;
mod streams;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::Stream;
use kcore_proto::v1 as pb;
use kcore_proto::v1::node_agent_server::NodeAgent;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status, Streaming};

use super::convert as edge;
use super::{DEFAULT_STOP_TIMEOUT, Node};
use crate::caller::Caller;
use crate::convert::{request_from_pb, update_from_pb};
use crate::error::ApiError;
use crate::hostpath::HostPaths;

type Stream2<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The gRPC face of a [`Node`].
#[derive(Debug, Clone)]
pub struct NodeAgentService {
    node: Arc<Node>,
    /// The rule for host paths a request names.
    paths: Arc<HostPaths>,
}

impl NodeAgentService {
    pub fn new(node: Arc<Node>, paths: HostPaths) -> Self {
        NodeAgentService {
            node,
            paths: Arc::new(paths),
        }
    }

    /// Open the host file `path` names for `caller`, by the rule of [`HostPaths`].
    async fn open_host_file(
        &self,
        what: &'static str,
        path: String,
        caller: Caller,
        local: bool,
    ) -> Result<std::fs::File, Status> {
        let paths = self.paths.clone();
        super::blocking(move || paths.open(what, &path, &caller, local))
            .await
            .map_err(Into::into)
    }
}

/// Whether a request came over this node's unix socket (from a controller on this host).
fn is_local<T>(req: &Request<T>) -> bool {
    req.extensions().get::<UdsConnectInfo>().is_some()
}

fn requested_at(us: i64) -> SystemTime {
    if us > 0 {
        UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        SystemTime::now()
    }
}

/// Run a lifecycle step on its own task: when the controller that asked goes away (a
/// crash, a dropped connection), the step still finishes instead of stopping half-way,
/// and the controller learns the outcome from the node's stream.
async fn run_to_end<T: Send + 'static>(
    f: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, Status> {
    match tokio::spawn(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(ApiError::Internal(format!("node task failed: {e}")).into()),
    }
}

#[tonic::async_trait]
impl NodeAgent for NodeAgentService {
    async fn get_node_info(
        &self,
        _: Request<pb::GetNodeInfoRequest>,
    ) -> Result<Response<pb::NodeInfo>, Status> {
        Ok(Response::new(edge::info_to_pb(&self.node.info())))
    }

    async fn list_node_v_ms(
        &self,
        _: Request<pb::ListNodeVMsRequest>,
    ) -> Result<Response<pb::ListNodeVMsResponse>, Status> {
        Ok(Response::new(pb::ListNodeVMsResponse {
            vms: self.node.list().iter().map(edge::vm_to_pb).collect(),
        }))
    }

    type WatchNodeVMsStream = Stream2<pb::NodeVmEvent>;

    async fn watch_node_v_ms(
        &self,
        req: Request<pb::WatchNodeVMsRequest>,
    ) -> Result<Response<Self::WatchNodeVMsStream>, Status> {
        self.watch_vms(req).await
    }

    async fn define_vm(
        &self,
        req: Request<pb::DefineVmRequest>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let local = is_local(&req);
        let r = req.into_inner();
        let spec = r
            .spec
            .ok_or_else(|| ApiError::InvalidArgument("spec is required".into()))?;
        // The host files the spec names: only those the requester may read.
        let caller = Caller::from(r.caller.as_ref());
        for (what, path) in [("kernel", &spec.kernel), ("initrd", &spec.initrd)] {
            if !path.is_empty() {
                self.open_host_file(what, path.clone(), caller.clone(), local)
                    .await?;
            }
        }
        let name = kcore_types::VmName::parse(&r.name).map_err(ApiError::from)?;
        let request = request_from_pb(&spec)?;
        let node = self.node.clone();
        let nv = run_to_end(async move { node.define(r.id, name, request).await }).await?;
        Ok(Response::new(edge::vm_to_pb(&nv)))
    }

    async fn prepare_migration(
        &self,
        req: Request<pb::PrepareMigrationRequest>,
    ) -> Result<Response<pb::PrepareMigrationResponse>, Status> {
        self.prepare_incoming(req).await
    }

    type MigrateNodeVMStream = Stream2<pb::MigrationProgress>;

    async fn migrate_node_vm(
        &self,
        req: Request<pb::MigrateNodeVmRequest>,
    ) -> Result<Response<Self::MigrateNodeVMStream>, Status> {
        self.migrate_out(req).await
    }

    async fn commit_migration(
        &self,
        req: Request<pb::CommitMigrationRequest>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        self.commit_incoming(req).await
    }

    async fn resume_migrated_vm(
        &self,
        req: Request<pb::NodeVmRef>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        self.resume_migrated(req).await
    }

    async fn start_node_vm(
        &self,
        req: Request<pb::NodeVmStartRequest>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let r = req.into_inner();
        let at = requested_at(r.requested_at_us);
        let node = self.node.clone();
        let nv = run_to_end(async move { node.start_vm(&r.id, at).await }).await?;
        Ok(Response::new(edge::vm_to_pb(&nv)))
    }

    async fn stop_node_vm(
        &self,
        req: Request<pb::NodeVmStopRequest>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let r = req.into_inner();
        // Unset: the default grace; 0: none (quit at once).
        let timeout = r
            .timeout_secs
            .map_or(DEFAULT_STOP_TIMEOUT, |s| Duration::from_secs(s.into()));
        let node = self.node.clone();
        let nv = run_to_end(async move { node.stop_vm(&r.id, r.force, timeout).await }).await?;
        Ok(Response::new(edge::vm_to_pb(&nv)))
    }

    async fn reboot_node_vm(
        &self,
        req: Request<pb::NodeVmRef>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let vm = self.node.vm(&req.into_inner().id)?;
        vm.reboot().await.map_err(ApiError::from)?;
        Ok(Response::new(edge::vm_to_pb(&self.node.snapshot(&vm))))
    }

    async fn pause_node_vm(
        &self,
        req: Request<pb::NodeVmRef>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let vm = self.node.vm(&req.into_inner().id)?;
        vm.pause().await.map_err(ApiError::from)?;
        Ok(Response::new(edge::vm_to_pb(&self.node.snapshot(&vm))))
    }

    async fn resume_node_vm(
        &self,
        req: Request<pb::NodeVmRef>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let vm = self.node.vm(&req.into_inner().id)?;
        vm.resume().await.map_err(ApiError::from)?;
        Ok(Response::new(edge::vm_to_pb(&self.node.snapshot(&vm))))
    }

    async fn undefine_vm(
        &self,
        req: Request<pb::UndefineVmRequest>,
    ) -> Result<Response<pb::UndefineVmResponse>, Status> {
        let r = req.into_inner();
        let node = self.node.clone();
        run_to_end(async move { node.undefine(&r.id, r.force, r.keep_disks).await }).await?;
        Ok(Response::new(pb::UndefineVmResponse {}))
    }

    async fn update_node_vm(
        &self,
        req: Request<pb::UpdateVmRequest>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let r = req.into_inner();
        let update = update_from_pb(&r);
        let node = self.node.clone();
        let nv = run_to_end(async move { node.update_vm(&r.name, update).await }).await?;
        Ok(Response::new(edge::vm_to_pb(&nv)))
    }

    type NodeConsoleStream = Stream2<pb::ConsoleOutput>;

    async fn node_console(
        &self,
        req: Request<Streaming<pb::ConsoleInput>>,
    ) -> Result<Response<Self::NodeConsoleStream>, Status> {
        self.console(req).await
    }

    async fn node_console_log(
        &self,
        req: Request<pb::NodeVmRef>,
    ) -> Result<Response<pb::ConsoleLog>, Status> {
        let vm = self.node.vm(&req.into_inner().id)?;
        Ok(Response::new(pb::ConsoleLog {
            data: vm.console().log(),
        }))
    }

    async fn list_node_pools(
        &self,
        _: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let storage = self.node.storage().clone();
        let pools = super::blocking(move || storage.list_pools()).await?;
        Ok(Response::new(pb::ListPoolsResponse {
            pools: pools.iter().map(edge::pool_to_pb).collect(),
        }))
    }

    type NodeImportImageStream = Stream2<pb::ImportImageProgress>;

    async fn node_import_image(
        &self,
        req: Request<pb::ImportImageRequest>,
    ) -> Result<Response<Self::NodeImportImageStream>, Status> {
        self.import_image(req).await
    }

    async fn list_node_images(
        &self,
        _: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let storage = self.node.storage().clone();
        let images = super::blocking(move || storage.list_images()).await?;
        Ok(Response::new(pb::ListImagesResponse {
            images: images.iter().map(edge::image_to_pb).collect(),
        }))
    }

    async fn delete_node_image(
        &self,
        req: Request<pb::DeleteImageRequest>,
    ) -> Result<Response<pb::DeleteImageResponse>, Status> {
        let r = req.into_inner();
        let storage = self.node.storage().clone();
        super::blocking(move || storage.delete_image(&r.pool, &r.name)).await?;
        Ok(Response::new(pb::DeleteImageResponse {}))
    }

    async fn create_node_template(
        &self,
        req: Request<pb::CreateNodeTemplateRequest>,
    ) -> Result<Response<pb::Template>, Status> {
        let r = req.into_inner();
        let name = kcore_types::TemplateName::parse(&r.name).map_err(ApiError::from)?;
        let node = self.node.clone();
        let t = run_to_end(async move { node.create_template(name, &r.vm, r.stop_source).await })
            .await?;
        Ok(Response::new(edge::template_to_pb(&t)))
    }

    async fn list_node_templates(
        &self,
        _: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        let templates = self.node.list_templates()?;
        Ok(Response::new(pb::ListTemplatesResponse {
            templates: templates.iter().map(edge::template_to_pb).collect(),
        }))
    }

    async fn delete_node_template(
        &self,
        req: Request<pb::DeleteTemplateRequest>,
    ) -> Result<Response<pb::DeleteTemplateResponse>, Status> {
        let name =
            kcore_types::TemplateName::parse(&req.into_inner().name).map_err(ApiError::from)?;
        self.node.delete_template(&name)?;
        Ok(Response::new(pb::DeleteTemplateResponse {}))
    }

    async fn list_node_volumes(
        &self,
        _: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let volumes = self.node.list_volumes().await?;
        Ok(Response::new(pb::ListVolumesResponse {
            volumes: volumes.iter().map(edge::volume_to_pb).collect(),
        }))
    }

    async fn create_node_volume(
        &self,
        req: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let r = req.into_inner();
        let node = self.node.clone();
        let v =
            run_to_end(async move { node.create_volume(r.pool, r.name, r.size_gb).await }).await?;
        Ok(Response::new(edge::volume_to_pb(&v)))
    }

    async fn delete_node_volume(
        &self,
        req: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeResponse>, Status> {
        let r = req.into_inner();
        let node = self.node.clone();
        run_to_end(async move { node.delete_volume(r.pool, r.name).await }).await?;
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }

    async fn attach_node_disk(
        &self,
        req: Request<pb::AttachDiskRequest>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let r = req.into_inner();
        let disk = edge::attach_disk_from_pb(&r)?;
        let nv = self.node.attach_disk(&r.vm, disk).await?;
        Ok(Response::new(edge::vm_to_pb(&nv)))
    }

    async fn detach_node_disk(
        &self,
        req: Request<pb::DetachDiskRequest>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let r = req.into_inner();
        let nv = self.node.detach_disk(&r.vm, &r.disk, r.keep).await?;
        Ok(Response::new(edge::vm_to_pb(&nv)))
    }

    async fn resize_node_disk(
        &self,
        req: Request<pb::ResizeDiskRequest>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let r = req.into_inner();
        let nv = self.node.resize_disk(&r.vm, &r.disk, r.size_gb).await?;
        Ok(Response::new(edge::vm_to_pb(&nv)))
    }

    async fn node_exec_qmp(
        &self,
        req: Request<pb::NodeExecQmpRequest>,
    ) -> Result<Response<pb::ExecQmpResponse>, Status> {
        let r = req.into_inner();
        let vm = self.node.vm(&r.id)?;
        let cmd: serde_json::Value = serde_json::from_str(&r.command_json).map_err(|e| {
            ApiError::InvalidArgument(format!("QMP command is not valid JSON: {e}"))
        })?;
        if !cmd.is_object() || cmd.get("execute").and_then(|e| e.as_str()).is_none() {
            return Err(ApiError::InvalidArgument(
                "QMP command must be an object like {\"execute\":\"query-status\"}".into(),
            )
            .into());
        }
        let qmp = vm.qmp().map_err(ApiError::from)?;
        let quit = cmd["execute"] == "quit";
        if quit {
            vm.note_qmp_quit(true);
        }
        let reply = qmp.execute_raw(cmd).await.map_err(ApiError::from)?;
        if quit && reply.get("error").is_some() {
            vm.note_qmp_quit(false);
        }
        Ok(Response::new(pb::ExecQmpResponse {
            reply_json: reply.to_string(),
        }))
    }

    async fn ensure_network(
        &self,
        req: Request<pb::Network>,
    ) -> Result<Response<pb::NetworkOnNode>, Status> {
        let def = edge::network_def_from_pb(&req.into_inner())?;
        let status = self.node.networks().ensure(def).await?;
        Ok(Response::new(edge::network_status_to_pb(&status)))
    }

    async fn delete_node_network(
        &self,
        req: Request<pb::DeleteNetworkRequest>,
    ) -> Result<Response<pb::DeleteNetworkResponse>, Status> {
        self.node.delete_network(&req.into_inner().name).await?;
        Ok(Response::new(pb::DeleteNetworkResponse {}))
    }

    async fn list_node_networks(
        &self,
        _: Request<pb::ListNetworksRequest>,
    ) -> Result<Response<pb::ListNodeNetworksResponse>, Status> {
        Ok(Response::new(pb::ListNodeNetworksResponse {
            networks: self
                .node
                .networks()
                .list()
                .iter()
                .map(edge::network_view_to_pb)
                .collect(),
        }))
    }

    async fn attach_node_nic(
        &self,
        req: Request<pb::AttachNicRequest>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let r = req.into_inner();
        let nic = edge::attach_nic_from_pb(&r)?;
        let nv = self.node.attach_nic(&r.vm, nic).await?;
        Ok(Response::new(edge::vm_to_pb(&nv)))
    }

    async fn detach_node_nic(
        &self,
        req: Request<pb::DetachNicRequest>,
    ) -> Result<Response<pb::NodeVm>, Status> {
        let r = req.into_inner();
        let nv = self.node.detach_nic(&r.vm, &r.nic).await?;
        Ok(Response::new(edge::vm_to_pb(&nv)))
    }

    async fn get_node_vm_stats(
        &self,
        req: Request<pb::GetVmStatsRequest>,
    ) -> Result<Response<pb::VmStats>, Status> {
        let r = req.into_inner();
        let since = (r.since_seconds > 0).then(|| Duration::from_secs(u64::from(r.since_seconds)));
        let stats = self.node.vm_stats(&r.name, since)?;
        Ok(Response::new(crate::convert::vm_stats_to_pb(&stats)))
    }
}

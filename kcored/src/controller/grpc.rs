//! `KcoreService` gRPC handlers: translate requests to [`Controller`] calls and back.
//! The longer handlers live beside it: the streams (migration, events, console, image
//! import) in [`streams`], the certificate ones in [`pki`].

mod pki;
mod streams;

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use kcore_proto::v1 as pb;
use kcore_proto::v1::kcore_service_server::KcoreService;
use tonic::{Request, Response, Status, Streaming};

use super::Controller;
use super::node_client::{Stop, VmOp};
use super::storage::DiskOp;
use crate::caller::Requester;
use crate::convert::{
    cert_to_pb, cluster_network_to_pb, drained_to_pb, image_to_pb, network_request_from_pb,
    node_to_pb, pool_to_pb, template_to_pb, vm_to_pb, volume_to_pb,
};
use crate::error::ApiError;

type Stream2<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The gRPC face of a [`Controller`].
#[derive(Debug, Clone)]
pub struct KcoreApi {
    ctl: Arc<Controller>,
    /// The cluster PKI directory (with ca.key) that `IssueCertificate` signs with.
    pki_dir: Option<PathBuf>,
}

impl KcoreApi {
    pub fn new(ctl: Arc<Controller>) -> Self {
        KcoreApi { ctl, pki_dir: None }
    }

    /// Issue certificates with the CA in `dir`.
    pub fn with_pki(mut self, dir: PathBuf) -> Self {
        self.pki_dir = Some(dir);
        self
    }
}

#[tonic::async_trait]
impl KcoreService for KcoreApi {
    async fn list_v_ms(
        &self,
        req: Request<pb::ListVMsRequest>,
    ) -> Result<Response<pb::ListVMsResponse>, Status> {
        let node = req.into_inner().node;
        let node = (!node.is_empty()).then_some(node);
        let vms = self.ctl.store.list_vms(node.as_deref())?;
        Ok(Response::new(pb::ListVMsResponse {
            vms: vms.iter().map(vm_to_pb).collect(),
        }))
    }

    async fn get_vm(&self, req: Request<pb::GetVmRequest>) -> Result<Response<pb::Vm>, Status> {
        Ok(Response::new(vm_to_pb(
            &self.ctl.get_row(&req.into_inner().name)?,
        )))
    }

    async fn create_vm(
        &self,
        req: Request<pb::CreateVmRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        // On its own task: a client that goes away (Ctrl-C) does not cut the create short.
        let ctl = self.ctl.clone();
        let by = Requester::of(&req);
        let create = crate::convert::create_from_pb(req.into_inner())?;
        let vm = tokio::spawn(async move { ctl.create_vm(&by, create).await })
            .await
            .map_err(|e| ApiError::Internal(format!("create task failed: {e}")))??;
        Ok(Response::new(vm_to_pb(&vm)))
    }

    async fn delete_vm(
        &self,
        req: Request<pb::DeleteVmRequest>,
    ) -> Result<Response<pb::DeleteVmResponse>, Status> {
        let by = Requester::of(&req);
        let r = req.into_inner();
        self.ctl
            .delete_vm(&by, &r.name, r.force, r.keep_disks)
            .await?;
        Ok(Response::new(pb::DeleteVmResponse {}))
    }

    async fn start_vm(&self, req: Request<pb::StartVmRequest>) -> Result<Response<pb::Vm>, Status> {
        let by = Requester::of(&req);
        let r = req.into_inner();
        Ok(Response::new(vm_to_pb(
            &self.ctl.start_vm(&by, &r.name, r.no_wait).await?,
        )))
    }

    async fn stop_vm(&self, req: Request<pb::StopVmRequest>) -> Result<Response<pb::Vm>, Status> {
        let by = Requester::of(&req);
        let r = req.into_inner();
        let stop = Stop {
            force: r.force,
            timeout_secs: r.timeout_secs,
        };
        Ok(Response::new(vm_to_pb(
            &self.ctl.stop_vm(&by, &r.name, stop, !r.no_wait).await?,
        )))
    }

    async fn reboot_vm(
        &self,
        req: Request<pb::RebootVmRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let by = Requester::of(&req);
        let name = req.into_inner().name;
        Ok(Response::new(vm_to_pb(
            &self.ctl.simple_op(&by, &name, VmOp::Reboot).await?,
        )))
    }

    async fn pause_vm(&self, req: Request<pb::PauseVmRequest>) -> Result<Response<pb::Vm>, Status> {
        let by = Requester::of(&req);
        let name = req.into_inner().name;
        Ok(Response::new(vm_to_pb(
            &self.ctl.simple_op(&by, &name, VmOp::Pause).await?,
        )))
    }

    async fn resume_vm(
        &self,
        req: Request<pb::ResumeVmRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let by = Requester::of(&req);
        let name = req.into_inner().name;
        Ok(Response::new(vm_to_pb(
            &self.ctl.simple_op(&by, &name, VmOp::Resume).await?,
        )))
    }

    async fn update_vm(
        &self,
        req: Request<pb::UpdateVmRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let by = Requester::of(&req);
        let r = req.into_inner();
        let update = crate::convert::update_from_pb(&r);
        // On its own task, as a create: a client that goes away does not cut it short.
        let ctl = self.ctl.clone();
        let vm = tokio::spawn(async move { ctl.update_vm(&by, &r.name, update).await })
            .await
            .map_err(|e| ApiError::Internal(format!("update task failed: {e}")))??;
        Ok(Response::new(vm_to_pb(&vm)))
    }

    async fn list_nodes(
        &self,
        _: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let nodes = self.ctl.list_nodes()?;
        Ok(Response::new(pb::ListNodesResponse {
            nodes: nodes.iter().map(node_to_pb).collect(),
        }))
    }

    async fn get_node_status(
        &self,
        req: Request<pb::GetNodeStatusRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let link = self.ctl.nodes.get(&req.into_inner().name)?;
        Ok(Response::new(node_to_pb(&self.ctl.node_view(&link)?)))
    }

    async fn cordon_node(
        &self,
        req: Request<pb::CordonNodeRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let by = Requester::of(&req);
        let r = req.into_inner();
        Ok(Response::new(node_to_pb(
            &self.ctl.cordon(&by, &r.name, r.cordon)?,
        )))
    }

    async fn drain_node(
        &self,
        req: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        let by = Requester::of(&req);
        let r = req.into_inner();
        // DrainNode keeps "0: the default" for its timeout.
        let how = crate::controller::Drain {
            stop_all: r.stop,
            force: r.force,
            timeout_secs: (r.timeout_secs != 0).then_some(r.timeout_secs),
        };
        let (ctl, pki) = (self.ctl.clone(), self.pki_dir.clone());
        // Runs to its end even if the client goes away: every migration keeps one copy.
        let (node, vms) =
            tokio::spawn(async move { ctl.drain(&by, pki, &r.name, how, &mut |_| {}).await })
                .await
                .map_err(|e| ApiError::Internal(format!("drain task failed: {e}")))??;
        let names = |a: &str| {
            vms.iter()
                .filter(|d| d.action == a)
                .map(|d| d.name.clone())
                .collect()
        };
        Ok(Response::new(pb::DrainNodeResponse {
            node: Some(node_to_pb(&node)),
            stopped: names("stopped"),
            migrated: names("migrated"),
            vms: vms.iter().map(drained_to_pb).collect(),
        }))
    }

    type MigrateVMStream = Stream2<pb::MigrationProgress>;

    async fn migrate_vm(
        &self,
        req: Request<pb::MigrateVmRequest>,
    ) -> Result<Response<Self::MigrateVMStream>, Status> {
        self.migration_stream(req).await
    }

    type WatchEventsStream = Stream2<pb::Event>;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        self.event_stream(req).await
    }

    type AttachConsoleStream = Stream2<pb::ConsoleOutput>;

    async fn attach_console(
        &self,
        req: Request<Streaming<pb::ConsoleInput>>,
    ) -> Result<Response<Self::AttachConsoleStream>, Status> {
        self.console_relay(req).await
    }

    async fn get_console_log(
        &self,
        req: Request<pb::GetConsoleLogRequest>,
    ) -> Result<Response<pb::ConsoleLog>, Status> {
        let row = self.ctl.get_row(&req.into_inner().vm)?;
        let mut client = self.ctl.nodes.client(&row.node)?;
        let log = client
            .raw()
            .node_console_log(pb::NodeVmRef { id: row.id })
            .await?
            .into_inner();
        Ok(Response::new(log))
    }

    async fn list_pools(
        &self,
        req: Request<pb::ListPoolsRequest>,
    ) -> Result<Response<pb::ListPoolsResponse>, Status> {
        let pools = self.ctl.list_pools(&req.into_inner().node).await?;
        Ok(Response::new(pb::ListPoolsResponse {
            pools: pools.iter().map(pool_to_pb).collect(),
        }))
    }

    type ImportImageStream = Stream2<pb::ImportImageProgress>;

    async fn import_image(
        &self,
        req: Request<pb::ImportImageRequest>,
    ) -> Result<Response<Self::ImportImageStream>, Status> {
        self.import_stream(req).await
    }

    async fn list_images(
        &self,
        req: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let images = self.ctl.list_images(&req.into_inner().node).await?;
        Ok(Response::new(pb::ListImagesResponse {
            images: images.iter().map(image_to_pb).collect(),
        }))
    }

    async fn delete_image(
        &self,
        req: Request<pb::DeleteImageRequest>,
    ) -> Result<Response<pb::DeleteImageResponse>, Status> {
        let by = Requester::of(&req);
        let r = req.into_inner();
        self.ctl
            .delete_image(&by, &r.name, &r.pool, &r.node)
            .await?;
        Ok(Response::new(pb::DeleteImageResponse {}))
    }

    async fn list_volumes(
        &self,
        req: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let volumes = self.ctl.list_volumes(&req.into_inner().node).await?;
        Ok(Response::new(pb::ListVolumesResponse {
            volumes: volumes.iter().map(volume_to_pb).collect(),
        }))
    }

    async fn create_volume(
        &self,
        req: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let by = Requester::of(&req);
        let r = req.into_inner();
        let v = self
            .ctl
            .create_volume(&by, &r.name, &r.pool, r.size_gb, &r.node)
            .await?;
        Ok(Response::new(volume_to_pb(&v)))
    }

    async fn create_template(
        &self,
        req: Request<pb::CreateTemplateRequest>,
    ) -> Result<Response<pb::Template>, Status> {
        let by = Requester::of(&req);
        let r = req.into_inner();
        let t = self
            .ctl
            .create_template(&by, &r.name, &r.from_vm, r.stop_source)
            .await?;
        Ok(Response::new(template_to_pb(&t)))
    }

    async fn list_templates(
        &self,
        req: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        let templates = self.ctl.list_templates(&req.into_inner().node).await?;
        Ok(Response::new(pb::ListTemplatesResponse {
            templates: templates.iter().map(template_to_pb).collect(),
        }))
    }

    async fn get_template(
        &self,
        req: Request<pb::GetTemplateRequest>,
    ) -> Result<Response<pb::Template>, Status> {
        let t = self.ctl.get_template(&req.into_inner().name).await?;
        Ok(Response::new(template_to_pb(&t)))
    }

    async fn delete_template(
        &self,
        req: Request<pb::DeleteTemplateRequest>,
    ) -> Result<Response<pb::DeleteTemplateResponse>, Status> {
        let by = Requester::of(&req);
        self.ctl
            .delete_template(&by, &req.into_inner().name)
            .await?;
        Ok(Response::new(pb::DeleteTemplateResponse {}))
    }

    async fn delete_volume(
        &self,
        req: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeResponse>, Status> {
        let by = Requester::of(&req);
        let r = req.into_inner();
        self.ctl
            .delete_volume(&by, &r.name, &r.pool, &r.node)
            .await?;
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }

    async fn attach_disk(
        &self,
        req: Request<pb::AttachDiskRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let by = Requester::of(&req);
        Ok(Response::new(vm_to_pb(&{
            let r = req.into_inner();
            let op = DiskOp::Attach {
                pool: r.pool,
                size_gb: r.size_gb,
                volume: r.volume,
            };
            self.ctl.disk_op(&by, &r.vm, op).await?
        })))
    }

    async fn detach_disk(
        &self,
        req: Request<pb::DetachDiskRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let by = Requester::of(&req);
        Ok(Response::new(vm_to_pb(&{
            let r = req.into_inner();
            let op = DiskOp::Detach {
                disk: r.disk,
                keep: r.keep,
            };
            self.ctl.disk_op(&by, &r.vm, op).await?
        })))
    }

    async fn resize_disk(
        &self,
        req: Request<pb::ResizeDiskRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let by = Requester::of(&req);
        Ok(Response::new(vm_to_pb(&{
            let r = req.into_inner();
            let op = DiskOp::Resize {
                disk: r.disk,
                size_gb: r.size_gb,
            };
            self.ctl.disk_op(&by, &r.vm, op).await?
        })))
    }

    async fn exec_qmp(
        &self,
        req: Request<pb::ExecQmpRequest>,
    ) -> Result<Response<pb::ExecQmpResponse>, Status> {
        let caller = Requester::of(&req);
        let r = req.into_inner();
        let reply_json = self.ctl.exec_qmp(&caller, &r.vm, r.command_json).await?;
        Ok(Response::new(pb::ExecQmpResponse { reply_json }))
    }

    async fn create_network(
        &self,
        req: Request<pb::CreateNetworkRequest>,
    ) -> Result<Response<pb::Network>, Status> {
        let by = Requester::of(&req);
        let def = network_request_from_pb(&req.into_inner())?;
        let net = self.ctl.create_network(&by, def).await?;
        Ok(Response::new(cluster_network_to_pb(&net)))
    }

    async fn list_networks(
        &self,
        _: Request<pb::ListNetworksRequest>,
    ) -> Result<Response<pb::ListNetworksResponse>, Status> {
        let nets = self.ctl.list_networks().await?;
        Ok(Response::new(pb::ListNetworksResponse {
            networks: nets.iter().map(cluster_network_to_pb).collect(),
        }))
    }

    async fn get_network(
        &self,
        req: Request<pb::GetNetworkRequest>,
    ) -> Result<Response<pb::Network>, Status> {
        let net = self.ctl.get_network(&req.into_inner().name).await?;
        Ok(Response::new(cluster_network_to_pb(&net)))
    }

    async fn delete_network(
        &self,
        req: Request<pb::DeleteNetworkRequest>,
    ) -> Result<Response<pb::DeleteNetworkResponse>, Status> {
        let by = Requester::of(&req);
        self.ctl.delete_network(&by, &req.into_inner().name).await?;
        Ok(Response::new(pb::DeleteNetworkResponse {}))
    }

    async fn attach_nic(
        &self,
        req: Request<pb::AttachNicRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let by = Requester::of(&req);
        Ok(Response::new(vm_to_pb(&{
            let r = req.into_inner();
            let nic = crate::convert::nic_from_pb(&pb::NicRequest {
                network: r.network,
                mac: r.mac,
                model: r.model,
            })?;
            self.ctl.attach_nic(&by, &r.vm, nic).await?
        })))
    }

    async fn detach_nic(
        &self,
        req: Request<pb::DetachNicRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let by = Requester::of(&req);
        Ok(Response::new(vm_to_pb(&{
            let r = req.into_inner();
            self.ctl.detach_nic(&by, &r.vm, &r.nic).await?
        })))
    }

    async fn issue_certificate(
        &self,
        req: Request<pb::IssueCertificateRequest>,
    ) -> Result<Response<pb::IssuedCertificate>, Status> {
        self.issue_cert(req).await
    }

    async fn create_join_token(
        &self,
        req: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::JoinToken>, Status> {
        let by = Requester::of(&req);
        Ok(Response::new(super::join::create_token(
            &self.ctl,
            &by,
            req.into_inner().ttl_seconds,
        )?))
    }

    async fn register_node(
        &self,
        req: Request<pb::RegisterNodeRequest>,
    ) -> Result<Response<pb::RegisterNodeResponse>, Status> {
        let by = Requester::of(&req);
        let r = req.into_inner();
        self.ctl.register(&by, &r.name, &r.address).await?;
        Ok(Response::new(pb::RegisterNodeResponse {}))
    }

    async fn renew_node_certificate(
        &self,
        req: Request<pb::RenewNodeCertificateRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        self.renew_node_cert(req).await
    }

    async fn list_certificates(
        &self,
        _: Request<pb::ListCertificatesRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        Ok(Response::new(pb::ListCertificatesResponse {
            certificates: self
                .ctl
                .store
                .list_certs()?
                .iter()
                .map(cert_to_pb)
                .collect(),
        }))
    }

    async fn revoke_certificate(
        &self,
        req: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        self.revoke_cert(req).await
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        self.remove_node_and_certs(req).await
    }

    async fn get_vm_stats(
        &self,
        req: Request<pb::GetVmStatsRequest>,
    ) -> Result<Response<pb::VmStats>, Status> {
        let r = req.into_inner();
        let stats = self.ctl.vm_stats(&r.name, r.since_seconds).await?;
        Ok(Response::new(crate::convert::vm_stats_to_pb(&stats)))
    }
}

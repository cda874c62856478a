//! `KcoreService` gRPC handlers: translate requests to [`Controller`] calls and back.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use kcore_proto::v1 as pb;
use kcore_proto::v1::kcore_service_server::KcoreService;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::Controller;
use super::storage::DiskOp;
use super::vms::SimpleOp;
use crate::caller::Caller;
use crate::convert::vm_to_pb;
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
        let caller = Caller::of(&req);
        let create = crate::convert::create_from_pb(req.into_inner())?;
        let vm = tokio::spawn(async move { ctl.create_vm(&caller, create).await })
            .await
            .map_err(|e| ApiError::Internal(format!("create task failed: {e}")))??;
        Ok(Response::new(vm_to_pb(&vm)))
    }

    async fn delete_vm(
        &self,
        req: Request<pb::DeleteVmRequest>,
    ) -> Result<Response<pb::DeleteVmResponse>, Status> {
        let r = req.into_inner();
        self.ctl.delete_vm(&r.name, r.force, r.keep_disks).await?;
        Ok(Response::new(pb::DeleteVmResponse {}))
    }

    async fn start_vm(&self, req: Request<pb::StartVmRequest>) -> Result<Response<pb::Vm>, Status> {
        let r = req.into_inner();
        Ok(Response::new(vm_to_pb(
            &self.ctl.start_vm(&r.name, r.no_wait).await?,
        )))
    }

    async fn stop_vm(&self, req: Request<pb::StopVmRequest>) -> Result<Response<pb::Vm>, Status> {
        Ok(Response::new(vm_to_pb(
            &self.ctl.stop_vm(req.into_inner()).await?,
        )))
    }

    async fn reboot_vm(
        &self,
        req: Request<pb::RebootVmRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let name = req.into_inner().name;
        Ok(Response::new(vm_to_pb(
            &self.ctl.simple_op(&name, SimpleOp::Reboot).await?,
        )))
    }

    async fn pause_vm(&self, req: Request<pb::PauseVmRequest>) -> Result<Response<pb::Vm>, Status> {
        let name = req.into_inner().name;
        Ok(Response::new(vm_to_pb(
            &self.ctl.simple_op(&name, SimpleOp::Pause).await?,
        )))
    }

    async fn resume_vm(
        &self,
        req: Request<pb::ResumeVmRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        let name = req.into_inner().name;
        Ok(Response::new(vm_to_pb(
            &self.ctl.simple_op(&name, SimpleOp::Resume).await?,
        )))
    }

    async fn list_nodes(
        &self,
        _: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        let mut nodes: Vec<pb::Node> = self
            .ctl
            .nodes
            .all()
            .iter()
            .map(|l| self.ctl.node_to_pb(l))
            .collect::<Result<_, _>>()?;
        // Registered nodes not reached since this start.
        for (name, address) in self.ctl.store.list_nodes()? {
            if !nodes.iter().any(|n| n.name == name) {
                nodes.push(pb::Node {
                    name,
                    address,
                    state: pb::NodeState::NotReady as i32,
                    ..Default::default()
                });
            }
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    async fn get_node_status(
        &self,
        req: Request<pb::GetNodeStatusRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let link = self.ctl.nodes.get(&req.into_inner().name)?;
        Ok(Response::new(self.ctl.node_to_pb(&link)?))
    }

    async fn cordon_node(
        &self,
        req: Request<pb::CordonNodeRequest>,
    ) -> Result<Response<pb::Node>, Status> {
        let r = req.into_inner();
        let link = self.ctl.nodes.get(&r.name)?;
        self.ctl.store.set_cordoned(&r.name, r.cordon)?;
        let kind = if r.cordon {
            "node.cordoned"
        } else {
            "node.uncordoned"
        };
        self.ctl.emit(kind, None, r.name.clone());
        Ok(Response::new(self.ctl.node_to_pb(&link)?))
    }

    async fn drain_node(
        &self,
        req: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        let r = req.into_inner();
        let link = self.ctl.nodes.get(&r.name)?;
        self.ctl.store.set_cordoned(&r.name, true)?;
        let mut stopped = Vec::new();
        for vm in self.ctl.store.list_vms(Some(&r.name))? {
            if matches!(vm.status, pb::VmStatus::Running | pb::VmStatus::Paused) {
                self.ctl
                    .stop_vm(pb::StopVmRequest {
                        name: vm.name.clone(),
                        force: r.force,
                        // DrainNode keeps "0: the default".
                        timeout_secs: (r.timeout_secs != 0).then_some(r.timeout_secs),
                        no_wait: false,
                    })
                    .await?;
                stopped.push(vm.name);
            }
        }
        self.ctl.emit(
            "node.drained",
            None,
            format!("{}: stopped {}", r.name, stopped.len()),
        );
        Ok(Response::new(pb::DrainNodeResponse {
            node: Some(self.ctl.node_to_pb(&link)?),
            stopped,
        }))
    }

    type WatchEventsStream = Stream2<pb::Event>;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let r = req.into_inner();
        let vm = (!r.vm.is_empty()).then_some(r.vm);
        let history = match (r.history, r.follow) {
            (0, false) => 50,
            (n, _) => n,
        };
        // Subscribe before reading history, then skip live events already in it.
        let mut sub = self.ctl.subscribe();
        let past = if history > 0 {
            self.ctl.store.recent_events(history, vm.as_deref())?
        } else {
            Vec::new()
        };
        let last_id = past.last().map(|e| e.id).unwrap_or(0);
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let follow = r.follow;
        tokio::spawn(async move {
            for ev in past {
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
            if !follow {
                return;
            }
            loop {
                match sub.recv().await {
                    Ok(ev) => {
                        if ev.id <= last_id || vm.as_ref().is_some_and(|v| *v != ev.vm_name) {
                            continue;
                        }
                        if tx.send(Ok(ev)).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "event watcher lagged");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type AttachConsoleStream = Stream2<pb::ConsoleOutput>;

    async fn attach_console(
        &self,
        req: Request<Streaming<pb::ConsoleInput>>,
    ) -> Result<Response<Self::AttachConsoleStream>, Status> {
        let mut input = req.into_inner();
        let mut first = input.message().await?.ok_or_else(|| {
            ApiError::InvalidArgument("console: the first message must name the VM".into())
        })?;
        let row = self.ctl.get_row(&first.vm)?;
        let mut client = self.ctl.nodes.client(&row.node)?;
        first.vm = row.id.clone();
        // Forward the client's messages to the node, the first one now naming the VM by id.
        let upstream = tokio_stream::iter(std::iter::once(first))
            .chain(input.take_while(|m| m.is_ok()).filter_map(|m| m.ok()));
        let out = client.node_console(upstream).await?.into_inner();
        Ok(Response::new(Box::pin(out)))
    }

    async fn get_console_log(
        &self,
        req: Request<pb::GetConsoleLogRequest>,
    ) -> Result<Response<pb::ConsoleLog>, Status> {
        let row = self.ctl.get_row(&req.into_inner().vm)?;
        let mut client = self.ctl.nodes.client(&row.node)?;
        let log = client
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
        Ok(Response::new(pb::ListPoolsResponse { pools }))
    }

    type ImportImageStream = Stream2<pb::ImportImageProgress>;

    async fn import_image(
        &self,
        req: Request<pb::ImportImageRequest>,
    ) -> Result<Response<Self::ImportImageStream>, Status> {
        let caller = Caller::of(&req);
        let stream = self.ctl.import_image(&caller, req.into_inner()).await?;
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_images(
        &self,
        req: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let images = self.ctl.list_images(&req.into_inner().node).await?;
        Ok(Response::new(pb::ListImagesResponse { images }))
    }

    async fn delete_image(
        &self,
        req: Request<pb::DeleteImageRequest>,
    ) -> Result<Response<pb::DeleteImageResponse>, Status> {
        self.ctl.delete_image(req.into_inner()).await?;
        Ok(Response::new(pb::DeleteImageResponse {}))
    }

    async fn list_volumes(
        &self,
        req: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let volumes = self.ctl.list_volumes(&req.into_inner().node).await?;
        Ok(Response::new(pb::ListVolumesResponse { volumes }))
    }

    async fn delete_volume(
        &self,
        req: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeResponse>, Status> {
        self.ctl.delete_volume(req.into_inner()).await?;
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }

    async fn attach_disk(
        &self,
        req: Request<pb::AttachDiskRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        Ok(Response::new(vm_to_pb(
            &self.ctl.disk_op(DiskOp::Attach(req.into_inner())).await?,
        )))
    }

    async fn detach_disk(
        &self,
        req: Request<pb::DetachDiskRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        Ok(Response::new(vm_to_pb(
            &self.ctl.disk_op(DiskOp::Detach(req.into_inner())).await?,
        )))
    }

    async fn resize_disk(
        &self,
        req: Request<pb::ResizeDiskRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        Ok(Response::new(vm_to_pb(
            &self.ctl.disk_op(DiskOp::Resize(req.into_inner())).await?,
        )))
    }

    async fn exec_qmp(
        &self,
        req: Request<pb::ExecQmpRequest>,
    ) -> Result<Response<pb::ExecQmpResponse>, Status> {
        let caller = Caller::of(&req);
        let r = req.into_inner();
        Ok(Response::new(
            self.ctl.exec_qmp(&caller, &r.vm, r.command_json).await?,
        ))
    }

    async fn create_network(
        &self,
        req: Request<pb::CreateNetworkRequest>,
    ) -> Result<Response<pb::Network>, Status> {
        Ok(Response::new(
            self.ctl.create_network(req.into_inner()).await?,
        ))
    }

    async fn list_networks(
        &self,
        _: Request<pb::ListNetworksRequest>,
    ) -> Result<Response<pb::ListNetworksResponse>, Status> {
        Ok(Response::new(pb::ListNetworksResponse {
            networks: self.ctl.list_networks().await?,
        }))
    }

    async fn get_network(
        &self,
        req: Request<pb::GetNetworkRequest>,
    ) -> Result<Response<pb::Network>, Status> {
        Ok(Response::new(
            self.ctl.get_network(&req.into_inner().name).await?,
        ))
    }

    async fn delete_network(
        &self,
        req: Request<pb::DeleteNetworkRequest>,
    ) -> Result<Response<pb::DeleteNetworkResponse>, Status> {
        self.ctl.delete_network(&req.into_inner().name).await?;
        Ok(Response::new(pb::DeleteNetworkResponse {}))
    }

    async fn attach_nic(
        &self,
        req: Request<pb::AttachNicRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        Ok(Response::new(vm_to_pb(
            &self.ctl.attach_nic(req.into_inner()).await?,
        )))
    }

    async fn detach_nic(
        &self,
        req: Request<pb::DetachNicRequest>,
    ) -> Result<Response<pb::Vm>, Status> {
        Ok(Response::new(vm_to_pb(
            &self.ctl.detach_nic(req.into_inner()).await?,
        )))
    }

    async fn issue_certificate(
        &self,
        req: Request<pb::IssueCertificateRequest>,
    ) -> Result<Response<pb::IssuedCertificate>, Status> {
        let r = req.into_inner();
        let role: crate::auth::Role = r.role.parse().map_err(ApiError::InvalidArgument)?;
        if !matches!(role, crate::auth::Role::Admin | crate::auth::Role::Viewer) {
            Err(ApiError::InvalidArgument(format!(
                "role {role} cannot be issued: use viewer or admin (nodes join with a join token)"
            )))?;
        }
        let dir = self
            .pki_dir
            .clone()
            .ok_or_else(|| ApiError::FailedPrecondition("this controller has no PKI".into()))?;
        let name = r.name.clone();
        let (cert_pem, key_pem, ca_pem) = tokio::task::spawn_blocking(move || {
            let (cert, key) = crate::pki::issue_client_cert(&dir, &name, role)?;
            let ca = crate::pki::Pki { dir }.read_string(crate::pki::CA_CERT)?;
            Ok::<_, crate::pki::PkiError>((cert, key, ca))
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(ApiError::from)?;
        self.ctl.record_issued(&cert_pem);
        tracing::info!(name = %r.name, role = %role, "issued a client certificate");
        self.ctl.emit(
            "cert.issued",
            None,
            format!("issued a {role} certificate for {}", r.name),
        );
        Ok(Response::new(pb::IssuedCertificate {
            cert_pem,
            key_pem,
            ca_pem,
        }))
    }

    async fn create_join_token(
        &self,
        req: Request<pb::CreateJoinTokenRequest>,
    ) -> Result<Response<pb::JoinToken>, Status> {
        Ok(Response::new(super::join::create_token(
            &self.ctl,
            req.into_inner().ttl_seconds,
        )?))
    }

    async fn register_node(
        &self,
        req: Request<pb::RegisterNodeRequest>,
    ) -> Result<Response<pb::RegisterNodeResponse>, Status> {
        // A node may register only itself (auth.rs let only admin and node through).
        if let Some(certs) = req.peer_certs()
            && let Some(leaf) = certs.first()
            && crate::auth::role_of_cert(leaf) == Ok(crate::auth::Role::Node)
        {
            let cn = crate::auth::cn_of_cert(leaf).unwrap_or_default();
            if cn != req.get_ref().name {
                Err(ApiError::PermissionDenied(format!(
                    "node {cn:?} may register only itself"
                )))?;
            }
            if self.ctl.store.is_removed(&cn)? {
                Err(ApiError::PermissionDenied(format!(
                    "node {cn} was removed from the cluster: join it again with a new token"
                )))?;
            }
        }
        let r = req.into_inner();
        self.ctl.register_node(&r.name, &r.address).await?;
        Ok(Response::new(pb::RegisterNodeResponse {}))
    }

    async fn renew_node_certificate(
        &self,
        req: Request<pb::RenewNodeCertificateRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let name = req
            .peer_certs()
            .and_then(|c| c.first().cloned())
            .filter(|leaf| crate::auth::role_of_cert(leaf) == Ok(crate::auth::Role::Node))
            .and_then(|leaf| crate::auth::cn_of_cert(&leaf))
            .ok_or_else(|| {
                ApiError::PermissionDenied(
                    "only a node renews a node certificate, with its own".into(),
                )
            })?;
        if self.ctl.nodes.get(&name).is_err() {
            Err(ApiError::PermissionDenied(format!(
                "node {name} is not in the cluster"
            )))?;
        }
        let dir = self
            .pki_dir
            .clone()
            .ok_or_else(|| ApiError::FailedPrecondition("this controller has no PKI".into()))?;
        let r = req.into_inner();
        let resp =
            super::join::sign_for_node(dir, &name, &r.csr_pem, self.ctl.tuning.node_cert_lifetime)
                .await?;
        self.ctl.record_issued(&resp.cert_pem);
        // Removed while this was signed: the new certificate goes the way of the old ones.
        if self.ctl.nodes.get(&name).is_err() {
            if let Ok(info) = crate::pki::cert_info(resp.cert_pem.as_bytes()) {
                self.ctl.revoke("", &info.serial, None)?;
            }
            Err(ApiError::PermissionDenied(format!(
                "node {name} is not in the cluster"
            )))?;
        }
        tracing::info!(node = %name, "renewed a node certificate");
        self.ctl
            .emit_node("node.cert_renewed", &name, "issued a new node certificate");
        Ok(Response::new(resp))
    }

    async fn list_certificates(
        &self,
        _: Request<pb::ListCertificatesRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        Ok(Response::new(pb::ListCertificatesResponse {
            certificates: self.ctl.store.list_certs()?,
        }))
    }

    async fn revoke_certificate(
        &self,
        req: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::ListCertificatesResponse>, Status> {
        let caller = req
            .peer_certs()
            .and_then(|c| c.first().and_then(|leaf| crate::auth::serial_of_cert(leaf)));
        let r = req.into_inner();
        let certificates = self.ctl.revoke(&r.name, &r.serial, caller.as_deref())?;
        Ok(Response::new(pb::ListCertificatesResponse { certificates }))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let revoked = self.ctl.remove_node(&req.into_inner().name)?;
        Ok(Response::new(pb::RemoveNodeResponse { revoked }))
    }
}

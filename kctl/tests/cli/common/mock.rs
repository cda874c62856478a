//! The mock KcoreService: it records what kctl sent and answers from its [`World`] the way
//! kcored would, with kcored's messages ([`super::texts`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcore_proto::v1::kcore_service_server::KcoreService;
use kcore_proto::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Pki;
use super::texts::{CONSOLE_FIRST, ONLY_NODES_RENEW};
use super::world::{CONSOLE_LOG, World};

type Log<T> = Arc<Mutex<Vec<T>>>;

/// What clients sent, by call.
#[derive(Clone, Default)]
pub struct Records {
    pub console_first: Log<ConsoleInput>,
    pub vm_deletes: Log<DeleteVmRequest>,
    pub stops: Log<StopVmRequest>,
    pub imports: Log<ImportImageRequest>,
    pub image_deletes: Log<DeleteImageRequest>,
    pub volume_deletes: Log<DeleteVolumeRequest>,
    pub qmp: Log<ExecQmpRequest>,
    pub watches: Log<WatchEventsRequest>,
    pub updates: Log<UpdateVmRequest>,
}

fn record<T>(log: &Mutex<Vec<T>>, item: T) {
    if let Ok(mut seen) = log.lock() {
        seen.push(item);
    }
}

/// What a mock recorded so far.
pub fn recorded<T: Clone>(log: &Mutex<Vec<T>>) -> Vec<T> {
    log.lock().map(|v| v.clone()).expect("lock")
}

/// The service.
#[derive(Clone)]
pub struct Mock {
    world: Arc<World>,
    /// The CA IssueCertificate signs with.
    pki: Arc<Pki>,
    pub records: Records,
}

impl Mock {
    pub fn new(world: World, pki: Arc<Pki>) -> Self {
        Mock {
            world: Arc::new(world),
            pki,
            records: Records::default(),
        }
    }
}

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl KcoreService for Mock {
    async fn list_v_ms(&self, r: Request<ListVMsRequest>) -> Answer<ListVMsResponse> {
        let node = r.into_inner().node;
        let vms = self
            .world
            .vms
            .iter()
            .filter(|v| node.is_empty() || v.node == node);
        Ok(Response::new(ListVMsResponse {
            vms: vms.cloned().collect(),
        }))
    }

    async fn get_vm(&self, r: Request<GetVmRequest>) -> Answer<Vm> {
        Ok(Response::new(self.world.vm(&r.into_inner().name)?.clone()))
    }

    async fn create_vm(&self, r: Request<CreateVmRequest>) -> Answer<Vm> {
        Ok(Response::new(self.world.create_vm(r.into_inner())?))
    }

    async fn delete_vm(&self, r: Request<DeleteVmRequest>) -> Answer<DeleteVmResponse> {
        let r = r.into_inner();
        record(&self.records.vm_deletes, r.clone());
        self.world.delete_vm(&r)?;
        Ok(Response::new(DeleteVmResponse {}))
    }

    async fn start_vm(&self, r: Request<StartVmRequest>) -> Answer<Vm> {
        let r = r.into_inner();
        Ok(Response::new(self.world.start_vm(&r.name, r.no_wait)?))
    }

    async fn stop_vm(&self, r: Request<StopVmRequest>) -> Answer<Vm> {
        let r = r.into_inner();
        record(&self.records.stops, r.clone());
        Ok(Response::new(self.world.stop_vm(&r)?))
    }

    async fn reboot_vm(&self, r: Request<RebootVmRequest>) -> Answer<Vm> {
        Ok(Response::new(
            self.world.simple_op(&r.into_inner().name, "reboot")?,
        ))
    }

    async fn pause_vm(&self, r: Request<PauseVmRequest>) -> Answer<Vm> {
        Ok(Response::new(
            self.world.simple_op(&r.into_inner().name, "pause")?,
        ))
    }

    async fn resume_vm(&self, r: Request<ResumeVmRequest>) -> Answer<Vm> {
        Ok(Response::new(
            self.world.simple_op(&r.into_inner().name, "resume")?,
        ))
    }

    async fn update_vm(&self, r: Request<UpdateVmRequest>) -> Answer<Vm> {
        let r = r.into_inner();
        record(&self.records.updates, r.clone());
        Ok(Response::new(self.world.update_vm(&r)?))
    }

    async fn list_nodes(&self, _: Request<ListNodesRequest>) -> Answer<ListNodesResponse> {
        Ok(Response::new(ListNodesResponse {
            nodes: self.world.list_nodes(),
        }))
    }

    async fn get_node_status(&self, r: Request<GetNodeStatusRequest>) -> Answer<Node> {
        Ok(Response::new(
            self.world.node(&r.into_inner().name)?.clone(),
        ))
    }

    async fn drain_node(&self, r: Request<DrainNodeRequest>) -> Answer<DrainNodeResponse> {
        Ok(Response::new(self.world.drain(&r.into_inner().name)?))
    }

    async fn cordon_node(&self, r: Request<CordonNodeRequest>) -> Answer<Node> {
        let r = r.into_inner();
        Ok(Response::new(self.world.cordon(&r.name, r.cordon)?))
    }

    type WatchEventsStream = ReceiverStream<Result<Event, Status>>;

    /// The history, then (with `follow`) nothing more until the client goes.
    async fn watch_events(
        &self,
        r: Request<WatchEventsRequest>,
    ) -> Answer<Self::WatchEventsStream> {
        let r = r.into_inner();
        record(&self.records.watches, r.clone());
        let past = self.world.events(&r);
        let (tx, rx) = mpsc::channel(past.len().max(1));
        tokio::spawn(async move {
            for event in past {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if r.follow {
                tx.closed().await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type AttachConsoleStream = ReceiverStream<Result<ConsoleOutput, Status>>;

    /// The last `history_bytes` of the log, then the guest: a program that answers each
    /// input with `echo:` and the input.
    async fn attach_console(
        &self,
        r: Request<Streaming<ConsoleInput>>,
    ) -> Answer<Self::AttachConsoleStream> {
        let mut inbound = r.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument(CONSOLE_FIRST.fill(&[])))?;
        self.world.console(&first.vm)?;
        record(&self.records.console_first, first.clone());
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let keep = (first.history_bytes as usize).min(CONSOLE_LOG.len());
            let history = &CONSOLE_LOG[CONSOLE_LOG.len() - keep..];
            let mut inputs = vec![first.data];
            if !history.is_empty() {
                let data = history.to_vec();
                if tx.send(Ok(ConsoleOutput { data })).await.is_err() {
                    return;
                }
            }
            loop {
                for input in inputs.drain(..).filter(|i| !i.is_empty()) {
                    let data = [b"echo:".as_slice(), &input].concat();
                    if tx.send(Ok(ConsoleOutput { data })).await.is_err() {
                        return;
                    }
                }
                match inbound.message().await {
                    Ok(Some(input)) => inputs.push(input.data),
                    _ => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_console_log(&self, r: Request<GetConsoleLogRequest>) -> Answer<ConsoleLog> {
        let vm = self.world.vm(&r.into_inner().vm)?;
        self.world.ready_node(&vm.node)?;
        Ok(Response::new(ConsoleLog {
            data: CONSOLE_LOG.to_vec(),
        }))
    }

    async fn exec_qmp(&self, r: Request<ExecQmpRequest>) -> Answer<ExecQmpResponse> {
        let r = r.into_inner();
        record(&self.records.qmp, r.clone());
        let reply = self.world.exec_qmp(&r.vm, &r.command_json)?;
        Ok(Response::new(ExecQmpResponse {
            reply_json: reply.to_string(),
        }))
    }

    async fn list_pools(&self, r: Request<ListPoolsRequest>) -> Answer<ListPoolsResponse> {
        Ok(Response::new(ListPoolsResponse {
            pools: self.world.list_pools(&r.into_inner().node)?,
        }))
    }

    type ImportImageStream = ReceiverStream<Result<ImportImageProgress, Status>>;

    async fn import_image(
        &self,
        r: Request<ImportImageRequest>,
    ) -> Answer<Self::ImportImageStream> {
        let r = r.into_inner();
        record(&self.records.imports, r.clone());
        let plan = self.world.import_image(&r)?;
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            for (done, total) in plan.progress {
                let step = ImportImageProgress {
                    done_bytes: done,
                    total_bytes: total,
                    image: None,
                };
                if tx.send(Ok(step)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
            let last = plan.end.map(|image| ImportImageProgress {
                done_bytes: image.actual_size,
                total_bytes: image.actual_size,
                image: Some(image),
            });
            let _ = tx.send(last).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_images(&self, r: Request<ListImagesRequest>) -> Answer<ListImagesResponse> {
        Ok(Response::new(ListImagesResponse {
            images: self.world.list_images(&r.into_inner().node)?,
        }))
    }

    async fn delete_image(&self, r: Request<DeleteImageRequest>) -> Answer<DeleteImageResponse> {
        let r = r.into_inner();
        record(&self.records.image_deletes, r.clone());
        self.world.delete_image(&r)?;
        Ok(Response::new(DeleteImageResponse {}))
    }

    async fn attach_disk(&self, r: Request<AttachDiskRequest>) -> Answer<Vm> {
        Ok(Response::new(self.world.attach_disk(&r.into_inner())?))
    }

    async fn detach_disk(&self, r: Request<DetachDiskRequest>) -> Answer<Vm> {
        Ok(Response::new(self.world.detach_disk(&r.into_inner())?))
    }

    async fn resize_disk(&self, r: Request<ResizeDiskRequest>) -> Answer<Vm> {
        Ok(Response::new(self.world.resize_disk(&r.into_inner())?))
    }

    async fn create_volume(&self, r: Request<CreateVolumeRequest>) -> Answer<Volume> {
        Ok(Response::new(self.world.create_volume(&r.into_inner())?))
    }

    async fn delete_volume(&self, r: Request<DeleteVolumeRequest>) -> Answer<DeleteVolumeResponse> {
        let r = r.into_inner();
        record(&self.records.volume_deletes, r.clone());
        self.world.delete_volume(&r)?;
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    async fn list_volumes(&self, r: Request<ListVolumesRequest>) -> Answer<ListVolumesResponse> {
        Ok(Response::new(ListVolumesResponse {
            volumes: self.world.list_volumes(&r.into_inner().node)?,
        }))
    }

    async fn create_network(&self, r: Request<CreateNetworkRequest>) -> Answer<Network> {
        Ok(Response::new(self.world.create_network(&r.into_inner())?))
    }

    async fn list_networks(&self, _: Request<ListNetworksRequest>) -> Answer<ListNetworksResponse> {
        Ok(Response::new(ListNetworksResponse {
            networks: self.world.networks.clone(),
        }))
    }

    async fn get_network(&self, r: Request<GetNetworkRequest>) -> Answer<Network> {
        Ok(Response::new(self.world.get_network(&r.into_inner().name)?))
    }

    async fn delete_network(
        &self,
        r: Request<DeleteNetworkRequest>,
    ) -> Answer<DeleteNetworkResponse> {
        self.world.delete_network(&r.into_inner().name)?;
        Ok(Response::new(DeleteNetworkResponse {}))
    }

    async fn attach_nic(&self, r: Request<AttachNicRequest>) -> Answer<Vm> {
        Ok(Response::new(self.world.attach_nic(&r.into_inner())?))
    }

    async fn detach_nic(&self, r: Request<DetachNicRequest>) -> Answer<Vm> {
        Ok(Response::new(self.world.detach_nic(&r.into_inner())?))
    }

    async fn issue_certificate(
        &self,
        r: Request<IssueCertificateRequest>,
    ) -> Answer<IssuedCertificate> {
        let r = r.into_inner();
        self.world.issue_certificate(&r.role)?;
        let (cert_pem, key_pem) = self.pki.issue(&r.name, &r.role);
        Ok(Response::new(IssuedCertificate {
            cert_pem,
            key_pem,
            ca_pem: self.pki.ca_pem(),
        }))
    }

    async fn create_join_token(&self, r: Request<CreateJoinTokenRequest>) -> Answer<JoinToken> {
        Ok(Response::new(
            self.world.join_token(r.into_inner().ttl_seconds),
        ))
    }

    async fn register_node(&self, r: Request<RegisterNodeRequest>) -> Answer<RegisterNodeResponse> {
        let r = r.into_inner();
        self.world.register_node(&r.name, &r.address)?;
        Ok(Response::new(RegisterNodeResponse {}))
    }

    async fn list_certificates(
        &self,
        _: Request<ListCertificatesRequest>,
    ) -> Answer<ListCertificatesResponse> {
        Ok(Response::new(ListCertificatesResponse {
            certificates: self.world.certs.clone(),
        }))
    }

    async fn revoke_certificate(
        &self,
        r: Request<RevokeCertificateRequest>,
    ) -> Answer<ListCertificatesResponse> {
        Ok(Response::new(ListCertificatesResponse {
            certificates: self.world.revoke(&r.into_inner())?,
        }))
    }

    async fn remove_node(&self, r: Request<RemoveNodeRequest>) -> Answer<RemoveNodeResponse> {
        Ok(Response::new(self.world.remove_node(&r.into_inner().name)?))
    }

    /// Only a node's own certificate renews it: never a caller of the unix socket, nor the
    /// mock's clients (kcored/src/controller/grpc/pki.rs, renew_node_cert).
    async fn renew_node_certificate(
        &self,
        _: Request<RenewNodeCertificateRequest>,
    ) -> Answer<JoinResponse> {
        Err(Status::permission_denied(ONLY_NODES_RENEW.fill(&[])))
    }

    /// kctl does not show stats; the dashboard's tests run against the real daemon.
    type MigrateVMStream = ReceiverStream<Result<MigrationProgress, Status>>;

    async fn migrate_vm(&self, _: Request<MigrateVmRequest>) -> Answer<Self::MigrateVMStream> {
        // The mock world has one node: kcored refuses a move to the node the VM is on.
        Err(Status::unimplemented("the mock server does not migrate"))
    }

    async fn get_vm_stats(&self, _: Request<GetVmStatsRequest>) -> Answer<VmStats> {
        Err(Status::unimplemented("GetVMStats"))
    }

    async fn create_template(&self, r: Request<CreateTemplateRequest>) -> Answer<Template> {
        Ok(Response::new(self.world.create_template(&r.into_inner())?))
    }

    async fn list_templates(
        &self,
        r: Request<ListTemplatesRequest>,
    ) -> Answer<ListTemplatesResponse> {
        Ok(Response::new(ListTemplatesResponse {
            templates: self.world.list_templates(&r.into_inner().node),
        }))
    }

    async fn get_template(&self, r: Request<GetTemplateRequest>) -> Answer<Template> {
        Ok(Response::new(
            self.world.get_template(&r.into_inner().name)?,
        ))
    }

    async fn delete_template(
        &self,
        r: Request<DeleteTemplateRequest>,
    ) -> Answer<DeleteTemplateResponse> {
        self.world.delete_template(&r.into_inner().name)?;
        Ok(Response::new(DeleteTemplateResponse {}))
    }
}

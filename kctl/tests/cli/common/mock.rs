//! The mock KcoreService.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcore_proto::v1::kcore_service_server::KcoreService;
use kcore_proto::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The mock service; its `Arc`s record what clients sent, for the tests to check.
#[derive(Clone, Default)]
pub struct Mock {
    pub console_first: Arc<Mutex<Vec<ConsoleInput>>>,
    pub vm_deletes: Arc<Mutex<Vec<DeleteVmRequest>>>,
    pub imports: Arc<Mutex<Vec<ImportImageRequest>>>,
    pub image_deletes: Arc<Mutex<Vec<DeleteImageRequest>>>,
}

pub fn record<T>(log: &Mutex<Vec<T>>, item: T) {
    if let Ok(mut seen) = log.lock() {
        seen.push(item);
    }
}

/// What a mock recorded so far.
pub fn recorded<T: Clone>(log: &Mutex<Vec<T>>) -> Vec<T> {
    log.lock().map(|v| v.clone()).expect("lock")
}

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;
pub const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn image(name: &str, node: &str, pool: &str) -> Image {
    Image {
        name: name.into(),
        node: node.into(),
        pool: pool.into(),
        format: "qcow2".into(),
        virtual_size: 2 * GIB,
        actual_size: 700 * MIB,
        sha256: SHA.into(),
    }
}

pub fn progress(done: u64, total: u64) -> ImportImageProgress {
    ImportImageProgress {
        done_bytes: done,
        total_bytes: total,
        image: None,
    }
}

pub fn vm(name: &str, status: VmStatus) -> Vm {
    let disks = if name == "web" {
        vec![
            VmDisk {
                volume: "web-root".into(),
                pool: "default".into(),
                device: "vda".into(),
                size_bytes: 10 * GIB,
                format: "qcow2".into(),
                image: "debian-12".into(),
            },
            VmDisk {
                volume: "web-data-1".into(),
                pool: "fast".into(),
                device: "vdb".into(),
                size_bytes: 512 * MIB,
                format: "raw".into(),
                image: String::new(),
            },
        ]
    } else {
        Vec::new()
    };
    Vm {
        storage_gb: if name == "web" { 10 } else { 0 },
        disks,
        id: format!("id-{name}"),
        name: name.into(),
        status: status as i32,
        node: "node-1".into(),
        memory_mb: 512,
        vcpu: 2,
        created_at: "2025-01-10T12:00:00.000Z".into(),
        pid: if status == VmStatus::Running { 4242 } else { 0 },
        timeline: Some(BootTimeline {
            phases: vec![
                BootPhase {
                    name: "request_received".into(),
                    offset_ms: 0.0,
                    at: "2025-01-10T12:00:00.000Z".into(),
                },
                BootPhase {
                    name: "vcpus_running".into(),
                    offset_ms: 41.5,
                    at: "2025-01-10T12:00:00.041Z".into(),
                },
            ],
        }),
        ..Default::default()
    }
}

pub fn known(name: &str) -> Result<(), Status> {
    if name == "web" {
        Ok(())
    } else {
        Err(Status::not_found(format!("vm \"{name}\" not found")))
    }
}

#[tonic::async_trait]
impl KcoreService for Mock {
    async fn list_v_ms(
        &self,
        _: Request<ListVMsRequest>,
    ) -> Result<Response<ListVMsResponse>, Status> {
        Ok(Response::new(ListVMsResponse {
            vms: vec![vm("web", VmStatus::Running), vm("db", VmStatus::Stopped)],
        }))
    }

    async fn get_vm(&self, request: Request<GetVmRequest>) -> Result<Response<Vm>, Status> {
        let name = request.into_inner().name;
        known(&name)?;
        Ok(Response::new(vm(&name, VmStatus::Running)))
    }

    async fn create_vm(&self, request: Request<CreateVmRequest>) -> Result<Response<Vm>, Status> {
        let request = request.into_inner();
        // The checks kctl leaves to the server.
        let spec = request.spec.clone().unwrap_or_default();
        if spec.kernel.is_empty() && spec.image.is_empty() {
            return Err(Status::invalid_argument(
                "a VM needs an image or a kernel to boot from",
            ));
        }
        if let Some(i) = spec.disks.iter().position(|d| d.size_gb == 0) {
            return Err(Status::invalid_argument(format!(
                "disks[{i}]: size_gb must be at least 1"
            )));
        }
        let status = if request.no_start {
            VmStatus::Stopped
        } else {
            VmStatus::Running
        };
        let mut created = vm(&request.name, status);
        created.spec = request.spec;
        Ok(Response::new(created))
    }

    async fn delete_vm(
        &self,
        request: Request<DeleteVmRequest>,
    ) -> Result<Response<DeleteVmResponse>, Status> {
        let request = request.into_inner();
        known(&request.name)?;
        record(&self.vm_deletes, request);
        Ok(Response::new(DeleteVmResponse {}))
    }

    async fn start_vm(&self, request: Request<StartVmRequest>) -> Result<Response<Vm>, Status> {
        let name = request.into_inner().name;
        known(&name)?;
        Err(Status::failed_precondition(format!(
            "vm \"{name}\" is already running"
        )))
    }

    async fn stop_vm(&self, request: Request<StopVmRequest>) -> Result<Response<Vm>, Status> {
        let request = request.into_inner();
        known(&request.name)?;
        let mut stopped = vm(&request.name, VmStatus::Stopped);
        stopped.status_reason = format!(
            "force={} timeout={:?} no_wait={}",
            request.force, request.timeout_secs, request.no_wait
        );
        Ok(Response::new(stopped))
    }

    async fn reboot_vm(&self, request: Request<RebootVmRequest>) -> Result<Response<Vm>, Status> {
        let name = request.into_inner().name;
        known(&name)?;
        Ok(Response::new(vm(&name, VmStatus::Running)))
    }

    async fn pause_vm(&self, request: Request<PauseVmRequest>) -> Result<Response<Vm>, Status> {
        let name = request.into_inner().name;
        known(&name)?;
        Ok(Response::new(vm(&name, VmStatus::Paused)))
    }

    async fn resume_vm(&self, request: Request<ResumeVmRequest>) -> Result<Response<Vm>, Status> {
        let name = request.into_inner().name;
        known(&name)?;
        Ok(Response::new(vm(&name, VmStatus::Running)))
    }

    async fn list_nodes(
        &self,
        _: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        Ok(Response::new(ListNodesResponse {
            nodes: vec![Node {
                name: "node-1".into(),
                state: NodeState::Ready as i32,
                cpus: 8,
                memory_mb: 16384,
                vm_count: 1,
                allocated_vcpu: 2,
                allocated_memory_mb: 512,
                accel: "kvm".into(),
                version: "0.1.0".into(),
                ..Default::default()
            }],
        }))
    }

    async fn get_node_status(
        &self,
        request: Request<GetNodeStatusRequest>,
    ) -> Result<Response<Node>, Status> {
        let name = request.into_inner().name;
        Err(Status::not_found(format!("node \"{name}\" not found")))
    }

    async fn drain_node(
        &self,
        _: Request<kcore_proto::v1::DrainNodeRequest>,
    ) -> Result<Response<kcore_proto::v1::DrainNodeResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn cordon_node(
        &self,
        request: Request<kcore_proto::v1::CordonNodeRequest>,
    ) -> Result<Response<Node>, Status> {
        let name = request.into_inner().name;
        Err(Status::not_found(format!("node \"{name}\" not found")))
    }

    type WatchEventsStream = ReceiverStream<Result<Event, Status>>;

    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let request = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let events = [
            Event {
                id: 1,
                at: "2025-01-10T12:00:00.000Z".into(),
                kind: "vm.created".into(),
                vm_name: "web".into(),
                status: VmStatus::Pending as i32,
                ..Default::default()
            },
            Event {
                id: 2,
                at: "2025-01-10T12:00:00.041Z".into(),
                kind: "vm.status".into(),
                vm_name: "web".into(),
                status: VmStatus::Running as i32,
                message: format!("history={} vm={}", request.history, request.vm),
                ..Default::default()
            },
        ];
        for event in events {
            tx.send(Ok(event))
                .await
                .map_err(|_| Status::internal("send"))?;
        }
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type AttachConsoleStream = ReceiverStream<Result<ConsoleOutput, Status>>;

    async fn attach_console(
        &self,
        request: Request<Streaming<ConsoleInput>>,
    ) -> Result<Response<Self::AttachConsoleStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("no first message"))?;
        known(&first.vm)?;
        if let Ok(mut seen) = self.console_first.lock() {
            seen.push(first.clone());
        }
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            if first.history_bytes > 0 {
                let data = format!("history {}\r\n", first.history_bytes).into_bytes();
                if tx.send(Ok(ConsoleOutput { data })).await.is_err() {
                    return;
                }
            }
            while let Ok(Some(input)) = inbound.message().await {
                let mut data = b"echo:".to_vec();
                data.extend(input.data);
                if tx.send(Ok(ConsoleOutput { data })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_console_log(
        &self,
        request: Request<GetConsoleLogRequest>,
    ) -> Result<Response<ConsoleLog>, Status> {
        known(&request.into_inner().vm)?;
        Ok(Response::new(ConsoleLog {
            data: b"one\r\ntwo\r\nthree\r\nlogin: ".to_vec(),
        }))
    }

    async fn exec_qmp(
        &self,
        request: Request<ExecQmpRequest>,
    ) -> Result<Response<ExecQmpResponse>, Status> {
        let request = request.into_inner();
        known(&request.vm)?;
        let command: serde_json::Value = serde_json::from_str(&request.command_json)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let reply = match command["execute"].as_str() {
            Some("query-status") => {
                serde_json::json!({"return": {"status": "running", "running": true}})
            }
            Some(c) if c.starts_with("echo") => serde_json::json!({ "return": command }),
            Some(c) => serde_json::json!({"error": {
                "class": "CommandNotFound",
                "desc": format!("The command {c} has not been found"),
            }}),
            None => serde_json::json!({"error": {"class": "GenericError", "desc": "no execute"}}),
        };
        Ok(Response::new(ExecQmpResponse {
            reply_json: reply.to_string(),
        }))
    }

    async fn list_pools(
        &self,
        request: Request<ListPoolsRequest>,
    ) -> Result<Response<ListPoolsResponse>, Status> {
        let node = request.into_inner().node;
        let pools = vec![
            Pool {
                name: "default".into(),
                node: "node-1".into(),
                r#type: "dir".into(),
                source: "/var/lib/kcore/pools/default".into(),
                total_bytes: 100 * GIB,
                free_bytes: 63 * GIB,
            },
            Pool {
                name: "fast".into(),
                node: "node-1".into(),
                r#type: "lvm".into(),
                source: "vg0/thin".into(),
                total_bytes: 2048 * GIB,
                free_bytes: 1536 * GIB,
            },
        ];
        Ok(Response::new(ListPoolsResponse {
            pools: pools
                .into_iter()
                .filter(|p| node.is_empty() || p.node == node)
                .collect(),
        }))
    }

    type ImportImageStream = ReceiverStream<Result<ImportImageProgress, Status>>;

    /// `broken` fails half way (a sha256 mismatch), `unsized` never knows its total, any
    /// other name imports 2 GiB in steps.
    async fn import_image(
        &self,
        request: Request<ImportImageRequest>,
    ) -> Result<Response<Self::ImportImageStream>, Status> {
        let request = request.into_inner();
        record(&self.imports, request.clone());
        let total = if request.name == "unsized" {
            0
        } else {
            2 * GIB
        };
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            for done in [0, GIB / 2, GIB, 3 * GIB / 2, 2 * GIB] {
                if tx.send(Ok(progress(done, total))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(60)).await;
                if request.name == "broken" && done == GIB {
                    let _ = tx
                        .send(Err(Status::invalid_argument(format!(
                            "sha256 of {} is {SHA}, not {}",
                            request.source, request.sha256
                        ))))
                        .await;
                    return;
                }
            }
            let node = if request.node.is_empty() {
                "node-1"
            } else {
                &request.node
            };
            let pool = if request.pool.is_empty() {
                "default"
            } else {
                &request.pool
            };
            let last = ImportImageProgress {
                image: Some(image(&request.name, node, pool)),
                ..progress(2 * GIB, total)
            };
            let _ = tx.send(Ok(last)).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let node = request.into_inner().node;
        let mut alpine = image("alpine", "node-1", "fast");
        alpine.format = "raw".into();
        alpine.virtual_size = 128 * MIB;
        alpine.actual_size = 128 * MIB;
        alpine.sha256 = String::new();
        let images = [image("debian-12", "node-1", "default"), alpine];
        Ok(Response::new(ListImagesResponse {
            images: images
                .into_iter()
                .filter(|i| node.is_empty() || i.node == node)
                .collect(),
        }))
    }

    async fn delete_image(
        &self,
        request: Request<DeleteImageRequest>,
    ) -> Result<Response<DeleteImageResponse>, Status> {
        let request = request.into_inner();
        if request.name != "debian-12" {
            return Err(Status::not_found(format!(
                "image \"{}\" not found",
                request.name
            )));
        }
        record(&self.image_deletes, request);
        Ok(Response::new(DeleteImageResponse {}))
    }

    async fn attach_disk(
        &self,
        r: Request<kcore_proto::v1::AttachDiskRequest>,
    ) -> Result<Response<Vm>, Status> {
        let r = r.into_inner();
        if r.vm != "web" {
            return Err(Status::not_found(format!("vm {:?} not found", r.vm)));
        }
        Ok(Response::new(Vm {
            name: r.vm,
            ..Default::default()
        }))
    }

    async fn detach_disk(
        &self,
        _: Request<kcore_proto::v1::DetachDiskRequest>,
    ) -> Result<Response<Vm>, Status> {
        Err(Status::failed_precondition("cannot unplug in the mock"))
    }

    async fn resize_disk(
        &self,
        _: Request<kcore_proto::v1::ResizeDiskRequest>,
    ) -> Result<Response<Vm>, Status> {
        Err(Status::invalid_argument("shrinking is refused"))
    }

    async fn delete_volume(
        &self,
        req: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let r = req.into_inner();
        if r.name == "web-root" {
            // The node's own refusal (kcored/src/node/storage.rs, delete_volume).
            return Err(Status::failed_precondition(
                "volume web-root in pool default is a disk of VM web: detach it first (kctl vm \
                 disk detach web web-root)",
            ));
        }
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    async fn list_volumes(
        &self,
        _: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        Ok(Response::new(ListVolumesResponse {
            volumes: vec![
                Volume {
                    name: "web-root".into(),
                    node: "node-1".into(),
                    pool: "default".into(),
                    vm: "web".into(),
                    format: "qcow2".into(),
                    virtual_size: 10 * GIB,
                    actual_size: 300 * MIB,
                    backing: "debian-12".into(),
                    path: "/var/lib/kcore/pools/default/web-root.qcow2".into(),
                },
                Volume {
                    name: "old-data".into(),
                    node: "node-1".into(),
                    pool: "fast".into(),
                    format: "raw".into(),
                    virtual_size: 20 * GIB,
                    actual_size: 20 * GIB,
                    path: "/dev/vg0/old-data".into(),
                    ..Default::default()
                },
            ],
        }))
    }

    async fn create_network(
        &self,
        request: Request<CreateNetworkRequest>,
    ) -> Result<Response<Network>, Status> {
        let r = request.into_inner();
        if r.uplink == "nope0" {
            return Err(Status::not_found(
                "uplink \"nope0\" does not exist on node node-1",
            ));
        }
        Ok(Response::new(Network {
            name: r.name,
            mode: r.mode,
            subnet: r.subnet,
            bridge: "kbr-default".into(),
            nodes: vec![NetworkOnNode {
                node: "node-1".into(),
                ready: true,
                ..Default::default()
            }],
            ..Default::default()
        }))
    }

    async fn list_networks(
        &self,
        _: Request<ListNetworksRequest>,
    ) -> Result<Response<ListNetworksResponse>, Status> {
        Ok(Response::new(ListNetworksResponse {
            networks: vec![Network {
                name: "default".into(),
                mode: NetworkMode::Nat as i32,
                subnet: "10.77.0.0/24".into(),
                gateway: "10.77.0.1".into(),
                bridge: "kbr-default".into(),
                vm_count: 1,
                nodes: vec![NetworkOnNode {
                    node: "node-1".into(),
                    ready: true,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }))
    }

    async fn get_network(
        &self,
        _: Request<GetNetworkRequest>,
    ) -> Result<Response<Network>, Status> {
        Err(Status::not_found("no network named \"x\""))
    }

    async fn delete_network(
        &self,
        _: Request<DeleteNetworkRequest>,
    ) -> Result<Response<DeleteNetworkResponse>, Status> {
        Err(Status::failed_precondition(
            "network default is in use by VM(s) web",
        ))
    }

    async fn attach_nic(&self, request: Request<AttachNicRequest>) -> Result<Response<Vm>, Status> {
        let r = request.into_inner();
        known(&r.vm)?;
        let mut vm = vm("web", VmStatus::Running);
        vm.nics = vec![VmNic {
            id: "net0".into(),
            network: r.network,
            mac: "52:54:00:00:00:01".into(),
            model: "virtio".into(),
            tap: "ktap-0123456789".into(),
            ip: String::new(),
        }];
        Ok(Response::new(vm))
    }

    async fn detach_nic(&self, _: Request<DetachNicRequest>) -> Result<Response<Vm>, Status> {
        Err(Status::not_found("no NIC \"net9\" on this VM"))
    }

    async fn issue_certificate(
        &self,
        _: Request<kcore_proto::v1::IssueCertificateRequest>,
    ) -> Result<Response<kcore_proto::v1::IssuedCertificate>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn create_join_token(
        &self,
        _: Request<kcore_proto::v1::CreateJoinTokenRequest>,
    ) -> Result<Response<kcore_proto::v1::JoinToken>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn register_node(
        &self,
        _: Request<kcore_proto::v1::RegisterNodeRequest>,
    ) -> Result<Response<kcore_proto::v1::RegisterNodeResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn list_certificates(
        &self,
        _: Request<kcore_proto::v1::ListCertificatesRequest>,
    ) -> Result<Response<kcore_proto::v1::ListCertificatesResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn revoke_certificate(
        &self,
        _: Request<kcore_proto::v1::RevokeCertificateRequest>,
    ) -> Result<Response<kcore_proto::v1::ListCertificatesResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn remove_node(
        &self,
        _: Request<kcore_proto::v1::RemoveNodeRequest>,
    ) -> Result<Response<kcore_proto::v1::RemoveNodeResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }

    async fn renew_node_certificate(
        &self,
        _: Request<kcore_proto::v1::RenewNodeCertificateRequest>,
    ) -> Result<Response<kcore_proto::v1::JoinResponse>, Status> {
        Err(Status::unimplemented("not in the mock"))
    }
}

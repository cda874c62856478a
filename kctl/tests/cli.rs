//! End-to-end tests of the kctl binary against an in-process mock KcoreService, over a unix
//! socket and over mutual TLS.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcore_proto::v1::kcore_service_server::{KcoreService, KcoreServiceServer};
use kcore_proto::v1::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};

const KCTL: &str = env!("CARGO_BIN_EXE_kctl");

/// The mock service; its `Arc`s record what clients sent, for the tests to check.
#[derive(Clone, Default)]
struct Mock {
    console_first: Arc<Mutex<Vec<ConsoleInput>>>,
    vm_deletes: Arc<Mutex<Vec<DeleteVmRequest>>>,
    imports: Arc<Mutex<Vec<ImportImageRequest>>>,
    image_deletes: Arc<Mutex<Vec<DeleteImageRequest>>>,
}

fn record<T>(log: &Mutex<Vec<T>>, item: T) {
    if let Ok(mut seen) = log.lock() {
        seen.push(item);
    }
}

/// What a mock recorded so far.
fn recorded<T: Clone>(log: &Mutex<Vec<T>>) -> Vec<T> {
    log.lock().map(|v| v.clone()).expect("lock")
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn image(name: &str, node: &str, pool: &str) -> Image {
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

fn progress(done: u64, total: u64) -> ImportImageProgress {
    ImportImageProgress {
        done_bytes: done,
        total_bytes: total,
        image: None,
    }
}

fn vm(name: &str, status: VmStatus) -> Vm {
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

fn known(name: &str) -> Result<(), Status> {
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

/// A mock server on a unix socket in a temp dir, alive until dropped.
struct Server {
    _runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    endpoint: String,
    console_first: Arc<Mutex<Vec<ConsoleInput>>>,
    /// Shares the running mock's records.
    mock: Mock,
}

impl Server {
    fn unix() -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("kcore.sock");
        let mock = Mock::default();
        let console_first = mock.console_first.clone();
        let records = mock.clone();
        let listener = {
            let _guard = runtime.enter();
            tokio::net::UnixListener::bind(&socket).expect("bind")
        };
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(KcoreServiceServer::new(mock))
                .serve_with_incoming(UnixListenerStream::new(listener)),
        );
        Self {
            _runtime: runtime,
            endpoint: format!("unix://{}", socket.display()),
            dir,
            console_first,
            mock: records,
        }
    }

    fn kctl(&self, args: &[&str]) -> Output {
        run(self.command(args), b"")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = kctl_command(self.dir.path());
        command.arg("--endpoint").arg(&self.endpoint).args(args);
        command
    }
}

/// The local socket kctl tries in the tests: none is there (the machine's own
/// /run/kcore/kcore.sock is never tried).
fn no_local_socket(home: &Path) -> PathBuf {
    home.join("run/kcore.sock")
}

/// kctl with a clean environment: no KCORE_* variables but KCORE_SOCKET (a path in the
/// temp dir where no kcored listens), HOME in a temp dir.
fn kctl_command(home: &Path) -> Command {
    let mut command = Command::new(KCTL);
    command
        .env_clear()
        .env("HOME", home)
        .env("KCORE_SOCKET", no_local_socket(home))
        .current_dir(home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs a command with the given stdin, failing the test if it takes over 20 s.
fn run(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command.spawn().expect("spawn kctl");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).expect("write stdin");
    }
    wait(child, Duration::from_secs(20))
}

fn wait(mut child: Child, limit: Duration) -> Output {
    // Drain the pipes while waiting: a child writing more than a pipe holds (a completion
    // script) would otherwise never exit.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status: status.unwrap_or_else(|| child.wait().expect("wait")),
        stdout: stdout.join().expect("stdout thread"),
        stderr: stderr.join().expect("stderr thread"),
    };
    assert!(
        status.is_some(),
        "kctl did not exit in time; stdout: {}; stderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// Collects a child's stdout on a thread; each receive gives everything read so far.
fn stdout_watcher(child: &mut Child) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut seen = Vec::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if tx.send(seen.clone()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits until the watched stdout contains `needle`.
fn wait_for(rx: &std::sync::mpsc::Receiver<Vec<u8>>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let seen = text(&rx.recv_timeout(left).expect("output in time"));
        if seen.contains(needle) {
            return seen;
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "kctl failed: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[track_caller]
fn failed(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected exit 1; stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

#[test]
fn vm_list_table_json_yaml() {
    let server = Server::unix();
    let table = ok(&server.kctl(&["vm", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "NAME  STATUS   NODE    VCPU   MEMORY    DISK   PID  AGE"
    );
    assert!(
        lines[1].starts_with("web   RUNNING  node-1     2  512 MiB  10 GiB  4242  "),
        "{table}"
    );
    assert!(
        lines[2].starts_with("db    STOPPED  node-1     2  512 MiB       -     -  "),
        "{table}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["vm", "list", "-o", "json"]))).expect("json");
    assert_eq!(json["vms"][0]["status"], "VM_STATUS_RUNNING");
    assert_eq!(json["vms"][1]["name"], "db");

    let yaml: serde_json::Value =
        serde_yaml::from_str(&ok(&server.kctl(&["-o", "yaml", "vm", "list"]))).expect("yaml");
    assert_eq!(yaml["vms"][0]["name"], "web");
}

#[test]
fn vm_get_and_timeline() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["vm", "get", "web"]));
    assert!(out.contains("Status:   RUNNING\n"), "{out}");
    assert!(
        out.contains(
            "\nDisks:\n  DEVICE  VOLUME      POOL          SIZE  FORMAT  IMAGE\n  \
             vda     web-root    default   10.0 GiB  qcow2   debian-12\n  \
             vdb     web-data-1  fast     512.0 MiB  raw     -\n"
        ),
        "{out}"
    );
    assert!(out.contains("vcpus_running"), "{out}");
    let out = ok(&server.kctl(&["vm", "timeline", "web"]));
    assert!(
        out.contains("vcpus_running        41.5       +41.5"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["vm", "timeline", "web", "-o", "json"])))
            .expect("json");
    assert_eq!(json["phases"][1]["offset_ms"], 41.5);
}

#[test]
fn api_errors_print_message_and_code() {
    let server = Server::unix();
    let err = failed(&server.kctl(&["vm", "get", "nope"]));
    assert_eq!(err, "Error: vm \"nope\" not found (NotFound)\n");
    let err = failed(&server.kctl(&["vm", "start", "web"]));
    assert_eq!(
        err,
        "Error: vm \"web\" is already running (FailedPrecondition)\n"
    );
    let err = failed(&server.kctl(&["node", "get", "n9"]));
    assert_eq!(err, "Error: node \"n9\" not found (NotFound)\n");
}

#[test]
fn vm_create_sends_absolute_paths_and_start_false() {
    let server = Server::unix();
    let out = ok(&server.kctl(&[
        "vm",
        "create",
        "web2",
        "--vcpu",
        "2",
        "--memory",
        "1G",
        "--kernel",
        "vmlinuz",
        "--initrd",
        "sub/initrd.img",
        "--cmdline",
        "console=ttyS0",
        "--start=false",
        "-o",
        "json",
    ]));
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    let home = server.dir.path().canonicalize().expect("canonical");
    let kernel = PathBuf::from(json["spec"]["kernel"].as_str().expect("kernel"));
    assert!(kernel.is_absolute());
    assert_eq!(kernel.canonicalize().ok(), None); // does not exist: not resolved locally
    assert_eq!(
        kernel.file_name().and_then(|n| n.to_str()),
        Some("vmlinuz"),
        "{kernel:?}"
    );
    assert!(
        kernel.starts_with(server.dir.path()) || kernel.starts_with(&home),
        "{kernel:?}"
    );
    assert!(
        json["spec"]["initrd"]
            .as_str()
            .expect("initrd")
            .ends_with("/sub/initrd.img")
    );
    assert_eq!(json["spec"]["memory_mb"], 1024);
    assert_eq!(json["status"], "VM_STATUS_STOPPED");

    let out = ok(&server.kctl(&[
        "vm",
        "create",
        "web3",
        "--vcpu",
        "1",
        "--memory",
        "256",
        "--image",
        "debian-12",
    ]));
    assert_eq!(
        out,
        "Created VM web3: RUNNING on node-1, vcpus running after 41.5 ms\n"
    );
}

#[test]
fn vm_create_with_image_and_disks() {
    let server = Server::unix();
    let out = ok(&server.kctl(&[
        "vm",
        "create",
        "web4",
        "--vcpu",
        "2",
        "--memory",
        "1G",
        "--image",
        "debian-12",
        "--disk-size",
        "20",
        "--disk",
        "fast:10",
        "--disk",
        "default:5",
        "--root-pool",
        "fast",
        "--firmware",
        "uefi",
        "-o",
        "json",
    ]));
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    let spec = &json["spec"];
    assert_eq!(spec["image"], "debian-12");
    assert_eq!(spec["disk_size_gb"], 20);
    assert_eq!(
        spec["disks"],
        serde_json::json!([
            {"pool": "fast", "size_gb": 10, "volume": ""},
            {"pool": "default", "size_gb": 5, "volume": ""}
        ])
    );
    assert_eq!(spec["root_pool"], "fast");
    assert_eq!(spec["firmware"], "FIRMWARE_UEFI");
    assert_eq!(spec["kernel"], "", "no kernel sent: {spec}");

    // An image with an external kernel.
    let out = ok(&server.kctl(&[
        "vm",
        "create",
        "web5",
        "--vcpu",
        "1",
        "--memory",
        "256",
        "--image",
        "debian-12",
        "--kernel",
        "/boot/vmlinuz",
        "--cmdline",
        "root=/dev/vda1",
        "-o",
        "json",
    ]));
    let json: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(json["spec"]["kernel"], "/boot/vmlinuz");
    assert_eq!(json["spec"]["image"], "debian-12");

    // Checks left to the server: neither image nor kernel, a zero-sized disk.
    let err = failed(&server.kctl(&["vm", "create", "w", "--vcpu", "1", "--memory", "64"]));
    assert_eq!(
        err,
        "Error: a VM needs an image or a kernel to boot from (InvalidArgument)\n"
    );
    let err = failed(&server.kctl(&[
        "vm", "create", "w", "--vcpu", "1", "--memory", "64", "--image", "i", "--disk", "fast:0",
    ]));
    assert_eq!(
        err,
        "Error: disks[0]: size_gb must be at least 1 (InvalidArgument)\n"
    );
}

#[test]
fn bad_disk_specs_fail_before_connecting() {
    let home = tempfile::tempdir().expect("tempdir");
    for (bad, says) in [
        ("nocolon", "is not POOL:SIZE_GB"),
        ("p:1.5", "is neither a size (a whole number of GiB"),
    ] {
        let mut command = kctl_command(home.path());
        command.args([
            "--endpoint",
            "unix:///nonexistent/kcore.sock",
            "vm",
            "create",
            "w",
            "--vcpu",
            "1",
            "--memory",
            "64",
            "--image",
            "i",
            "--disk",
            bad,
        ]);
        let output = run(command, b"");
        assert_eq!(output.status.code(), Some(2), "clap usage error for {bad}");
        let err = text(&output.stderr);
        assert!(
            err.contains(&format!(
                "invalid value '{bad}' for '--disk <POOL:SIZE_GB|POOL:VOLUME>'"
            )),
            "{err}"
        );
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn vm_delete_keep_disks() {
    let server = Server::unix();
    assert_eq!(
        ok(&server.kctl(&["vm", "delete", "web", "--keep-disks"])),
        "Deleted VM web (its volumes were kept)\n"
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "rm", "web", "--force"])),
        "Deleted VM web\n"
    );
    let deletes = recorded(&server.mock.vm_deletes);
    assert_eq!(
        deletes
            .iter()
            .map(|d| (d.name.as_str(), d.force, d.keep_disks))
            .collect::<Vec<_>>(),
        [("web", false, true), ("web", true, false)]
    );
}

#[test]
fn pool_list() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["pool", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "NAME     NODE    TYPE  SOURCE                             SIZE      FREE  USED%",
            "default  node-1  dir   /var/lib/kcore/pools/default  100.0 GiB  63.0 GiB    37%",
            "fast     node-1  lvm   vg0/thin                        2.0 TiB   1.5 TiB    25%",
        ]
    );
    let out = ok(&server.kctl(&["pool", "ls", "--node", "node-9"]));
    assert_eq!(out.lines().count(), 1, "header only: {out}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["pool", "list", "-o", "json"]))).expect("json");
    assert_eq!(json["pools"][0]["total_bytes"], (100 * GIB).to_string());
    assert_eq!(json["pools"][1]["type"], "lvm");
}

#[test]
fn image_import_without_a_tty_prints_only_the_result() {
    let server = Server::unix();
    // A file on this machine, given relative to the working directory: sent canonical.
    std::fs::write(server.dir.path().join("debian.qcow2"), b"QFI").expect("image file");
    let output = server.kctl(&[
        "image",
        "import",
        "debian-12",
        "./debian.qcow2",
        "--sha256",
        &SHA.to_uppercase(),
    ]);
    assert_eq!(
        ok(&output),
        "Imported image debian-12 (qcow2, 2.0 GiB virtual, sha256 0123456789ab...)\n"
    );
    assert_eq!(text(&output.stderr), "", "no progress without a TTY");

    let json: serde_json::Value = serde_json::from_str(&ok(&server.kctl(&[
        "image",
        "import",
        "unsized",
        "https://example.com/alpine.img",
        "--node",
        "node-2",
        "--pool",
        "fast",
        "-o",
        "json",
    ])))
    .expect("json");
    assert_eq!(json["name"], "unsized");
    assert_eq!(json["node"], "node-2");
    assert_eq!(json["pool"], "fast");
    assert_eq!(json["virtual_size"], (2 * GIB).to_string());
    assert_eq!(json["sha256"], SHA);

    let imports = recorded(&server.mock.imports);
    assert_eq!(imports.len(), 2);
    let canonical = server
        .dir
        .path()
        .join("debian.qcow2")
        .canonicalize()
        .expect("canonical");
    assert_eq!(imports[0].source, canonical.to_string_lossy());
    assert_eq!(imports[0].sha256, SHA, "lowercased");
    assert_eq!(
        (imports[0].node.as_str(), imports[0].pool.as_str()),
        ("", "")
    );
    assert_eq!(imports[1].source, "https://example.com/alpine.img");
    assert_eq!(imports[1].sha256, "");
    assert_eq!(imports[1].node, "node-2");
    assert_eq!(imports[1].pool, "fast");
}

#[test]
fn image_import_error_mid_stream() {
    let server = Server::unix();
    let output = server.kctl(&["image", "import", "broken", "/srv/images/x.qcow2"]);
    let err = failed(&output);
    assert_eq!(
        err,
        format!("Error: sha256 of /srv/images/x.qcow2 is {SHA}, not  (InvalidArgument)\n")
    );
    assert_eq!(text(&output.stdout), "");
    let output = server.kctl(&["image", "import", "x", "y", "--sha256", "abc"]);
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let err = text(&output.stderr);
    assert!(err.contains("is not a sha256 (64 hex digits)"), "{err}");
}

#[test]
fn image_import_on_a_tty_draws_progress_on_stderr() {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};

    let server = Server::unix();
    let pty = nix::pty::openpty(None, None).expect("openpty");
    // Non-blocking, so draining stops at the end of what kctl drew (the test keeps the
    // slave open, so the master never reports EOF).
    let flags = fcntl(&pty.master, FcntlArg::F_GETFL).expect("F_GETFL");
    fcntl(
        &pty.master,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .expect("F_SETFL");
    let mut command = server.command(&["image", "import", "debian-12", "/srv/d.qcow2"]);
    command
        .env("TERM", "xterm")
        .stderr(Stdio::from(pty.slave.try_clone().expect("dup slave")));
    let child = command.spawn().expect("spawn");
    let output = wait(child, Duration::from_secs(20));
    // What kctl drew is far less than a pty buffers, so reading after the exit is enough.
    let mut master = std::fs::File::from(pty.master);
    let mut drawn = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        drawn.extend_from_slice(&buf[..n]);
    }
    assert_eq!(
        ok(&output),
        "Imported image debian-12 (qcow2, 2.0 GiB virtual, sha256 0123456789ab...)\n"
    );
    let drawn = text(&drawn);
    assert!(drawn.contains("Importing debian-12"), "{drawn:?}");
    assert!(drawn.contains("/2.00 GiB"), "{drawn:?}");
}

#[test]
fn image_list_and_delete() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["image", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "NAME       NODE    POOL     FORMAT    VIRTUAL     ACTUAL  SHA256",
            "debian-12  node-1  default  qcow2     2.0 GiB  700.0 MiB  0123456789ab",
            "alpine     node-1  fast     raw     128.0 MiB  128.0 MiB  -",
        ]
    );
    let yaml: serde_json::Value =
        serde_yaml::from_str(&ok(&server.kctl(&["image", "ls", "-o", "yaml"]))).expect("yaml");
    assert_eq!(yaml["images"][0]["sha256"], SHA);

    assert_eq!(
        ok(&server.kctl(&[
            "image",
            "delete",
            "debian-12",
            "--node",
            "node-1",
            "--pool",
            "default"
        ])),
        "Deleted image debian-12\n"
    );
    assert_eq!(
        ok(&server.kctl(&["image", "rm", "debian-12", "-o", "json"])),
        "{}\n"
    );
    let err = failed(&server.kctl(&["image", "delete", "nope"]));
    assert_eq!(err, "Error: image \"nope\" not found (NotFound)\n");
    let deletes = recorded(&server.mock.image_deletes);
    assert_eq!(
        deletes
            .iter()
            .map(|d| (d.name.as_str(), d.node.as_str(), d.pool.as_str()))
            .collect::<Vec<_>>(),
        [("debian-12", "node-1", "default"), ("debian-12", "", "")]
    );
}

#[test]
fn volume_list() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["volume", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "NAME      NODE    POOL     VM   FORMAT   VIRTUAL     ACTUAL  BACKING",
            "web-root  node-1  default  web  qcow2   10.0 GiB  300.0 MiB  debian-12",
            "old-data  node-1  fast     -    raw     20.0 GiB   20.0 GiB  -",
        ]
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["volume", "ls", "-o", "json"]))).expect("json");
    assert_eq!(
        json["volumes"][0]["path"],
        "/var/lib/kcore/pools/default/web-root.qcow2"
    );
    assert_eq!(json["volumes"][1]["actual_size"], (20 * GIB).to_string());
}

#[test]
fn volume_delete() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["volume", "delete", "old-data", "--pool", "fast"]));
    assert_eq!(out, "Deleted volume old-data (pool fast)\n");
    let err = failed(&server.kctl(&["volume", "rm", "web-root"]));
    assert!(
        err.contains("is a disk of VM web: detach it first"),
        "{err}"
    );
}

#[test]
fn vm_actions() {
    let server = Server::unix();
    let out = ok(&server.kctl(&[
        "vm",
        "stop",
        "web",
        "--force",
        "--timeout",
        "7",
        "--no-wait",
    ]));
    assert_eq!(
        out,
        "Stopped VM web: STOPPED on node-1 (force=true timeout=Some(7) no_wait=true)\n"
    );
    // --timeout 0 is sent as 0 (no grace), no --timeout as unset (the server's default).
    assert_eq!(
        ok(&server.kctl(&["vm", "stop", "web", "--timeout", "0"])),
        "Stopped VM web: STOPPED on node-1 (force=false timeout=Some(0) no_wait=false)\n"
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "stop", "web"])),
        "Stopped VM web: STOPPED on node-1 (force=false timeout=None no_wait=false)\n"
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "pause", "web"])),
        "Paused VM web: PAUSED on node-1\n"
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "delete", "web"])),
        "Deleted VM web\n"
    );
    assert_eq!(
        ok(&server.kctl(&["vm", "delete", "web", "-o", "json"])),
        "{}\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["vm", "resume", "web", "-o", "json"])))
            .expect("json");
    assert_eq!(json["status"], "VM_STATUS_RUNNING");
}

#[test]
fn node_list() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["node", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "NAME    STATE  CPUS  MEMORY  VMS  ALLOC VCPU  ALLOC MEMORY  ACCEL  VERSION",
            "node-1  READY     8  16 GiB    1           2       512 MiB  kvm    0.1.0",
        ]
    );
}

#[test]
fn events_table_and_json_lines() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["events", "--vm", "web", "--history", "5"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("AT "), "{out}");
    assert!(
        lines[2].starts_with(
            "2025-01-10 12:00:00.041  vm.status     web               RUNNING    history=5 vm=web"
        ),
        "{out}"
    );
    let out = ok(&server.kctl(&["events", "-o", "json"]));
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["kind"], "vm.created");
}

#[test]
fn console_piped_stdin_and_tail() {
    let server = Server::unix();
    let out = run(server.command(&["vm", "console", "web"]), b"ls /\n");
    assert_eq!(ok(&out), "echo:ls /\n");
    let first = server
        .console_first
        .lock()
        .map(|v| v.clone())
        .expect("lock");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].vm, "web");
    assert_eq!(first[0].history_bytes, 0);
    assert!(first[0].data.is_empty());

    assert_eq!(
        ok(&server.kctl(&["vm", "console", "web", "--tail", "2"])),
        "three\r\nlogin: "
    );
    let err = failed(&server.kctl(&["vm", "console", "nope", "--tail", "2"]));
    assert_eq!(err, "Error: vm \"nope\" not found (NotFound)\n");
    let err = failed(&run(server.command(&["vm", "console", "nope"]), b""));
    assert_eq!(err, "Error: vm \"nope\" not found (NotFound)\n");
}

#[test]
fn console_follow_until_ctrl_c() {
    let server = Server::unix();
    let mut command = server.command(&["vm", "console", "web", "--follow"]);
    let mut child = command.spawn().expect("spawn");
    let rx = stdout_watcher(&mut child);
    assert_eq!(wait_for(&rx, "\n"), "history 65536\r\n");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let output = wait(child, Duration::from_secs(20));
    assert!(output.status.success(), "{:?}", output.status);
    let first = server
        .console_first
        .lock()
        .map(|v| v.clone())
        .expect("lock");
    assert_eq!(first[0].history_bytes, 65536);
}

#[test]
fn qmp_one_shot_and_shell() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["vm", "qmp", "web", r#"{"execute":"query-status"}"#]));
    let reply: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(reply["return"]["status"], "running");
    assert!(out.contains("\n  "), "pretty-printed: {out}");

    let err = failed(&server.kctl(&["vm", "qmp", "web", r#"{"execute":"nope"}"#]));
    assert_eq!(
        err,
        "Error: QMP error CommandNotFound: The command nope has not been found\n"
    );

    let out = run(
        server.command(&["vm", "qmp", "web", "-o", "json"]),
        b"query-status\n\necho-args a=1 b=x c='{\"d\":[1]}'\necho-bad noeq\nnope\n.exit\nquery-status\n",
    );
    let stdout = ok(&out);
    let replies: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("json stream");
    assert_eq!(replies.len(), 3, "{stdout}");
    assert_eq!(replies[0]["return"]["running"], true);
    assert_eq!(
        replies[1]["return"],
        serde_json::json!({"execute": "echo-args", "arguments": {"a": 1, "b": "x", "c": {"d": [1]}}})
    );
    assert_eq!(replies[2]["error"]["class"], "CommandNotFound");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: expected key=value, got \"noeq\""),
        "{stderr}"
    );
    assert!(stderr.contains("QMP error CommandNotFound"), "{stderr}");
    assert!(
        !stderr.contains("qmp> "),
        "no prompt without a TTY: {stderr}"
    );
}

#[test]
fn local_validation_happens_before_connecting() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut command = kctl_command(home.path());
    command.args([
        "--endpoint",
        "unix:///nonexistent/kcore.sock",
        "vm",
        "qmp",
        "web",
        "[1]",
    ]);
    let err = failed(&run(command, b""));
    assert!(err.contains("must be a JSON object"), "{err}");
}

#[test]
fn unreachable_socket_names_the_endpoint() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut command = kctl_command(home.path());
    command.args(["--endpoint", "unix:///nonexistent/kcore.sock", "vm", "list"]);
    let err = failed(&run(command, b""));
    assert!(
        err.starts_with("Error: cannot talk to kcore at unix:///nonexistent/kcore.sock: "),
        "{err}"
    );
    assert!(err.contains("hint: is kcored running"), "{err}");
}

#[test]
fn missing_endpoint_gives_the_clear_error() {
    let home = tempfile::tempdir().expect("tempdir");
    let err = failed(&run(
        {
            let mut c = kctl_command(home.path());
            c.args(["vm", "list"]);
            c
        },
        b"",
    ));
    assert_eq!(
        err,
        format!(
            "Error: no kcore endpoint: pass --endpoint, set KCORE_ENDPOINT, or run kcored \
             locally ({})\n",
            no_local_socket(home.path()).display()
        )
    );
}

#[test]
fn endpoint_from_env_and_config_file() {
    let server = Server::unix();
    let mut command = kctl_command(server.dir.path());
    command
        .env("KCORE_ENDPOINT", &server.endpoint)
        .args(["node", "list"]);
    assert!(ok(&run(command, b"")).starts_with("NAME"));

    let config_dir = server.dir.path().join(".config/kcore");
    std::fs::create_dir_all(&config_dir).expect("mkdir");
    std::fs::write(
        config_dir.join("config.toml"),
        format!("endpoint = \"{}\"\n", server.endpoint),
    )
    .expect("config");
    let mut command = kctl_command(server.dir.path());
    command.args(["node", "list"]);
    assert!(ok(&run(command, b"")).starts_with("NAME"));

    // The local socket comes before the config file: KCORE_SOCKET names it.
    std::fs::write(
        config_dir.join("config.toml"),
        "endpoint = \"unix:///nonexistent/kcore.sock\"\n",
    )
    .expect("config");
    let mut command = kctl_command(server.dir.path());
    command.args(["node", "list"]);
    let err = failed(&run(command, b""));
    assert!(
        err.starts_with("Error: cannot talk to kcore at unix:///nonexistent/kcore.sock: "),
        "{err}"
    );
    let mut command = kctl_command(server.dir.path());
    command
        .env("KCORE_SOCKET", server.dir.path().join("kcore.sock"))
        .args(["node", "list"]);
    assert!(ok(&run(command, b"")).starts_with("NAME"));
}

#[test]
fn completion_needs_no_endpoint() {
    let home = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish"] {
        let mut command = kctl_command(home.path());
        command.args(["completion", shell]);
        let out = ok(&run(command, b""));
        assert!(out.contains("kctl"), "{shell}");
    }
}

/// Certificates for the mTLS tests.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write pem");
        };
        write("ca.pem", ca.pem());
        for (name, san) in [("server", "localhost"), ("client", "operator")] {
            let key = KeyPair::generate().expect("key");
            let cert = CertificateParams::new(vec![san.to_string()])
                .expect("params")
                .signed_by(&key, &ca)
                .expect("sign");
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read pem")
    }
}

fn tls_server(pki: &Pki) -> (tokio::runtime::Runtime, String) {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            pki.read("server.pem"),
            pki.read("server.key"),
        ))
        .client_ca_root(Certificate::from_pem(pki.read("ca.pem")));
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .expect("tls config")
        .add_service(KcoreServiceServer::new(Mock::default()))
        .serve_with_incoming(TcpListenerStream::new(listener));
    runtime.spawn(server);
    (runtime, format!("https://localhost:{port}"))
}

#[test]
fn mtls_with_and_without_client_certificate() {
    let pki = Pki::new();
    let (_runtime, endpoint) = tls_server(&pki);

    let mut command = kctl_command(pki.dir.path());
    command
        .env("KCORE_ENDPOINT", &endpoint)
        .env("KCORE_CA_CERT", pki.path("ca.pem"))
        .env("KCORE_CLIENT_CERT", pki.path("client.pem"))
        .env("KCORE_CLIENT_KEY", pki.path("client.key"))
        .args(["node", "list"]);
    assert!(ok(&run(command, b"")).starts_with("NAME"));

    // The config file supplies the same, with paths relative to it.
    let config_dir = pki.dir.path().join(".config/kcore");
    std::fs::create_dir_all(&config_dir).expect("mkdir");
    std::fs::write(
        config_dir.join("config.toml"),
        "ca_cert = \"../../ca.pem\"\nclient_cert = \"../../client.pem\"\n\
         client_key = \"../../client.key\"\n",
    )
    .expect("config");
    let mut command = kctl_command(pki.dir.path());
    command
        .env("KCORE_ENDPOINT", &endpoint)
        .args(["vm", "list"]);
    assert!(ok(&run(command, b"")).starts_with("NAME"));
    std::fs::remove_file(config_dir.join("config.toml")).expect("rm config");

    let mut command = kctl_command(pki.dir.path());
    command
        .env("KCORE_CA_CERT", pki.path("ca.pem"))
        .args(["--endpoint", &endpoint, "vm", "list"]);
    let err = failed(&run(command, b""));
    assert!(
        err.starts_with(&format!("Error: cannot talk to kcore at {endpoint}: ")),
        "{err}"
    );
    assert!(err.contains("no client certificate is configured"), "{err}");

    // A client certificate from another CA: rejected by the server.
    let other = Pki::new();
    let mut command = kctl_command(pki.dir.path());
    command
        .env("KCORE_CA_CERT", pki.path("ca.pem"))
        .env("KCORE_CLIENT_CERT", other.path("client.pem"))
        .env("KCORE_CLIENT_KEY", other.path("client.key"))
        .args(["--endpoint", &endpoint, "vm", "list"]);
    let err = failed(&run(command, b""));
    assert!(
        err.starts_with(&format!("Error: cannot talk to kcore at {endpoint}: ")),
        "{err}"
    );
    assert!(err.contains("signed by the cluster CA"), "{err}");

    let mut command = kctl_command(pki.dir.path());
    command.args(["--endpoint", &endpoint, "vm", "list"]);
    let err = failed(&run(command, b""));
    assert!(err.contains("needs the cluster CA certificate"), "{err}");
}

#[test]
fn console_interactive_on_a_tty_detaches_and_restores_termios() {
    use nix::sys::termios::{LocalFlags, tcgetattr};

    let server = Server::unix();
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let before = tcgetattr(&pty.slave).expect("tcgetattr");
    assert!(before.local_flags.contains(LocalFlags::ICANON));

    let mut command = server.command(&["vm", "console", "web"]);
    command.stdin(Stdio::from(pty.slave.try_clone().expect("dup slave")));
    let mut child = command.spawn().expect("spawn");
    let rx = stdout_watcher(&mut child);

    // Wait for kctl to put the terminal in raw mode.
    let deadline = Instant::now() + Duration::from_secs(20);
    while tcgetattr(&pty.slave)
        .expect("tcgetattr")
        .local_flags
        .contains(LocalFlags::ICANON)
    {
        assert!(Instant::now() < deadline, "kctl never entered raw mode");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut master = std::fs::File::from(pty.master);
    master.write_all(b"hi").expect("type");
    assert_eq!(wait_for(&rx, "echo:hi"), "history 4096\r\necho:hi");
    master.write_all(&[0x1d]).expect("Ctrl-]");

    let output = wait(child, Duration::from_secs(20));
    assert!(output.status.success(), "{:?}", output.status);
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("Connected to web (Ctrl-] to detach)\n"),
        "{stderr}"
    );
    assert!(stderr.ends_with("\r\nDetached from web\r\n"), "{stderr}");

    let after = tcgetattr(&pty.slave).expect("tcgetattr");
    assert_eq!(after.local_flags, before.local_flags);
    assert_eq!(after.input_flags, before.input_flags);
    assert_eq!(after.output_flags, before.output_flags);
}

#[test]
fn networks_and_nics() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["network", "list"]));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "NAME     MODE  SUBNET        GATEWAY    BRIDGE       UPLINK  VMS  READY",
            "default  nat   10.77.0.0/24  10.77.0.1  kbr-default  -         1  1/1",
        ]
    );
    let out = ok(&server.kctl(&[
        "network",
        "create",
        "default",
        "--mode",
        "nat",
        "--subnet",
        "10.77.0.0/24",
    ]));
    assert_eq!(out, "Created network default (nat, bridge kbr-default)\n");
    let err = failed(&server.kctl(&[
        "network", "create", "lab", "--mode", "bridge", "--bridge", "kbr-lab", "--uplink", "nope0",
    ]));
    assert!(err.contains("uplink \"nope0\" does not exist"), "{err}");
    let err = failed(&server.kctl(&["network", "rm", "default"]));
    assert!(err.contains("in use by VM(s) web"), "{err}");
    let out = ok(&server.kctl(&["vm", "nic", "attach", "web", "default"]));
    assert!(out.starts_with("Attached a NIC to VM web\nID"), "{out}");
    assert!(
        out.contains("net0  default  52:54:00:00:00:01  virtio  ktap-0123456789  -"),
        "{out}"
    );
    let err = failed(&server.kctl(&["vm", "nic", "detach", "web", "net9"]));
    assert!(err.contains("no NIC"), "{err}");
}

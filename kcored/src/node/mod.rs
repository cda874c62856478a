//! The node agent: owns this host's VMs (their specs on disk under `<data-dir>/vms/<id>/`
//! and their supervised QEMU processes) and serves the internal `NodeAgent` API.
//!
//! On start it reads every stored spec and reattaches to the QEMU processes that survived
//! the previous daemon; run dirs of VMs it no longer knows are removed.

pub mod grpc;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kcore_proto::v1 as pb;
use kcore_vmm::host::HostConfig;
use kcore_vmm::spec::{HostLimits, VmSpec};
use kcore_vmm::vm::{Notify, StopMode, Vm};
use tokio::sync::{broadcast, mpsc};

use crate::convert::{spec_to_pb, status_to_pb, timeline_to_pb};
use crate::error::{ApiError, ApiResult};

/// Default graceful-stop timeout.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Static facts about this node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub host: Arc<HostConfig>,
    pub limits: HostLimits,
    pub qemu_version: String,
}

/// The node agent's state. Shared behind an `Arc`.
pub struct Node {
    cfg: NodeConfig,
    vms: RwLock<HashMap<String, Vm>>,
    seq: AtomicU64,
    events: broadcast::Sender<pb::NodeVmEvent>,
    notify_tx: mpsc::UnboundedSender<String>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.cfg.name)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Load the stored VMs and reattach to the ones still running.
    pub async fn start(cfg: NodeConfig) -> anyhow::Result<Arc<Node>> {
        let vms_dir = cfg.data_dir.join("vms");
        std::fs::create_dir_all(&vms_dir)?;
        std::fs::create_dir_all(&cfg.host.run_root)?;
        let (events, _) = broadcast::channel(4096);
        let (notify_tx, notify_rx) = mpsc::unbounded_channel();
        // Sequence numbers only grow, across daemon restarts too: start from the clock.
        let seq0 = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let node = Arc::new(Node {
            cfg,
            vms: RwLock::new(HashMap::new()),
            seq: AtomicU64::new(seq0),
            events,
            notify_tx,
        });
        tokio::spawn(Self::publish_loop(Arc::downgrade(&node), notify_rx));
        let specs = load_specs(&vms_dir);
        let mut recovered = Vec::new();
        for spec in specs {
            let vm = Vm::new(spec, node.cfg.host.clone(), node.notifier());
            node.write_vms().insert(vm.id().to_string(), vm.clone());
            recovered.push(async move {
                if let Err(e) = vm.recover().await {
                    tracing::warn!(vm = %vm.spec().name, error = %e, "reattach failed");
                }
            });
        }
        futures::future::join_all(recovered).await;
        node.remove_leftover_run_dirs();
        tracing::info!(node = %node.cfg.name, vms = node.read_vms().len(), "node ready");
        Ok(node)
    }

    fn read_vms(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Vm>> {
        self.vms.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn write_vms(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Vm>> {
        self.vms.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn notifier(&self) -> Notify {
        let tx = self.notify_tx.clone();
        Arc::new(move |id: &str| {
            let _ = tx.send(id.to_string());
        })
    }

    async fn publish_loop(node: std::sync::Weak<Node>, mut rx: mpsc::UnboundedReceiver<String>) {
        while let Some(id) = rx.recv().await {
            let Some(node) = node.upgrade() else { break };
            let vm = node.read_vms().get(&id).cloned();
            if let Some(vm) = vm {
                let snap = node.snapshot(&vm);
                let _ = node.events.send(pb::NodeVmEvent {
                    vm: Some(snap),
                    kind: "status".into(),
                    message: String::new(),
                });
            }
        }
    }

    fn remove_leftover_run_dirs(&self) {
        let Ok(entries) = std::fs::read_dir(&self.cfg.host.run_root) else {
            return;
        };
        let known = self.read_vms();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !known.contains_key(&name) {
                tracing::info!(dir = %e.path().display(), "removing run dir of an unknown VM");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    pub fn info(&self) -> pb::NodeInfo {
        pb::NodeInfo {
            name: self.cfg.name.clone(),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            cpus: self.cfg.limits.cpus,
            memory_mb: self.cfg.limits.memory_mib,
            version: env!("CARGO_PKG_VERSION").to_string(),
            qemu_version: self.cfg.qemu_version.clone(),
            accel: self.cfg.host.accel.as_str().to_string(),
        }
    }

    /// The node's view of a VM, with a fresh sequence number.
    pub fn snapshot(&self, vm: &Vm) -> pb::NodeVm {
        let st = vm.status();
        pb::NodeVm {
            id: vm.id().to_string(),
            name: vm.spec().name.clone(),
            status: status_to_pb(st.state) as i32,
            status_reason: st.reason,
            pid: st.pid.map(|p| p as i32).unwrap_or(0),
            timeline: Some(timeline_to_pb(&vm.timeline())),
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            spec: Some(spec_to_pb(vm.spec())),
        }
    }

    pub fn vm(&self, id: &str) -> ApiResult<Vm> {
        self.read_vms()
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("VM {id} is not on node {}", self.cfg.name)))
    }

    pub fn list(&self) -> Vec<pb::NodeVm> {
        let vms: Vec<Vm> = self.read_vms().values().cloned().collect();
        vms.iter().map(|v| self.snapshot(v)).collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<pb::NodeVmEvent> {
        self.events.subscribe()
    }

    fn spec_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_dir.join("vms").join(id)
    }

    /// Store a VM's spec and start supervising it (stopped).
    pub fn define(&self, spec: VmSpec) -> ApiResult<pb::NodeVm> {
        if uuid::Uuid::parse_str(&spec.id).is_err() {
            return Err(ApiError::InvalidArgument(format!(
                "VM id {:?} is not a uuid",
                spec.id
            )));
        }
        spec.validate(&self.cfg.limits)?;
        for (what, file) in [("kernel", &spec.kernel), ("initrd", &spec.initrd)] {
            if let Some(f) = file {
                kcore_vmm::host::check_readable(what, f, self.cfg.host.run_as.as_ref())?;
            }
        }
        if self.read_vms().contains_key(&spec.id) {
            return Err(ApiError::AlreadyExists(format!(
                "VM {} exists on this node",
                spec.id
            )));
        }
        let dir = self.spec_dir(&spec.id);
        write_spec(&dir, &spec).map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            ApiError::Internal(format!("cannot store spec in {}: {e}", dir.display()))
        })?;
        let vm = Vm::new(spec, self.cfg.host.clone(), self.notifier());
        self.write_vms().insert(vm.id().to_string(), vm.clone());
        Ok(self.snapshot(&vm))
    }

    pub async fn start_vm(&self, id: &str, requested_at: SystemTime) -> ApiResult<pb::NodeVm> {
        let vm = self.vm(id)?;
        vm.start(requested_at).await?;
        Ok(self.snapshot(&vm))
    }

    pub async fn stop_vm(&self, id: &str, force: bool, timeout: Duration) -> ApiResult<pb::NodeVm> {
        let vm = self.vm(id)?;
        vm.stop(StopMode { force, timeout }).await?;
        Ok(self.snapshot(&vm))
    }

    /// Forget a VM: kill it if `force`, remove its run dir and its stored spec.
    pub async fn undefine(&self, id: &str, force: bool) -> ApiResult<()> {
        let vm = self.vm(id)?;
        vm.destroy(force).await?;
        self.write_vms().remove(id);
        let dir = self.spec_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ApiError::Internal(format!("remove {}: {e}", dir.display())));
            }
        }
        let _ = self.events.send(pb::NodeVmEvent {
            vm: Some(pb::NodeVm {
                id: id.to_string(),
                name: vm.spec().name.clone(),
                seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
                ..Default::default()
            }),
            kind: "undefined".into(),
            message: String::new(),
        });
        Ok(())
    }
}

fn load_specs(dir: &Path) -> Vec<VmSpec> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path().join("spec.json");
        match std::fs::read(&p).map(|b| serde_json::from_slice::<VmSpec>(&b)) {
            Ok(Ok(s)) => out.push(s),
            Ok(Err(err)) => tracing::error!(path = %p.display(), error = %err, "bad spec.json"),
            Err(err) => tracing::warn!(path = %p.display(), error = %err, "no spec.json"),
        }
    }
    out
}

/// Atomic write: tmp + fsync + rename + fsync of the directory.
fn write_spec(dir: &Path, spec: &VmSpec) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("spec.json.tmp");
    let data = serde_json::to_vec_pretty(spec).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("spec.json"))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

//! The node agent: owns this host's VMs (their specs on disk under `<data-dir>/vms/<id>/`
//! and their supervised QEMU processes) and serves the internal `NodeAgent` API.
//!
//! On start it reads every stored spec and reattaches to the QEMU processes that survived
//! the previous daemon; run dirs of VMs it no longer knows are removed.

mod disks;
mod dnsmasq;
pub mod grpc;
pub mod network;
mod nics;
pub mod storage;

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
    /// Runtime state: `<run-dir>/networks/<name>/` (dnsmasq's pid and lease files).
    pub run_dir: PathBuf,
    pub host: Arc<HostConfig>,
    pub limits: HostLimits,
    pub qemu_version: String,
    pub pools: Vec<kcore_storage::PoolConfig>,
}

/// How old the pool capacity in a heartbeat may be.
const POOL_CAPACITY_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// The node agent's state. Shared behind an `Arc`.
pub struct Node {
    cfg: NodeConfig,
    storage: Arc<storage::NodeStorage>,
    net: Arc<network::NodeNetworks>,
    vms: RwLock<HashMap<String, Vm>>,
    /// Ids of the VMs being defined now (reported in heartbeats).
    defining: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Pool capacity as last read for a heartbeat, and when: LVM pools run lvm2 to tell,
    /// so heartbeats read it at most every [`POOL_CAPACITY_TTL`].
    pool_capacity: std::sync::Mutex<Option<(std::time::Instant, Vec<pb::Pool>)>>,
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
        let storage = Arc::new(storage::NodeStorage::open(
            &cfg.name,
            &cfg.data_dir,
            &cfg.pools,
            cfg.host.run_as.clone(),
        )?);
        let net = Arc::new(network::NodeNetworks::open(
            &cfg.name,
            &cfg.data_dir,
            &cfg.run_dir,
        )?);
        // Networks before VMs: a VM restarted by its policy needs its bridge.
        net.load().await;
        net.spawn_repair();
        let (events, _) = broadcast::channel(4096);
        let (notify_tx, notify_rx) = mpsc::unbounded_channel();
        // Sequence numbers only grow, across daemon restarts too: start from the clock.
        let seq0 = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let node = Arc::new(Node {
            cfg,
            storage,
            net,
            vms: RwLock::new(HashMap::new()),
            defining: std::sync::Mutex::default(),
            pool_capacity: std::sync::Mutex::default(),
            seq: AtomicU64::new(seq0),
            events,
            notify_tx,
        });
        tokio::spawn(Self::publish_loop(Arc::downgrade(&node), notify_rx));
        let specs = load_specs(&vms_dir);
        let mut recovered = Vec::new();
        for spec in specs {
            let vm = node.new_vm(spec);
            node.write_vms().insert(vm.id().to_string(), vm.clone());
            recovered.push(async move {
                if let Err(e) = vm.recover().await {
                    tracing::warn!(vm = %vm.spec().name, error = %e, "reattach failed");
                }
            });
        }
        futures::future::join_all(recovered).await;
        node.remove_leftover_run_dirs();
        node.reconcile_taps().await;
        node.spawn_lease_watch();
        tracing::info!(node = %node.cfg.name, vms = node.read_vms().len(), "node ready");
        Ok(node)
    }

    fn read_vms(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Vm>> {
        self.vms.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn write_vms(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Vm>> {
        self.vms.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A supervised VM whose NICs get their taps from this node's networks.
    fn new_vm(&self, spec: VmSpec) -> Vm {
        let vm = Vm::new(spec, self.cfg.host.clone(), self.notifier());
        vm.set_nic_opener(nics::nic_opener(self.net.clone()));
        vm
    }

    pub fn networks(&self) -> &Arc<network::NodeNetworks> {
        &self.net
    }

    pub(crate) fn notifier(&self) -> Notify {
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
                    heartbeat: None,
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
        let spec = vm.spec();
        pb::NodeVm {
            id: vm.id().to_string(),
            name: spec.name.clone(),
            status: status_to_pb(st.state) as i32,
            status_reason: st.reason,
            pid: st.pid.map(|p| p as i32).unwrap_or(0),
            timeline: Some(timeline_to_pb(&vm.timeline())),
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            spec: Some(spec_to_pb(&spec)),
            disks: storage::disks_to_pb(&spec.disks),
            nics: self.nics_to_pb(&spec),
        }
    }

    pub fn storage(&self) -> &Arc<storage::NodeStorage> {
        &self.storage
    }

    /// Every volume with the VM using it.
    pub async fn list_volumes(&self) -> ApiResult<Vec<pb::Volume>> {
        let owners: HashMap<(String, String), String> = self
            .read_vms()
            .values()
            .flat_map(|vm| {
                vm.spec()
                    .disks
                    .iter()
                    .map(|d| ((d.pool.clone(), d.volume.clone()), vm.spec().name.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let storage = self.storage.clone();
        blocking(move || storage.list_volumes(&owners)).await
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

    /// What this node has and runs, for the controller's heartbeat: capacity, pools with
    /// their free space (this runs lvm2 / statvfs: call it off the async threads), the
    /// networks in place and every VM with its state.
    pub fn heartbeat(&self) -> pb::NodeHeartbeat {
        // Taken first: anything that changes a VM after this gets a higher number.
        let seq = self.seq.load(Ordering::SeqCst);
        let pools = self.pool_capacity_for_heartbeat();
        let networks = crate::convert::ready_networks(self.networks().list());
        let vms: Vec<Vm> = self.read_vms().values().cloned().collect();
        let vms = vms
            .iter()
            .map(|v| pb::NodeVmState {
                id: v.id().to_string(),
                name: v.spec().name.clone(),
                status: status_to_pb(v.status().state) as i32,
            })
            .collect();
        let images = match self.storage().list_images() {
            Ok(i) => i.into_iter().map(|i| i.name).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list images for the heartbeat");
                Vec::new()
            }
        };
        pb::NodeHeartbeat {
            info: Some(self.info()),
            pools,
            networks,
            vms,
            images,
            seq,
            defining: self
                .defining
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .cloned()
                .collect(),
        }
    }

    fn pool_capacity_for_heartbeat(&self) -> Vec<pb::Pool> {
        let mut cache = self
            .pool_capacity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, pools)) = cache.as_ref()
            && at.elapsed() < POOL_CAPACITY_TTL
        {
            return pools.clone();
        }
        match self.storage().list_pools() {
            Ok(p) => {
                *cache = Some((std::time::Instant::now(), p.clone()));
                p
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pool capacity for the heartbeat");
                cache.as_ref().map(|(_, p)| p.clone()).unwrap_or_default()
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<pb::NodeVmEvent> {
        self.events.subscribe()
    }

    pub(crate) fn spec_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_dir.join("vms").join(id)
    }

    /// Create the VM's disks, store its spec and start supervising it (stopped). On
    /// failure nothing is left: no volume, no spec.
    pub async fn define(&self, spec: VmSpec, api: pb::VmSpec) -> ApiResult<pb::NodeVm> {
        let id = spec.id.clone();
        self.defining
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone());
        let r = self.define_now(spec, api).await;
        self.defining
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
        r
    }

    async fn define_now(&self, mut spec: VmSpec, api: pb::VmSpec) -> ApiResult<pb::NodeVm> {
        if uuid::Uuid::parse_str(&spec.id).is_err() {
            return Err(ApiError::InvalidArgument(format!(
                "VM id {:?} is not a uuid",
                spec.id
            )));
        }
        spec.nics = self.nics_from_pb(&spec.id, &api.nics)?;
        let has_image = !api.image.is_empty();
        if has_image {
            // Validate as if the boot disk were there; it is made once all else is fine.
            spec.disks.push(kcore_vmm::spec::Disk {
                id: "disk0".into(),
                path: "/dev/null".into(),
                format: kcore_vmm::spec::DiskFormat::Qcow2,
                bootindex: None,
                pool: String::new(),
                volume: String::new(),
                image: String::new(),
                size_bytes: 0,
                port: None,
            });
        }
        spec.validate(&self.cfg.limits)?;
        spec.disks.clear();
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
        if has_image || !api.disks.is_empty() {
            let storage = self.storage.clone();
            let (name, id) = (spec.name.clone(), spec.id.clone());
            spec.disks = blocking(move || storage.create_disks(&name, &id, &api)).await?;
        }
        let made = spec.disks.clone();
        let undo = |e: ApiError| {
            let _ = std::fs::remove_dir_all(&dir);
            self.storage.delete_disks(&made);
            e
        };
        if spec.firmware == kcore_vmm::spec::Firmware::Uefi {
            let (code, vars) = uefi_files(&dir, self.cfg.host.run_as.as_ref()).map_err(undo)?;
            spec.uefi_code = Some(code);
            spec.uefi_vars = Some(vars);
        }
        write_spec(&dir, &spec).map_err(|e| {
            undo(ApiError::Internal(format!(
                "cannot store spec in {}: {e}",
                dir.display()
            )))
        })?;
        let vm = self.new_vm(spec);
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

    /// Forget a VM: kill it if `force`, remove its run dir, its volumes (unless
    /// `keep_disks`) and its stored spec.
    pub async fn undefine(&self, id: &str, force: bool, keep_disks: bool) -> ApiResult<()> {
        let vm = self.vm(id)?;
        vm.destroy(force).await?;
        self.write_vms().remove(id);
        // QEMU took its taps with it; a leftover would be removed here.
        self.net.remove_taps_of(id).await;
        if !keep_disks {
            let storage = self.storage.clone();
            let disks = vm.spec().disks.clone();
            blocking(move || {
                storage.delete_disks(&disks);
                Ok(())
            })
            .await?;
        }
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
            heartbeat: None,
        });
        Ok(())
    }
}

/// Run blocking storage work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("storage task failed: {e}")))?
}

/// OVMF code (shared, read-only) and a per-VM copy of the variable store.
fn uefi_files(
    dir: &Path,
    run_as: Option<&kcore_vmm::process::RunAs>,
) -> ApiResult<(PathBuf, PathBuf)> {
    let pairs = [
        (
            "/usr/share/OVMF/OVMF_CODE_4M.fd",
            "/usr/share/OVMF/OVMF_VARS_4M.fd",
        ),
        (
            "/usr/share/OVMF/OVMF_CODE.fd",
            "/usr/share/OVMF/OVMF_VARS.fd",
        ),
    ];
    let Some((code, vars)) = pairs
        .iter()
        .find(|(c, v)| Path::new(c).is_file() && Path::new(v).is_file())
    else {
        return Err(ApiError::FailedPrecondition(
            "UEFI firmware not found in /usr/share/OVMF: apt-get install ovmf".into(),
        ));
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| ApiError::Internal(format!("create {}: {e}", dir.display())))?;
    let copy = dir.join("OVMF_VARS.fd");
    std::fs::copy(vars, &copy).map_err(|e| ApiError::Internal(format!("copy {vars}: {e}")))?;
    if let Some(r) = run_as {
        std::os::unix::fs::chown(&copy, Some(r.uid), Some(r.gid))
            .map_err(|e| ApiError::Internal(format!("chown {}: {e}", copy.display())))?;
    }
    Ok((PathBuf::from(code), copy))
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
pub(crate) fn write_spec(dir: &Path, spec: &VmSpec) -> std::io::Result<()> {
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

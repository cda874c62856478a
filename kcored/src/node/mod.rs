//! The node agent: owns this host's VMs (their specs on disk under `<data-dir>/vms/<id>/`
//! and their supervised QEMU processes) and serves the internal `NodeAgent` API.
//!
//! On start it reads every stored spec and reattaches to the QEMU processes that survived
//! the previous daemon; run dirs of VMs it no longer knows are removed.

mod boot;
mod convert;
mod define;
mod disks;
mod dnsmasq;
pub mod grpc;
mod intent;
mod migration;
pub mod network;
mod nics;
pub mod seed;
pub mod stats;
pub mod storage;
pub mod templates;
pub mod uids;
mod update;
pub mod view;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kcore_vmm::host::HostConfig;
use kcore_vmm::spec::{HostLimits, VmSpec};
use kcore_vmm::vm::{Notify, StopMode, Vm};
use tokio::sync::{broadcast, mpsc};

use self::view::{Heartbeat, NodeInfo, PoolView, VmBrief, VmEvent, VmView, VolumeView};
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
    /// The uids VMs' QEMUs run as, one each (None: all as the QEMU user).
    pub qemu_uids: Option<uids::UidRange>,
    /// How often every VM's resource use is sampled (`--stats-interval`).
    pub stats_interval: Duration,
}

/// How old the pool capacity in a heartbeat may be.
const POOL_CAPACITY_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// The node agent's state. Shared behind an `Arc`.
pub struct Node {
    cfg: NodeConfig,
    storage: Arc<storage::NodeStorage>,
    net: Arc<network::NodeNetworks>,
    templates: Arc<templates::Templates>,
    vms: RwLock<HashMap<String, Vm>>,
    /// Ids of the VMs being defined now (reported in heartbeats).
    defining: std::sync::Mutex<std::collections::HashSet<String>>,
    /// QEMU uids given to VMs being defined, not yet in `vms`.
    reserved_uids: std::sync::Mutex<std::collections::HashSet<u32>>,
    /// Pool capacity as last read for a heartbeat, and when: LVM pools run lvm2 to tell,
    /// so heartbeats read it at most every [`POOL_CAPACITY_TTL`].
    pool_capacity: std::sync::Mutex<Option<(std::time::Instant, Vec<PoolView>)>>,
    seq: AtomicU64,
    /// Resource-use samples of the VMs.
    stats: stats::StatsKeeper,
    events: broadcast::Sender<VmEvent>,
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
    /// Undo creates cut short, load the stored VMs, reattach to the ones still running,
    /// and on the first start since the host booted, start the autostart VMs.
    pub async fn start(cfg: NodeConfig) -> anyhow::Result<Arc<Node>> {
        let vms_dir = cfg.data_dir.join("vms");
        std::fs::create_dir_all(&vms_dir)?;
        std::fs::create_dir_all(&cfg.host.run_root)?;
        let storage = Arc::new(storage::NodeStorage::open(
            &cfg.name,
            &cfg.data_dir,
            &cfg.pools,
        )?);
        let net = Arc::new(network::NodeNetworks::open(
            &cfg.name,
            &cfg.data_dir,
            &cfg.run_dir,
        )?);
        // Networks before VMs: a VM restarted by its policy needs its bridge.
        net.load().await;
        net.spawn_repair();
        // Every slot is allocated (and touched) up front: ~200 B each.
        let (events, _) = broadcast::channel(1024);
        let (notify_tx, notify_rx) = mpsc::unbounded_channel();
        // Sequence numbers only grow, across daemon restarts too: start from the clock.
        let seq0 = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let templates = Arc::new(templates::Templates::open(&cfg.data_dir)?);
        let node = Arc::new(Node {
            stats: stats::StatsKeeper::new(cfg.stats_interval),
            templates,
            cfg,
            storage,
            net,
            vms: RwLock::new(HashMap::new()),
            defining: std::sync::Mutex::default(),
            reserved_uids: std::sync::Mutex::default(),
            pool_capacity: std::sync::Mutex::default(),
            seq: AtomicU64::new(seq0),
            events,
            notify_tx,
        });
        tokio::spawn(Self::publish_loop(Arc::downgrade(&node), notify_rx));
        node.undo_unfinished_creates().await;
        let mut recovered = Vec::new();
        for spec in node.load_specs() {
            let vm = node.new_vm(spec);
            node.write_vms().insert(vm.id().to_string(), vm.clone());
            recovered.push(async move {
                if let Err(e) = vm.recover().await {
                    tracing::warn!(vm = %vm.spec().name, error = %e, "reattach failed");
                }
            });
        }
        futures::future::join_all(recovered).await;
        node.undo_unfinished_migrations().await;
        node.abandon_outgoing_migrations().await;
        node.remove_leftover_run_dirs();
        node.reconcile_taps().await;
        node.spawn_lease_watch();
        node.autostart_once_per_boot();
        node.spawn_sampler();
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
                let _ = node.events.send(VmEvent::Changed(node.snapshot(&vm)));
            }
        }
    }

    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            name: self.cfg.name.clone(),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            cpus: self.cfg.limits.cpus,
            memory_mib: self.cfg.limits.memory_mib,
            version: env!("CARGO_PKG_VERSION").to_string(),
            qemu_version: self.cfg.qemu_version.clone(),
            accel: self.cfg.host.accel,
        }
    }

    /// The node's view of a VM, with a fresh sequence number: its state, disks and NICs
    /// (the controller needs no more of its spec for a change; [`Node::list`] adds it).
    pub fn snapshot(&self, vm: &Vm) -> VmView {
        let st = vm.status();
        let spec = vm.spec();
        VmView {
            id: vm.id().to_string(),
            name: spec.name.clone(),
            state: st.state,
            reason: st.reason,
            pid: st.pid,
            timeline: vm.timeline(),
            seq: self.next_seq(),
            disks: view::disk_views(&spec.disks),
            nics: self.nic_views(&spec),
            spec: None,
        }
    }

    /// The next sequence number of a change.
    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn storage(&self) -> &Arc<storage::NodeStorage> {
        &self.storage
    }

    /// Every volume with the VM using it.
    pub async fn list_volumes(&self) -> ApiResult<Vec<VolumeView>> {
        let owners = self.volumes_in_use();
        let storage = self.storage.clone();
        blocking(move || storage.list_volumes(&owners)).await
    }

    /// (pool, volume) -> the name of the VM whose disk it is.
    pub(crate) fn volumes_in_use(&self) -> HashMap<(String, String), String> {
        self.read_vms()
            .values()
            .flat_map(|vm| {
                let spec = vm.spec();
                spec.disks
                    .iter()
                    .map(|d| ((d.pool.clone(), d.volume.clone()), spec.name.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn vm(&self, id: &str) -> ApiResult<Vm> {
        self.read_vms()
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("VM {id} is not on node {}", self.cfg.name)))
    }

    /// Every VM with its whole spec (what a controller that lost its store adopts).
    pub fn list(&self) -> Vec<VmView> {
        let vms: Vec<Vm> = self.read_vms().values().cloned().collect();
        vms.iter()
            .map(|v| VmView {
                spec: Some(Box::new(v.spec())),
                ..self.snapshot(v)
            })
            .collect()
    }

    /// What this node has and runs, for the controller's heartbeat: capacity, pools with
    /// their free space (this runs lvm2 / statvfs: call it off the async threads), the
    /// networks in place and every VM with its state.
    pub fn heartbeat(&self) -> Heartbeat {
        // Taken first: anything that changes a VM after this gets a higher number.
        let seq = self.seq.load(Ordering::SeqCst);
        let pools = self.pool_capacity_for_heartbeat();
        let networks = self
            .networks()
            .list()
            .into_iter()
            .filter(|n| n.status.ready)
            .map(|n| n.def.name)
            .collect();
        let vms: Vec<Vm> = self.read_vms().values().cloned().collect();
        let vms = vms
            .iter()
            .map(|v| VmBrief {
                id: v.id().to_string(),
                name: v.spec().name.clone(),
                state: v.status().state,
            })
            .collect();
        let images = match self.storage().list_images() {
            Ok(i) => i.into_iter().map(|i| i.name).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list images for the heartbeat");
                Vec::new()
            }
        };
        Heartbeat {
            info: self.info(),
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

    fn pool_capacity_for_heartbeat(&self) -> Vec<PoolView> {
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

    pub fn subscribe(&self) -> broadcast::Receiver<VmEvent> {
        self.events.subscribe()
    }

    pub(crate) fn spec_dir(&self, id: &str) -> PathBuf {
        self.cfg.data_dir.join("vms").join(id)
    }

    pub async fn start_vm(&self, id: &str, requested_at: SystemTime) -> ApiResult<VmView> {
        let vm = self.vm(id)?;
        match vm.spec().restore.filter(|r| r.pending) {
            Some(from) => self.start_clone(&vm, requested_at, &from).await?,
            None => vm.start(requested_at).await?,
        }
        Ok(self.snapshot(&vm))
    }

    pub async fn stop_vm(&self, id: &str, force: bool, timeout: Duration) -> ApiResult<VmView> {
        let vm = self.vm(id)?;
        vm.stop(StopMode { force, timeout }).await?;
        Ok(self.snapshot(&vm))
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

/// Store a VM's spec (`dir/spec.json`, the directory created) atomically.
pub(crate) fn write_spec(dir: &Path, spec: &VmSpec) -> std::io::Result<()> {
    let data = serde_json::to_vec_pretty(spec).map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    crate::atomic_file::atomic_write(&dir.join("spec.json"), &data, 0o600)
}

//! The node's storage: its pools (always a dir pool named `default` under the data dir,
//! plus `--pool NAME=dir:PATH|lvm:VG[/THIN]`), the images in its dir pools, and the volumes
//! that are its VMs' disks. `kcore-storage` is blocking: callers run this on the blocking
//! pool.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use kcore_storage::{
    ImageInfo, ImageStore, Pool, PoolConfig, PoolKind, StorageError, SystemRunner, VolumeFormat,
    VolumeInfo,
};
use kcore_vmm::spec::{Backing, Disk, DiskFormat};
use serde::{Deserialize, Serialize};

use super::view::{ImageView, ImportImage, PoolView, VolumeView};
use crate::error::{ApiError, ApiResult};
use crate::model::{DiskRequest, VmRequest};

const GIB: u64 = 1 << 30;

/// The pools of one node.
#[derive(Debug)]
pub struct NodeStorage {
    node: String,
    pools: BTreeMap<String, (PoolConfig, Pool)>,
}

impl NodeStorage {
    /// Open the default pool and the configured ones.
    pub fn open(
        node: &str,
        data_dir: &Path,
        configured: &[PoolConfig],
    ) -> Result<Self, StorageError> {
        let runner: Arc<dyn kcore_storage::Runner> = Arc::new(SystemRunner);
        let mut cfgs: Vec<PoolConfig> = configured.to_vec();
        if !cfgs.iter().any(|c| c.name == "default") {
            let path = data_dir.join("pools").join("default");
            std::fs::create_dir_all(&path).map_err(|e| StorageError::io("create", &path, e))?;
            cfgs.insert(
                0,
                PoolConfig {
                    name: "default".into(),
                    kind: PoolKind::Dir { path },
                },
            );
        }
        let mut pools = BTreeMap::new();
        for cfg in cfgs {
            if let PoolKind::Dir { path } = &cfg.kind {
                std::fs::create_dir_all(path).map_err(|e| StorageError::io("create", path, e))?;
            }
            let pool = Pool::open(&cfg, runner.clone())?;
            if let Some(images) = pool.images() {
                let n = images.cleanup_stale_imports()?;
                if n > 0 {
                    tracing::info!(pool = %cfg.name, removed = n, "removed interrupted imports");
                }
            }
            pools.insert(cfg.name.clone(), (cfg, pool));
        }
        Ok(NodeStorage {
            node: node.to_string(),
            pools,
        })
    }

    pub fn pool(&self, name: &str) -> ApiResult<&Pool> {
        self.pools.get(name).map(|(_, p)| p).ok_or_else(|| {
            ApiError::NotFound(format!(
                "no pool named {name:?} on node {} (pools: {})",
                self.node,
                self.pools.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Every pool with its capacity (LVM pools run lvm2 to tell).
    pub fn list_pools(&self) -> ApiResult<Vec<PoolView>> {
        let mut out = Vec::new();
        for (name, (cfg, pool)) in &self.pools {
            let cap = pool.backend().capacity()?;
            out.push(PoolView::of(
                name,
                &self.node,
                &cfg.kind,
                cap.total_bytes,
                cap.free_bytes,
            ));
        }
        Ok(out)
    }

    /// The image store of a dir pool.
    pub fn image_store(&self, pool: &str) -> ApiResult<&ImageStore> {
        let pool_name = if pool.is_empty() { "default" } else { pool };
        self.pool(pool_name)?.images().ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "pool {pool_name} is not a dir pool: images live in dir pools"
            ))
        })
    }

    fn image_view(&self, pool: &str, i: ImageInfo) -> ImageView {
        ImageView {
            name: i.name,
            node: self.node.clone(),
            pool: pool.to_string(),
            format: i.format,
            virtual_size: i.virtual_size,
            actual_size: i.actual_size,
            sha256: i.sha256,
        }
    }

    /// Import an image from `source` (reporting bytes done and the total, when known).
    pub fn import_image(
        &self,
        req: &ImportImage,
        source: kcore_storage::Source,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> ApiResult<ImageView> {
        let pool = req.pool.as_deref().unwrap_or("default");
        let store = self.image_store(pool)?;
        if store.find(&req.name)?.is_some() {
            return Err(ApiError::AlreadyExists(format!(
                "an image named {:?} already exists in pool {pool}",
                req.name.as_str()
            )));
        }
        let info = store.import_from(&req.name, source, req.sha256.as_deref(), progress)?;
        Ok(self.image_view(pool, info))
    }

    /// Every image of every dir pool.
    pub fn list_images(&self) -> ApiResult<Vec<ImageView>> {
        let mut out = Vec::new();
        for (name, (_, pool)) in &self.pools {
            if let Some(store) = pool.images() {
                for i in store.list_images()? {
                    out.push(self.image_view(name, i));
                }
            }
        }
        Ok(out)
    }

    pub fn delete_image(&self, pool: &str, name: &str) -> ApiResult<()> {
        let pool_name = if pool.is_empty() { "default" } else { pool };
        match self.pool(pool_name)? {
            Pool::Dir(d) => Ok(d.delete_image(name)?),
            Pool::Lvm(_) => Err(ApiError::InvalidArgument(format!(
                "pool {pool_name} is not a dir pool: it holds no images"
            ))),
        }
    }

    /// Find an image by name in any dir pool (the default pool first).
    fn find_image(&self, name: &str) -> ApiResult<ImageInfo> {
        let mut order: Vec<&String> = self.pools.keys().collect();
        order.sort_by_key(|n| *n != "default");
        for pool in order {
            if let Some(store) = self.pools[pool].1.images()
                && store.find(name)?.is_some()
            {
                return Ok(store.get(name)?);
            }
        }
        Err(ApiError::NotFound(format!(
            "no image named {name:?} on node {} (kctl image list)",
            self.node
        )))
    }

    /// The disks a create asks for, checked before anything is made: pools and images
    /// exist, sizes are within bounds, the names of new volumes are free, existing volumes
    /// exist and no VM uses them (`in_use`: (pool, volume) -> VM), and the new volumes of
    /// each pool fit in its free space ([`NodeStorage::check_room`]).
    pub fn plan_disks(
        &self,
        vm_name: &str,
        vm_id: &str,
        spec: &VmRequest,
        in_use: &HashMap<(String, String), String>,
    ) -> ApiResult<Vec<PlannedDisk>> {
        let base = if vm_name.len() + 7 <= 63 {
            vm_name.to_string()
        } else {
            format!("vm-{}", &vm_id[..8.min(vm_id.len())])
        };
        let kernel_boot = spec.boot.kernel().is_some();
        let mut plan = Vec::new();
        if let Some(i) = spec.boot.image() {
            let image = self.find_image(&i.image)?;
            let pool = i.pool.as_deref().unwrap_or("default");
            let size = match i.size_gib {
                None => image.virtual_size,
                Some(gb) => u64::from(gb) * GIB,
            };
            kcore_storage::check_size(size)?;
            if size < image.virtual_size {
                return Err(StorageError::ShrinkRefused {
                    name: format!("{base}-root"),
                    current: image.virtual_size,
                    requested: size,
                }
                .into());
            }
            plan.push(PlannedDisk {
                pool: pool.to_string(),
                volume: format!("{base}-root"),
                size_bytes: size,
                kind: PlannedKind::Clone {
                    image: image.name.clone(),
                },
                boot: !kernel_boot,
            });
        }
        for (i, d) in spec.disks.iter().enumerate() {
            let pool = d.pool();
            match d {
                DiskRequest::Existing { volume, .. } => {
                    let info = self.pool(pool)?.backend().info(volume)?;
                    if let Some(vm) = in_use.get(&(pool.to_string(), volume.to_string())) {
                        return Err(ApiError::FailedPrecondition(format!(
                            "volume {volume} in pool {pool} is a disk of VM {vm}"
                        )));
                    }
                    plan.push(PlannedDisk {
                        pool: pool.to_string(),
                        volume: volume.to_string(),
                        size_bytes: info.virtual_size,
                        kind: PlannedKind::Existing,
                        boot: plan.is_empty() && !kernel_boot,
                    });
                }
                DiskRequest::New { size_gib, .. } => {
                    let size = u64::from(*size_gib) * GIB;
                    kcore_storage::check_size(size)?;
                    plan.push(PlannedDisk {
                        pool: pool.to_string(),
                        volume: format!("{base}-disk{}", i + 1),
                        size_bytes: size,
                        kind: PlannedKind::Empty,
                        boot: false,
                    });
                }
            }
        }
        // New volumes: their names are free (so an undo after a crash deletes only what
        // this create made), and each pool has room for all of them together.
        let mut per_pool: BTreeMap<&str, u64> = BTreeMap::new();
        for p in plan.iter().filter(|p| p.is_new()) {
            if self.pool(&p.pool)?.backend().info(&p.volume).is_ok() {
                return Err(ApiError::AlreadyExists(format!(
                    "a volume named {} exists in pool {}: delete it (kctl volume delete {} \
                     --pool {}) or attach it (--disk {}:{})",
                    p.volume, p.pool, p.volume, p.pool, p.pool, p.volume
                )));
            }
            *per_pool.entry(p.pool.as_str()).or_default() += p.size_bytes;
        }
        for (pool, bytes) in per_pool {
            self.check_room(pool, bytes)?;
        }
        Ok(plan)
    }

    /// The pool-space rule, the same for every volume a request makes or grows (create,
    /// clone, attach, resize, offline or live): the virtual bytes it adds to a pool (a
    /// new volume's whole size, a resize's growth; a create's volumes summed per pool)
    /// must fit in that pool's free space at that moment. Guests can fill what they are
    /// given, so nothing is promised that the pool does not have now.
    pub fn check_room(&self, pool: &str, bytes: u64) -> ApiResult<()> {
        let free = self.pool(pool)?.backend().capacity()?.free_bytes;
        if bytes > free {
            return Err(ApiError::ResourceExhausted(format!(
                "{:.1} GiB is more than pool {pool} has free ({:.1} GiB)",
                bytes as f64 / GIB as f64,
                free as f64 / GIB as f64
            )));
        }
        Ok(())
    }

    /// Make the planned disks (new volumes created, existing ones looked up), in order, as
    /// `disk0`, `disk1`, ... On failure, the volumes made so far are deleted.
    pub fn make_disks(&self, plan: &[PlannedDisk]) -> ApiResult<Vec<Disk>> {
        let mut made: Vec<Disk> = Vec::new();
        let mut new: Vec<Disk> = Vec::new();
        for (i, p) in plan.iter().enumerate() {
            let result = (|| -> ApiResult<Disk> {
                let pool = self.pool(&p.pool)?;
                let (info, image) = match &p.kind {
                    PlannedKind::Clone { image } => {
                        let image = self.find_image(image)?;
                        let info = pool.backend().clone_from_image(
                            &image,
                            &p.volume,
                            Some(p.size_bytes),
                        )?;
                        (info, Some(image.name))
                    }
                    PlannedKind::Empty => {
                        let format = match pool {
                            Pool::Dir(_) => VolumeFormat::Qcow2,
                            Pool::Lvm(_) => VolumeFormat::Raw,
                        };
                        (
                            pool.backend()
                                .create_volume(&p.volume, p.size_bytes, format)?,
                            None,
                        )
                    }
                    PlannedKind::Existing => {
                        let info = pool.backend().info(&p.volume)?;
                        let image = info.backing.clone();
                        (info, image)
                    }
                };
                let mut disk = self.disk(&info, &p.pool, image.as_deref().unwrap_or(""), i)?;
                disk.bootindex = p.boot.then_some(1);
                Ok(disk)
            })();
            match result {
                Ok(d) => {
                    if p.is_new() {
                        new.push(d.clone());
                    }
                    made.push(d);
                }
                Err(e) => {
                    self.delete_disks(&new);
                    return Err(e);
                }
            }
        }
        Ok(made)
    }

    /// Delete the new volumes of a plan that exist (undoing a create cut short).
    pub fn delete_planned(&self, plan: &[PlannedDisk]) {
        for p in plan.iter().filter(|p| p.is_new()) {
            let Ok(pool) = self.pool(&p.pool) else {
                continue;
            };
            match pool.backend().delete(&p.volume) {
                Ok(()) => {
                    tracing::info!(pool = %p.pool, volume = %p.volume, "removed a volume of an unfinished create")
                }
                Err(StorageError::NotFound { .. }) => {}
                Err(e) => tracing::warn!(volume = %p.volume, error = %e, "cannot delete volume"),
            }
        }
    }

    /// An empty data volume in `pool` (qcow2 in dir pools, raw in lvm), as a disk (its
    /// `id` is for the caller to set).
    pub fn create_volume_disk(&self, pool_name: &str, volume: &str, size: u64) -> ApiResult<Disk> {
        kcore_storage::check_size(size)?;
        self.check_room(pool_name, size)?;
        let pool = self.pool(pool_name)?;
        let format = match pool {
            Pool::Dir(_) => VolumeFormat::Qcow2,
            Pool::Lvm(_) => VolumeFormat::Raw,
        };
        let info = pool.backend().create_volume(volume, size, format)?;
        self.disk(&info, pool_name, "", 0)
    }

    /// An existing volume that no VM uses (`in_use`: (pool, volume) -> VM), as a disk
    /// (its `id` is for the caller to set).
    pub fn existing_disk(
        &self,
        pool: &str,
        volume: &str,
        in_use: &HashMap<(String, String), String>,
    ) -> ApiResult<Disk> {
        let pool = pool_or_default(pool);
        if let Some(vm) = in_use.get(&(pool.to_string(), volume.to_string())) {
            return Err(ApiError::FailedPrecondition(format!(
                "volume {volume} in pool {pool} is a disk of VM {vm}"
            )));
        }
        let info = self.pool(pool)?.backend().info(volume)?;
        let image = info.backing.clone().unwrap_or_default();
        self.disk(&info, pool, &image, 0)
    }

    /// A new empty volume no VM uses (qcow2 in dir pools, raw in lvm), `size_gb` GiB,
    /// under the pool-space rule.
    pub fn create_volume(&self, pool: &str, volume: &str, size_gb: u32) -> ApiResult<VolumeView> {
        kcore_storage::validate_name("volume", volume)?;
        if size_gb == 0 {
            return Err(ApiError::InvalidArgument(
                "a new volume needs a size of at least 1 GiB".into(),
            ));
        }
        let pool_name = pool_or_default(pool);
        let size = u64::from(size_gb) * GIB;
        kcore_storage::check_size(size)?;
        self.check_room(pool_name, size)?;
        let pool = self.pool(pool_name)?;
        let format = match pool {
            Pool::Dir(_) => VolumeFormat::Qcow2,
            Pool::Lvm(_) => VolumeFormat::Raw,
        };
        let v = pool.backend().create_volume(volume, size, format)?;
        Ok(VolumeView {
            vm: None,
            name: v.name,
            node: self.node.clone(),
            pool: pool_name.to_string(),
            format: v.format,
            virtual_size: v.virtual_size,
            actual_size: v.actual_size,
            backing: v.backing,
            path: v.path,
        })
    }

    /// Grow a volume no QEMU has open.
    pub fn resize_volume(&self, pool: &str, volume: &str, size: u64) -> ApiResult<()> {
        self.pool(pool)?.backend().resize(volume, size)?;
        Ok(())
    }

    /// Delete a volume no VM uses (`in_use`: (pool, volume) -> VM).
    pub fn delete_volume(
        &self,
        pool: &str,
        volume: &str,
        in_use: &HashMap<(String, String), String>,
    ) -> ApiResult<()> {
        let pool = pool_or_default(pool);
        if let Some(vm) = in_use.get(&(pool.to_string(), volume.to_string())) {
            return Err(ApiError::FailedPrecondition(format!(
                "volume {volume} in pool {pool} is a disk of VM {vm}: detach it first (kctl vm \
                 disk detach {vm} {volume})"
            )));
        }
        self.pool(pool)?.backend().delete(volume)?;
        Ok(())
    }

    fn disk(&self, info: &VolumeInfo, pool: &str, image: &str, index: usize) -> ApiResult<Disk> {
        // An overlay reads through to its image: QEMU gets that file too, as a descriptor.
        let backing = match info.backing.as_deref() {
            Some(b) => {
                let store = self.image_store(pool).map_err(|_| {
                    ApiError::FailedPrecondition(format!(
                        "volume {} has a backing file ({b}) outside an image store",
                        info.name
                    ))
                })?;
                let img = store.get(b).map_err(|_| {
                    ApiError::FailedPrecondition(format!(
                        "volume {} is an overlay of {b}, which is not an image of pool {pool}",
                        info.name
                    ))
                })?;
                Some(Backing {
                    path: img.path.clone(),
                    format: disk_format(img.format),
                })
            }
            None => None,
        };
        Ok(Disk {
            id: format!("disk{index}"),
            path: info.path.clone(),
            format: disk_format(info.format),
            bootindex: None,
            pool: pool.to_string(),
            volume: info.name.clone(),
            image: image.to_string(),
            size_bytes: info.virtual_size,
            port: None,
            backing,
        })
    }

    /// The backing image of an image-backed disk of a spec written before disks recorded
    /// it (`Disk::backing`).
    pub fn backing_of(&self, disk: &Disk) -> Option<Backing> {
        if disk.image.is_empty() || disk.backing.is_some() {
            return None;
        }
        let img = self.image_store(&disk.pool).ok()?.get(&disk.image).ok()?;
        Some(Backing {
            path: img.path.clone(),
            format: disk_format(img.format),
        })
    }

    /// Delete volumes; failures are logged (a volume already gone is fine).
    pub fn delete_disks(&self, disks: &[Disk]) {
        for d in disks {
            let Ok(pool) = self.pool(&d.pool) else {
                continue;
            };
            match pool.backend().delete(&d.volume) {
                Ok(()) | Err(StorageError::NotFound { .. }) => {}
                Err(e) => tracing::warn!(volume = %d.volume, error = %e, "cannot delete volume"),
            }
        }
    }

    /// Every volume of every pool, with the VM using it (`owners`: (pool, volume) -> VM).
    pub fn list_volumes(
        &self,
        owners: &HashMap<(String, String), String>,
    ) -> ApiResult<Vec<VolumeView>> {
        let mut out = Vec::new();
        for (name, (_, pool)) in &self.pools {
            for v in pool.backend().list()? {
                out.push(VolumeView {
                    vm: owners.get(&(name.clone(), v.name.clone())).cloned(),
                    name: v.name,
                    node: self.node.clone(),
                    pool: name.clone(),
                    format: v.format,
                    virtual_size: v.virtual_size,
                    actual_size: v.actual_size,
                    backing: v.backing,
                    path: v.path,
                });
            }
        }
        Ok(out)
    }
}

fn pool_or_default(pool: &str) -> &str {
    if pool.is_empty() { "default" } else { pool }
}

fn disk_format(f: VolumeFormat) -> DiskFormat {
    match f {
        VolumeFormat::Qcow2 => DiskFormat::Qcow2,
        VolumeFormat::Raw => DiskFormat::Raw,
    }
}

/// One disk of a create, decided before anything is made (and recorded in the create's
/// intent, so a create cut short can be undone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedDisk {
    pub pool: String,
    pub volume: String,
    /// The virtual size (of the volume to make, or of the existing one).
    pub size_bytes: u64,
    pub kind: PlannedKind,
    /// The disk the VM boots from.
    pub boot: bool,
}

impl PlannedDisk {
    /// A volume this create makes (and an undo deletes).
    pub fn is_new(&self) -> bool {
        !matches!(self.kind, PlannedKind::Existing)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlannedKind {
    /// A copy-on-write clone of an image.
    Clone { image: String },
    /// A new empty volume.
    Empty,
    /// A volume that exists already (attached, never deleted by an undo).
    Existing,
}

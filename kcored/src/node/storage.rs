//! The node's storage: its pools (always a dir pool named `default` under the data dir,
//! plus `--pool NAME=dir:PATH|lvm:VG[/THIN]`), the images in its dir pools, and the volumes
//! that are its VMs' disks. `kcore-storage` is blocking: callers run this on the blocking
//! pool.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use kcore_proto::v1 as pb;
use kcore_storage::{
    ImageInfo, ImageStore, Pool, PoolConfig, PoolKind, StorageError, SystemRunner, VolumeFormat,
    VolumeInfo,
};
use kcore_vmm::process::RunAs;
use kcore_vmm::spec::{Disk, DiskFormat};

use crate::error::{ApiError, ApiResult};

const GIB: u64 = 1 << 30;

/// The pools of one node.
#[derive(Debug)]
pub struct NodeStorage {
    node: String,
    pools: BTreeMap<String, (PoolConfig, Pool)>,
    run_as: Option<RunAs>,
}

impl NodeStorage {
    /// Open the default pool and the configured ones.
    pub fn open(
        node: &str,
        data_dir: &Path,
        configured: &[PoolConfig],
        run_as: Option<RunAs>,
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
            run_as,
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

    pub fn list_pools(&self) -> ApiResult<Vec<pb::Pool>> {
        let mut out = Vec::new();
        for (name, (cfg, pool)) in &self.pools {
            let cap = pool.backend().capacity()?;
            let (ty, source) = match &cfg.kind {
                PoolKind::Dir { path } => ("dir", path.display().to_string()),
                PoolKind::Lvm { vg, thin_pool } => (
                    "lvm",
                    match thin_pool {
                        Some(t) => format!("{vg}/{t}"),
                        None => vg.clone(),
                    },
                ),
            };
            out.push(pb::Pool {
                name: name.clone(),
                node: self.node.clone(),
                r#type: ty.into(),
                source,
                total_bytes: cap.total_bytes,
                free_bytes: cap.free_bytes,
            });
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

    fn image_to_pb(&self, pool: &str, i: &ImageInfo) -> pb::Image {
        pb::Image {
            name: i.name.clone(),
            node: self.node.clone(),
            pool: pool.to_string(),
            format: i.format.as_str().to_string(),
            virtual_size: i.virtual_size,
            actual_size: i.actual_size,
            sha256: i.sha256.clone().unwrap_or_default(),
        }
    }

    pub fn import_image(
        &self,
        req: &pb::ImportImageRequest,
        source: kcore_storage::Source,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> ApiResult<pb::Image> {
        let pool = if req.pool.is_empty() {
            "default"
        } else {
            &req.pool
        };
        let store = self.image_store(pool)?;
        if store.find(&req.name)?.is_some() {
            return Err(ApiError::AlreadyExists(format!(
                "an image named {:?} already exists in pool {pool}",
                req.name
            )));
        }
        let sha = (!req.sha256.is_empty()).then_some(req.sha256.as_str());
        let info = store.import_from(&req.name, source, sha, progress)?;
        Ok(self.image_to_pb(pool, &info))
    }

    pub fn list_images(&self) -> ApiResult<Vec<pb::Image>> {
        let mut out = Vec::new();
        for (name, (_, pool)) in &self.pools {
            if let Some(store) = pool.images() {
                for i in store.list_images()? {
                    out.push(self.image_to_pb(name, &i));
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

    /// Create a VM's volumes: the boot disk cloned from `spec.image`, then the empty data
    /// disks. On failure, the volumes made so far are deleted.
    pub fn create_disks(
        &self,
        vm_name: &str,
        vm_id: &str,
        spec: &pb::VmSpec,
    ) -> ApiResult<Vec<Disk>> {
        let base = if vm_name.len() + 7 <= 63 {
            vm_name.to_string()
        } else {
            format!("vm-{}", &vm_id[..8.min(vm_id.len())])
        };
        let mut made: Vec<Disk> = Vec::new();
        let result = (|| -> ApiResult<()> {
            if !spec.image.is_empty() {
                let image = self.find_image(&spec.image)?;
                let pool_name = if spec.root_pool.is_empty() {
                    "default"
                } else {
                    &spec.root_pool
                };
                let pool = self.pool(pool_name)?;
                let size = (spec.disk_size_gb > 0).then(|| u64::from(spec.disk_size_gb) * GIB);
                let vol = format!("{base}-root");
                let info = pool.backend().clone_from_image(&image, &vol, size)?;
                made.push(self.disk(
                    &info,
                    pool_name,
                    &image.name,
                    made.len(),
                    spec.kernel.is_empty(),
                )?);
            } else if spec.disk_size_gb > 0 {
                return Err(ApiError::InvalidArgument(
                    "--disk-size needs --image (it sizes the boot disk cloned from it)".into(),
                ));
            }
            for (i, d) in spec.disks.iter().enumerate() {
                let pool_name = if d.pool.is_empty() {
                    "default"
                } else {
                    &d.pool
                };
                if d.size_gb == 0 {
                    return Err(ApiError::InvalidArgument(format!(
                        "disk {}: size must be at least 1 GiB",
                        i + 1
                    )));
                }
                let size = u64::from(d.size_gb) * GIB;
                let vol = format!("{base}-disk{}", i + 1);
                let mut disk = self.create_volume_disk(pool_name, &vol, size)?;
                disk.id = format!("disk{}", made.len());
                made.push(disk);
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(made),
            Err(e) => {
                self.delete_disks(&made);
                Err(e)
            }
        }
    }

    /// An empty data volume in `pool` (qcow2 in dir pools, raw in lvm), owned by the QEMU
    /// user, as a disk (its `id` is for the caller to set).
    pub fn create_volume_disk(&self, pool_name: &str, volume: &str, size: u64) -> ApiResult<Disk> {
        let pool = self.pool(pool_name)?;
        let free = pool.backend().capacity()?.free_bytes;
        if size > free {
            return Err(ApiError::ResourceExhausted(format!(
                "{:.1} GiB is more than pool {pool_name} has free ({:.1} GiB)",
                size as f64 / GIB as f64,
                free as f64 / GIB as f64
            )));
        }
        let format = match pool {
            Pool::Dir(_) => VolumeFormat::Qcow2,
            Pool::Lvm(_) => VolumeFormat::Raw,
        };
        let info = pool.backend().create_volume(volume, size, format)?;
        self.disk(&info, pool_name, "", 0, false)
    }

    /// Grow a volume no QEMU has open.
    pub fn resize_volume(&self, pool: &str, volume: &str, size: u64) -> ApiResult<()> {
        self.pool(pool)?.backend().resize(volume, size)?;
        Ok(())
    }

    fn disk(
        &self,
        info: &VolumeInfo,
        pool: &str,
        image: &str,
        index: usize,
        boot: bool,
    ) -> ApiResult<Disk> {
        // QEMU runs unprivileged: the volume becomes its own.
        if let Some(r) = &self.run_as
            && info.path.exists()
        {
            std::os::unix::fs::chown(&info.path, Some(r.uid), Some(r.gid))
                .map_err(|e| ApiError::Internal(format!("chown {}: {e}", info.path.display())))?;
        }
        Ok(Disk {
            id: format!("disk{index}"),
            path: info.path.clone(),
            format: match info.format {
                VolumeFormat::Qcow2 => DiskFormat::Qcow2,
                VolumeFormat::Raw => DiskFormat::Raw,
            },
            bootindex: boot.then_some(1),
            pool: pool.to_string(),
            volume: info.name.clone(),
            image: image.to_string(),
            size_bytes: info.virtual_size,
            port: None,
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
    ) -> ApiResult<Vec<pb::Volume>> {
        let mut out = Vec::new();
        for (name, (_, pool)) in &self.pools {
            for v in pool.backend().list()? {
                out.push(pb::Volume {
                    vm: owners
                        .get(&(name.clone(), v.name.clone()))
                        .cloned()
                        .unwrap_or_default(),
                    name: v.name,
                    node: self.node.clone(),
                    pool: name.clone(),
                    format: v.format.as_str().to_string(),
                    virtual_size: v.virtual_size,
                    actual_size: v.actual_size,
                    backing: v.backing.unwrap_or_default(),
                    path: v.path.display().to_string(),
                });
            }
        }
        Ok(out)
    }
}

/// The API's view of a VM's disks.
pub fn disks_to_pb(disks: &[Disk]) -> Vec<pb::VmDisk> {
    disks
        .iter()
        .enumerate()
        .map(|(i, d)| pb::VmDisk {
            volume: d.volume.clone(),
            pool: d.pool.clone(),
            device: format!("vd{}", (b'a' + (i as u8).min(25)) as char),
            size_bytes: d.size_bytes,
            format: d.format.as_str().to_string(),
            image: d.image.clone(),
        })
        .collect()
}

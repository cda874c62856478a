//! Disks of an existing VM: attach (hotplug when it runs), detach, resize. The spec on disk
//! follows every change, so a restart brings the same disks back.

use std::os::fd::OwnedFd;

use kcore_storage::StorageError;
use kcore_vmm::spec::Disk;
use kcore_vmm::vm::{Vm, VmState};

use super::view::{AttachDisk, VmView};
use super::{Node, blocking, write_spec};
use crate::error::{ApiError, ApiResult};

const GIB: u64 = 1 << 30;

/// Find a disk by volume name or guest device (vda, vdb, ...).
fn find_disk(disks: &[Disk], which: &str) -> ApiResult<(usize, Disk)> {
    let by_device = which
        .strip_prefix("vd")
        .filter(|s| s.len() == 1)
        .and_then(|s| s.bytes().next())
        .filter(u8::is_ascii_lowercase)
        .map(|b| (b - b'a') as usize);
    disks
        .iter()
        .enumerate()
        .find(|(i, d)| d.volume == which || by_device == Some(*i))
        .map(|(i, d)| (i, d.clone()))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no disk {which:?} on this VM (disks: {})",
                disks
                    .iter()
                    .enumerate()
                    .map(|(i, d)| format!("vd{} {}", (b'a' + i as u8) as char, d.volume))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

pub(super) fn live(vm: &Vm) -> bool {
    matches!(vm.status().state, VmState::Running | VmState::Paused)
}

impl Node {
    pub(super) fn save_spec(&self, vm: &Vm) -> ApiResult<()> {
        let spec = vm.spec();
        let dir = self.spec_dir(&spec.id);
        write_spec(&dir, &spec).map_err(|e| {
            ApiError::Internal(format!("cannot store spec in {}: {e}", dir.display()))
        })?;
        (self.notifier())(&spec.id);
        Ok(())
    }

    /// Add a disk to VM `id` (hot-plugged when it runs): a new volume or an existing one.
    pub async fn attach_disk(&self, id: &str, r: AttachDisk) -> ApiResult<VmView> {
        let vm = self.vm(id)?;
        let existing = matches!(r, AttachDisk::Existing { .. });
        if let AttachDisk::New { size_gib: 0, .. } = r {
            return Err(ApiError::InvalidArgument(
                "disk size must be at least 1 GiB".into(),
            ));
        }
        let state = vm.status().state;
        if !matches!(
            state,
            VmState::Running
                | VmState::Paused
                | VmState::Stopped
                | VmState::Crashed
                | VmState::Error
        ) {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {} is {state}: wait for it to settle",
                vm.name()
            )));
        }
        let spec = vm.spec();
        let port = if live(&vm) {
            vm.free_hotplug_port()?
        } else {
            None
        };
        let used: Vec<&str> = spec.disks.iter().map(|d| d.id.as_str()).collect();
        let disk_id = (0..)
            .map(|i| format!("disk{i}"))
            .find(|id| !used.contains(&id.as_str()))
            .unwrap_or_else(|| "disk-x".into());
        let base = spec
            .disks
            .first()
            .and_then(|d| d.volume.rsplit_once('-'))
            .map(|(b, _)| b.to_string());
        let base = base.unwrap_or_else(|| spec.name.clone());
        let volume = (1..)
            .map(|i| format!("{base}-disk{i}"))
            .find(|v| !spec.disks.iter().any(|d| &d.volume == v))
            .unwrap_or_else(|| format!("{base}-diskx"));
        let storage = self.storage.clone();
        let pool = r.pool().to_string();
        let mut disk = match r {
            AttachDisk::Existing { volume, .. } => {
                let in_use = self.volumes_in_use();
                blocking(move || storage.existing_disk(&pool, &volume, &in_use)).await?
            }
            AttachDisk::New { size_gib, .. } => {
                let size = u64::from(size_gib) * GIB;
                blocking(move || storage.create_volume_disk(&pool, &volume, size)).await?
            }
        };
        disk.id = disk_id;
        disk.port = port;
        // A new volume goes again if the attach fails; an existing one stays as it was.
        let undo = |e: ApiError| {
            if !existing {
                self.storage.delete_disks(std::slice::from_ref(&disk));
            }
            e
        };
        if live(&vm) {
            let fd = open_disk(&disk.path, true).map_err(undo)?;
            let backing = match &disk.backing {
                Some(b) => Some(open_disk(&b.path, false).map_err(undo)?),
                None => None,
            };
            if let Err(e) = vm.attach_disk(&disk, fd, backing).await {
                return Err(undo(e.into()));
            }
        }
        vm.update_spec(|s| s.disks.push(disk));
        self.save_spec(&vm)?;
        Ok(self.snapshot(&vm))
    }

    /// Remove disk `which` (volume name or device) from VM `id` (unplugged when it runs),
    /// deleting its volume unless `keep`.
    pub async fn detach_disk(&self, id: &str, which: &str, keep: bool) -> ApiResult<VmView> {
        let vm = self.vm(id)?;
        let (_, disk) = find_disk(&vm.spec().disks, which)?;
        if live(&vm) {
            vm.detach_disk(&disk).await?;
        } else if vm.status().state.is_active() {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {} is {}: wait for it to settle",
                vm.name(),
                vm.status().state
            )));
        }
        vm.update_spec(|s| s.disks.retain(|d| d.id != disk.id));
        self.save_spec(&vm)?;
        if !keep {
            let storage = self.storage.clone();
            blocking(move || {
                storage.delete_disks(std::slice::from_ref(&disk));
                Ok(())
            })
            .await?;
        }
        Ok(self.snapshot(&vm))
    }

    /// Grow disk `which` (volume name or device) of VM `id` to `size_gib` GiB (live when
    /// it runs).
    pub async fn resize_disk(&self, id: &str, which: &str, size_gib: u32) -> ApiResult<VmView> {
        let vm = self.vm(id)?;
        let (_, disk) = find_disk(&vm.spec().disks, which)?;
        let size = u64::from(size_gib) * GIB;
        if size < disk.size_bytes {
            return Err(StorageError::ShrinkRefused {
                name: disk.volume.clone(),
                current: disk.size_bytes,
                requested: size,
            }
            .into());
        }
        if size == disk.size_bytes {
            return Ok(self.snapshot(&vm));
        }
        // The one pool-space rule: the growth must fit in the pool's free space now.
        kcore_storage::check_size(size)?;
        let storage = self.storage.clone();
        let (pool, growth) = (disk.pool.clone(), size - disk.size_bytes);
        blocking(move || storage.check_room(&pool, growth)).await?;
        if live(&vm) {
            vm.resize_disk(&disk, size).await?;
        } else {
            let storage = self.storage.clone();
            let d = disk.clone();
            blocking(move || storage.resize_volume(&d.pool, &d.volume, size)).await?;
        }
        vm.update_spec(|s| {
            if let Some(d) = s.disks.iter_mut().find(|d| d.id == disk.id) {
                d.size_bytes = size;
            }
        });
        self.save_spec(&vm)?;
        Ok(self.snapshot(&vm))
    }
}

/// Open a volume (read-write) or its backing image (read-only), as root, for QEMU (which
/// cannot open it itself).
fn open_disk(path: &std::path::Path, write: bool) -> ApiResult<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| ApiError::Internal(format!("open {}: {e}", path.display())))
}

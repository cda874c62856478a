//! Defining and undefining VMs on this node, and the volumes they leave behind.
//!
//! A define checks the whole request first (spec, NICs, disks: pools, images, sizes, free
//! space, existing volumes), gives the VM its own QEMU uid, records its intent, makes its
//! volumes (and its cloud-init seed), then stores `spec.json` and drops the intent: a
//! failure at any step undoes the steps before it, and a daemon killed in between undoes it
//! at its next start ([`super::intent`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use kcore_types::VmName;
use kcore_vmm::spec::Firmware;

use super::intent::{self, Intent};
use super::view::{VmEvent, VmView};
use super::{Node, blocking, seed, uids, write_spec};
use crate::error::{ApiError, ApiResult};
use crate::model::VmRequest;

impl Node {
    /// Create the VM's disks, store its spec and start supervising it (stopped). On
    /// failure nothing is left: no volume, no spec, no uid taken.
    pub async fn define(&self, id: String, name: VmName, req: VmRequest) -> ApiResult<VmView> {
        self.define_as(id, name, req, false).await
    }

    /// [`Node::define`]; `migrating`: the VM comes here by live migration (its taps are
    /// named for this node, its directory marked until the switch-over).
    pub(super) async fn define_as(
        &self,
        id: String,
        name: VmName,
        req: VmRequest,
        migrating: bool,
    ) -> ApiResult<VmView> {
        self.defining
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone());
        let mut uid = None;
        let r = self.define_now(&id, &name, &req, &mut uid, migrating).await;
        self.defining
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        if let Some(u) = uid {
            self.reserved_uids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&u);
        }
        r
    }

    async fn define_now(
        &self,
        id: &str,
        name: &VmName,
        req: &VmRequest,
        uid: &mut Option<u32>,
        migrating: bool,
    ) -> ApiResult<VmView> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(ApiError::InvalidArgument(format!(
                "VM id {id:?} is not a uuid"
            )));
        }
        if self.read_vms().contains_key(id) {
            return Err(ApiError::AlreadyExists(format!(
                "VM {id} exists on this node"
            )));
        }
        // Everything is checked before anything is made: the request with this host's
        // limits (the node defends itself), its NICs, its disks.
        req.validate(Some(&self.cfg.limits))?;
        if let crate::model::Boot::Template(t) = &req.boot {
            return self.define_clone(id, name, req, t.as_str(), uid).await;
        }
        let mut spec = req.to_vm_spec(id, name);
        if spec.machine != kcore_vmm::spec::MachineType::Microvm {
            // A generation id the guest sees (when its firmware takes the device): a
            // template's clones get new ones.
            spec.vmgenid = Some(uuid::Uuid::new_v4().to_string());
        }
        spec.nics = self.nics_of(id, &req.nics)?;
        if migrating {
            for n in &mut spec.nics {
                n.tap = super::nics::migrated_tap_name(id, &n.id, &self.cfg.name)?;
            }
        }
        let storage = self.storage.clone();
        let in_use = self.volumes_in_use();
        let (vm, vid, r) = (name.to_string(), id.to_string(), req.clone());
        let plan = blocking(move || storage.plan_disks(&vm, &vid, &r, &in_use)).await?;
        spec.validate_planned(&self.cfg.limits, plan.len(), plan.len())?;
        *uid = self.allocate_uid()?;
        spec.qemu_uid = *uid;
        let run_as = self
            .cfg
            .host
            .run_as
            .as_ref()
            .map(|r| r.with_uid(spec.qemu_uid));
        for (what, file) in [("kernel", &spec.kernel), ("initrd", &spec.initrd)] {
            if let Some(f) = file {
                kcore_vmm::host::check_readable(what, f, run_as.as_ref())?;
            }
        }
        let dir = self.spec_dir(&spec.id);
        intent::write(
            &dir,
            &Intent {
                name: spec.name.clone(),
                disks: plan.clone(),
            },
        )
        .map_err(|e| {
            ApiError::Internal(format!(
                "cannot record the create in {}: {e}",
                dir.display()
            ))
        })?;
        let undo = |e: ApiError| {
            self.storage.delete_planned(&plan);
            let _ = std::fs::remove_dir_all(&dir);
            e
        };
        let storage = self.storage.clone();
        let p = plan.clone();
        spec.disks = blocking(move || storage.make_disks(&p))
            .await
            .map_err(undo)?;
        if spec.firmware == Firmware::Uefi {
            let (code, vars) = uefi_files(&dir).map_err(undo)?;
            spec.uefi_code = Some(code);
            spec.uefi_vars = Some(vars);
        }
        if let Some(ci) = req.cloud_init.as_ref().filter(|c| !c.is_empty()) {
            let (ci, d, vid, vname) = (ci.clone(), dir.clone(), id.to_string(), name.to_string());
            let path = blocking(move || seed::write(&d, &ci, &vid, &vname))
                .await
                .map_err(undo)?;
            spec.seed = Some(path);
        }
        if migrating {
            super::migration::mark_incoming(&dir).map_err(undo)?;
        }
        write_spec(&dir, &spec).map_err(|e| {
            undo(ApiError::Internal(format!(
                "cannot store spec in {}: {e}",
                dir.display()
            )))
        })?;
        intent::remove(&dir);
        let vm = self.new_vm(spec);
        self.write_vms().insert(vm.id().to_string(), vm.clone());
        Ok(self.snapshot(&vm))
    }

    /// A QEMU uid for a new VM: the lowest of the node's range that no VM here has, no
    /// define in flight took and no process runs as. None when VMs share the QEMU user.
    pub(super) fn allocate_uid(&self) -> ApiResult<Option<u32>> {
        let Some(range) = &self.cfg.qemu_uids else {
            return Ok(None);
        };
        if self.cfg.host.run_as.is_none() {
            return Ok(None);
        }
        let mut reserved = self
            .reserved_uids
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut used: HashSet<u32> = self
            .read_vms()
            .values()
            .filter_map(|vm| vm.spec().qemu_uid)
            .collect();
        used.extend(reserved.iter().copied());
        let uid = range.pick(&used, uids::has_process).ok_or_else(|| {
            ApiError::ResourceExhausted(format!(
                "all {} QEMU uids of node {} are taken: no room for another VM here \
                 (kcored --qemu-uids)",
                range.count, self.cfg.name
            ))
        })?;
        reserved.insert(uid);
        Ok(Some(uid))
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
        let _ = self.events.send(VmEvent::Undefined {
            id: id.to_string(),
            name: vm.spec().name.clone(),
            seq: self.next_seq(),
        });
        Ok(())
    }

    /// A new empty volume for no VM yet.
    pub async fn create_volume(
        &self,
        pool: String,
        volume: String,
        size_gb: u32,
    ) -> ApiResult<super::VolumeView> {
        let storage = self.storage.clone();
        blocking(move || storage.create_volume(&pool, &volume, size_gb)).await
    }

    /// Delete a volume that no VM here uses.
    pub async fn delete_volume(&self, pool: String, volume: String) -> ApiResult<()> {
        let in_use = self.volumes_in_use();
        let storage = self.storage.clone();
        blocking(move || storage.delete_volume(&pool, &volume, &in_use)).await
    }
}

/// OVMF code (shared, read-only) and a per-VM copy of the variable store (the daemon's
/// alone: QEMU gets it as a descriptor).
fn uefi_files(dir: &Path) -> ApiResult<(PathBuf, PathBuf)> {
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
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ApiError::Internal(format!("chmod {}: {e}", copy.display())))?;
    Ok((PathBuf::from(code), copy))
}

//! Memory-snapshot templates on this node: taking one from a running VM, listing and
//! deleting them, and (in [`clone`]) making and starting VMs from them.
//!
//! Taking a template of VM `v` (RUNNING, guest ready, q35 or pc, no NICs):
//!
//! 1. pause `v` and save its whole state (RAM and devices) into `full.mig` through a
//!    descriptor (`getfd` + `migrate fd:`), in a new directory `.NAME.new/`;
//! 2. while `v` is still paused (its disks flushed and idle), copy each disk into a
//!    standalone qcow2 there (`qemu-img convert -U`), and its seed and UEFI variables;
//! 3. resume `v`, or stop it (`--stop-source`);
//! 4. start a helper QEMU (the same devices, on those copies, as `v`'s QEMU uid) whose RAM
//!    is a memfd mapped shared, load `full.mig` into it, and save its device state alone
//!    (`x-ignore-shared`: the RAM is the memfd's) into `devices.mig`; kill the helper;
//! 5. write the memfd to `memory.ram`, record sizes and SHA-256s in `template.json`, make
//!    the disk copies read-only (0400), rename the directory to `NAME/`, and keep the
//!    memfd, sealed, for the clones.
//!
//! Any failure removes the new directory and kills the helper; a source paused by the
//! template is resumed.

pub mod clone;
pub mod files;

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use kcore_storage::VolumeFormat;
use kcore_types::TemplateName;
use kcore_vmm::spec::{Disk, DiskFormat, MachineType, VmSpec};
use kcore_vmm::timeline::Phase;
use kcore_vmm::vm::{Restore, StopMode, Vm, VmState};

use self::files::{DEVICES, MEMORY, META, TemplateMeta};
use super::{Node, blocking};
use crate::error::{ApiError, ApiResult};
use crate::model::TemplateView;

/// The node's templates: their directory, the sealed memory of each (made on first use),
/// and the names being taken now.
#[derive(Debug)]
pub struct Templates {
    root: PathBuf,
    memory: Mutex<HashMap<String, Arc<OwnedFd>>>,
    making: Mutex<HashSet<String>>,
}

/// In a template being made: the uuid of its helper QEMU.
const HELPER: &str = "helper.uuid";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io_err(op: &str, path: &Path, e: std::io::Error) -> ApiError {
    ApiError::Internal(format!("{op} {}: {e}", path.display()))
}

impl Templates {
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let root = data_dir.join("templates");
        std::fs::create_dir_all(&root)?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))?;
        // A template whose making was cut short by a daemon crash: its helper QEMU (if
        // it still runs) and its directory go.
        for e in std::fs::read_dir(&root)?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with('.') && n.ends_with(".new") {
                tracing::warn!(dir = %e.path().display(), "removing a template the daemon did not finish");
                if let Ok(id) = std::fs::read_to_string(e.path().join(HELPER))
                    && let Some(pid) = kcore_vmm::process::find_qemu(id.trim())
                {
                    tracing::warn!(pid, "killing the helper QEMU of an unfinished template");
                    let _ = kcore_vmm::process::kill_pid(pid, nix::sys::signal::Signal::SIGKILL);
                }
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(Templates {
            root,
            memory: Mutex::default(),
            making: Mutex::default(),
        })
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The template's sealed memory, copied from `memory.ram` and checked on first use.
    pub fn memory(&self, name: &str, meta: &TemplateMeta) -> ApiResult<OwnedFd> {
        let cached = lock(&self.memory).get(name).cloned();
        let fd = match cached {
            Some(fd) => fd,
            None => {
                let fd = Arc::new(files::load_memory(
                    name,
                    &self.dir(name).join(MEMORY),
                    &meta.memory,
                )?);
                lock(&self.memory).insert(name.to_string(), fd.clone());
                fd
            }
        };
        fd.try_clone()
            .map_err(|e| ApiError::Internal(format!("dup template memory: {e}")))
    }
}

/// Bytes a directory's files take on disk.
fn disk_usage(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

/// `spec`'s files as the template keeps them in `dir`.
fn template_spec(spec: &VmSpec, id: &str, name: &str, dir: &Path) -> VmSpec {
    VmSpec {
        id: id.to_string(),
        name: format!("template-{name}"),
        disks: spec
            .disks
            .iter()
            .map(|d| Disk {
                path: dir.join(format!("{}.qcow2", d.id)),
                format: DiskFormat::Qcow2,
                backing: None,
                pool: String::new(),
                volume: String::new(),
                image: String::new(),
                ..d.clone()
            })
            .collect(),
        seed: spec.seed.as_ref().map(|_| dir.join("seed.img")),
        uefi_vars: spec.uefi_vars.as_ref().map(|_| dir.join("OVMF_VARS.fd")),
        nics: Vec::new(),
        autostart: false,
        restore: None,
        ..spec.clone()
    }
}

fn volume_format(f: DiskFormat) -> VolumeFormat {
    match f {
        DiskFormat::Qcow2 => VolumeFormat::Qcow2,
        DiskFormat::Raw => VolumeFormat::Raw,
    }
}

impl Node {
    /// What may be taken: the source is RUNNING and ready, q35 or pc, without NICs, with
    /// disks in files.
    fn check_source(&self, name: &TemplateName, vm: &Vm) -> ApiResult<VmSpec> {
        let spec = vm.spec();
        let state = vm.status().state;
        if state != VmState::Running {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {} is {state}: a template is taken from a RUNNING VM",
                spec.name
            )));
        }
        if vm.timeline().at(Phase::GuestReady).is_none() {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {} is not ready yet (no guest_ready in kctl vm timeline): a template is \
                 taken of a ready guest",
                spec.name
            )));
        }
        if spec.machine == MachineType::Microvm {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {} is a microvm: templates need machine q35 or pc (a clone's NICs are \
                 hot-plugged, and microvm has no hotplug)",
                spec.name
            )));
        }
        if !spec.nics.is_empty() {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {} has NICs ({}): a template is taken without NICs, since every clone \
                 gets its own; detach them first (kctl vm nic detach {} NIC)",
                spec.name,
                spec.nics
                    .iter()
                    .map(|n| n.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                spec.name
            )));
        }
        if let Some(d) = spec.disks.iter().find(|d| d.path.starts_with("/dev/")) {
            return Err(ApiError::FailedPrecondition(format!(
                "disk {} of VM {} is a block device (pool {}): templates need disks in dir \
                 pools",
                d.id, spec.name, d.pool
            )));
        }
        if self.templates.dir(name).exists() {
            return Err(ApiError::AlreadyExists(format!(
                "template {name} exists on node {}",
                self.cfg.name
            )));
        }
        Ok(spec)
    }

    /// Take template `name` of VM `vm_id` (see the module); stop the VM after if
    /// `stop_source`, else it runs on.
    pub async fn create_template(
        &self,
        name: TemplateName,
        vm_id: &str,
        stop_source: bool,
    ) -> ApiResult<TemplateView> {
        let vm = self.vm(vm_id)?;
        let spec = self.check_source(&name, &vm)?;
        if !lock(&self.templates.making).insert(name.to_string()) {
            return Err(ApiError::AlreadyExists(format!(
                "template {name} is being taken on node {} now",
                self.cfg.name
            )));
        }
        let tmp = self.templates.root.join(format!(".{name}.new"));
        let r = self
            .take_template(&name, &vm, &spec, stop_source, &tmp)
            .await;
        lock(&self.templates.making).remove(name.as_str());
        if let Err(e) = r {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        self.template_view(&name)
    }

    async fn take_template(
        &self,
        name: &TemplateName,
        vm: &Vm,
        spec: &VmSpec,
        stop_source: bool,
        tmp: &Path,
    ) -> ApiResult<()> {
        let _ = std::fs::remove_dir_all(tmp);
        std::fs::create_dir(tmp).map_err(|e| io_err("create", tmp, e))?;
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("chmod", tmp, e))?;
        let id = uuid::Uuid::new_v4().to_string();
        let helper_spec = template_spec(spec, &id, name, tmp);
        std::fs::write(tmp.join(HELPER), &id).map_err(|e| io_err("write", &tmp.join(HELPER), e))?;

        // 1-3: the source's state and disks, while it is paused.
        vm.pause().await?;
        let saved = self.save_source(vm, spec, &helper_spec, tmp).await;
        let after = if saved.is_ok() && stop_source {
            vm.stop(StopMode {
                force: false,
                timeout: Duration::ZERO,
            })
            .await
        } else {
            vm.resume().await
        };
        saved?;
        if let Err(e) = after {
            tracing::warn!(vm = %spec.name, error = %e, "the template's source did not go on");
        }

        // 4: device state alone, from a helper whose RAM is a memfd.
        let size = u64::from(spec.memory_mib) << 20;
        let memfd = files::new_memfd(name, size)?;
        let helper = Vm::new(
            helper_spec.clone(),
            self.cfg.host.clone(),
            Arc::new(|_: &str| {}),
        );
        let converted = self.convert(&helper, &memfd, tmp).await;
        if let Err(e) = helper.destroy(true).await {
            tracing::warn!(template = %name, error = %e, "cannot remove the helper QEMU");
        }
        converted?;

        // 5: the files, checked and frozen; the directory in place; the memory kept.
        let (t, fd) = (tmp.to_path_buf(), memfd);
        let (memory, devices, fd) = blocking(move || {
            let m = files::save_memory(&fd, size, &t.join(MEMORY))?;
            let d = files::sum_file(&t.join(DEVICES))?;
            let _ = std::fs::remove_file(t.join("full.mig"));
            let _ = std::fs::remove_file(t.join(HELPER));
            Ok((m, d, fd))
        })
        .await?;
        for d in &helper_spec.disks {
            std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(0o400))
                .map_err(|e| io_err("chmod", &d.path, e))?;
        }
        let dir = self.templates.dir(name);
        let meta = TemplateMeta {
            name: name.to_string(),
            id: id.clone(),
            source_vm: spec.name.clone(),
            source_id: spec.id.clone(),
            created_at: crate::convert::now_rfc3339(),
            spec: VmSpec {
                qemu_uid: None,
                ..template_spec(spec, &id, name, &dir)
            },
            memory,
            devices,
        };
        let data =
            serde_json::to_vec_pretty(&meta).map_err(|e| ApiError::Internal(e.to_string()))?;
        crate::atomic_file::atomic_write(&tmp.join(META), &data, 0o600)
            .map_err(|e| io_err("write", &tmp.join(META), e))?;
        std::fs::rename(tmp, &dir).map_err(|e| io_err("rename", tmp, e))?;
        if let Ok(d) = std::fs::File::open(&self.templates.root) {
            let _ = d.sync_all();
        }
        files::seal(&fd)?;
        lock(&self.templates.memory).insert(name.to_string(), Arc::new(fd));
        tracing::info!(template = %name, vm = %spec.name, "template taken");
        Ok(())
    }

    /// Steps 1-2: the paused source's whole state into `full.mig`, its disks, seed and
    /// UEFI variables copied into `tmp` as `helper` names them.
    async fn save_source(
        &self,
        vm: &Vm,
        spec: &VmSpec,
        helper: &VmSpec,
        tmp: &Path,
    ) -> ApiResult<()> {
        let full = tmp.join("full.mig");
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&full)
            .map_err(|e| io_err("create", &full, e))?;
        vm.save_state(out.into(), false).await?;
        let mut copies: Vec<(PathBuf, PathBuf, Option<VolumeFormat>)> = spec
            .disks
            .iter()
            .zip(&helper.disks)
            .map(|(s, h)| {
                (
                    s.path.clone(),
                    h.path.clone(),
                    Some(volume_format(s.format)),
                )
            })
            .collect();
        for (from, to) in [
            (&spec.seed, &helper.seed),
            (&spec.uefi_vars, &helper.uefi_vars),
        ] {
            if let (Some(f), Some(t)) = (from, to) {
                copies.push((f.clone(), t.clone(), None));
            }
        }
        blocking(move || {
            for (from, to, fmt) in copies {
                match fmt {
                    Some(fmt) => kcore_storage::flatten_to_qcow2(
                        &kcore_storage::SystemRunner,
                        &from,
                        fmt,
                        &to,
                    )?,
                    None => {
                        std::fs::copy(&from, &to).map_err(|e| io_err("copy", &from, e))?;
                    }
                }
            }
            Ok(())
        })
        .await
    }

    /// Step 4: load `full.mig` into `helper` (RAM: `memfd`, shared) and save its devices.
    async fn convert(&self, helper: &Vm, memfd: &OwnedFd, tmp: &Path) -> ApiResult<()> {
        let full = tmp.join("full.mig");
        let state = std::fs::File::open(&full).map_err(|e| io_err("open", &full, e))?;
        let memory = memfd
            .try_clone()
            .map_err(|e| ApiError::Internal(format!("dup memfd: {e}")))?;
        helper
            .start_restored(
                SystemTime::now(),
                Restore {
                    memory,
                    shared: true,
                    state: state.into(),
                    ignore_shared: false,
                    resume: false,
                    ready_at_resume: false,
                },
            )
            .await?;
        let dev = tmp.join(DEVICES);
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dev)
            .map_err(|e| io_err("create", &dev, e))?;
        helper.save_state(out.into(), true).await?;
        Ok(())
    }

    /// Names of this node's VMs cloned from `name`.
    fn clones_of(&self, name: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .read_vms()
            .values()
            .filter(|vm| vm.spec().restore.is_some_and(|r| r.template == name))
            .map(|vm| vm.name().to_string())
            .collect();
        v.sort();
        v
    }

    fn template_view(&self, name: &str) -> ApiResult<TemplateView> {
        let dir = self.templates.dir(name);
        let data = std::fs::read(dir.join(META)).map_err(|e| io_err("read", &dir.join(META), e))?;
        let meta: TemplateMeta = serde_json::from_slice(&data)
            .map_err(|e| files::damaged(name, format!("{META} does not parse: {e}")))?;
        Ok(TemplateView {
            name: meta.name,
            node: self.cfg.name.clone(),
            source_vm: meta.source_vm,
            vcpus: meta.spec.vcpus,
            memory_mib: meta.spec.memory_mib,
            machine: meta.spec.machine,
            created_at: meta.created_at,
            size_bytes: disk_usage(&dir),
            disks: meta.spec.disks.len() as u32,
            clones: self.clones_of(name),
        })
    }

    /// Every template of this node (one whose `template.json` does not parse is logged and
    /// left out; it can still be deleted).
    pub fn list_templates(&self) -> ApiResult<Vec<TemplateView>> {
        let rd = std::fs::read_dir(&self.templates.root)
            .map_err(|e| io_err("read", &self.templates.root, e))?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with('.') {
                continue;
            }
            match self.template_view(&n) {
                Ok(v) => out.push(v),
                Err(err) => tracing::warn!(template = %n, error = %err, "unreadable template"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Delete template `name`, unless VMs here were cloned from it.
    pub fn delete_template(&self, name: &TemplateName) -> ApiResult<()> {
        let dir = self.templates.dir(name);
        if !dir.is_dir() || lock(&self.templates.making).contains(name.as_str()) {
            return Err(ApiError::NotFound(format!(
                "no template {name} on node {}",
                self.cfg.name
            )));
        }
        let clones = self.clones_of(name);
        if !clones.is_empty() {
            return Err(ApiError::FailedPrecondition(format!(
                "template {name} has clones on node {}: {}; delete them first (their disks \
                 read through its frozen base)",
                self.cfg.name,
                clones.join(", ")
            )));
        }
        lock(&self.templates.memory).remove(name.as_str());
        std::fs::remove_dir_all(&dir).map_err(|e| io_err("remove", &dir, e))?;
        tracing::info!(template = %name, "template deleted");
        Ok(())
    }
}

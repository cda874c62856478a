//! VMs made from a template: a clone's spec is the template's with its own id, name, QEMU
//! uid, vmgenid and NICs; its disks are qcow2 overlays (in its own VM directory) of the
//! template's frozen bases; its first start restores the template's memory and device state
//! instead of booting.

use std::path::Path;
use std::time::SystemTime;

use kcore_storage::VolumeFormat;
use kcore_types::VmName;
use kcore_vmm::argv::HOTPLUG_PORTS;
use kcore_vmm::spec::{Backing, Disk, DiskFormat, MachineType, RestoreFrom, VmSpec};
use kcore_vmm::vm::{Restore, Vm};

use super::files::{self, DEVICES, MEMORY};
use crate::error::{ApiError, ApiResult};
use crate::model::VmRequest;
use crate::node::intent::{self, Intent};
use crate::node::view::VmView;
use crate::node::{Node, write_spec};

impl Node {
    /// Define VM `id` as a clone of `template` (the request's boot). Nothing is left on
    /// failure.
    pub(in crate::node) async fn define_clone(
        &self,
        id: &str,
        name: &VmName,
        req: &VmRequest,
        template: &str,
        uid: &mut Option<u32>,
    ) -> ApiResult<VmView> {
        let tdir = self.templates.dir(template);
        if !tdir.join(files::META).is_file() {
            return Err(ApiError::NotFound(format!(
                "no template {template} on node {} (kctl template list)",
                self.cfg.name
            )));
        }
        let (t, d) = (template.to_string(), tdir.clone());
        let meta = crate::node::blocking(move || files::load_meta(&t, &d)).await?;
        let base = &meta.spec;
        if req.memory_mib != base.memory_mib || req.vcpus != base.vcpus {
            return Err(ApiError::InvalidArgument(format!(
                "template {template} is {} vCPU(s) and {} MiB: a clone has its template's \
                 vCPUs and memory (asked: {} vCPU(s), {} MiB)",
                base.vcpus, base.memory_mib, req.vcpus, req.memory_mib
            )));
        }
        if !req.disks.is_empty() || req.has_seed() {
            return Err(ApiError::InvalidArgument(format!(
                "a clone's disks and seed are its template's ({template}): attach more disks \
                 once it runs (kctl vm disk attach)"
            )));
        }
        let mut spec = VmSpec {
            id: id.to_string(),
            name: name.to_string(),
            qemu_uid: None,
            vmgenid: base
                .vmgenid
                .as_ref()
                .map(|_| uuid::Uuid::new_v4().to_string()),
            ready_pattern: req.ready_pattern.clone().or(base.ready_pattern.clone()),
            restart_policy: req.restart.unwrap_or_default(),
            autostart: req.autostart,
            restore: Some(RestoreFrom {
                template: template.to_string(),
                memory: tdir.join(MEMORY),
                devices: tdir.join(DEVICES),
                pending: true,
                await_ready_pattern: req.ready_pattern.is_some(),
            }),
            ..base.clone()
        };
        spec.nics = self.nics_of(id, &req.nics)?;
        place_nics(&mut spec)?;
        spec.validate(&self.cfg.limits)?;
        *uid = self.allocate_uid()?;
        spec.qemu_uid = *uid;
        let dir = self.spec_dir(id);
        intent::write(
            &dir,
            &Intent {
                name: spec.name.clone(),
                disks: Vec::new(),
            },
        )
        .map_err(|e| ApiError::Internal(format!("record the create in {}: {e}", dir.display())))?;
        let made = make_files(&mut spec, &dir, template).and_then(|()| {
            write_spec(&dir, &spec).map_err(|e| {
                ApiError::Internal(format!("cannot store spec in {}: {e}", dir.display()))
            })
        });
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        intent::remove(&dir);
        let vm = self.new_vm(spec);
        self.write_vms().insert(vm.id().to_string(), vm.clone());
        Ok(self.snapshot(&vm))
    }

    /// A clone's first start: the template's memory (sealed memfd) and device state. The
    /// restore is marked done (in spec.json) before QEMU starts, so no later start, a
    /// restart after a crash included, ever restores over disks that moved on.
    pub(in crate::node) async fn start_clone(
        &self,
        vm: &Vm,
        requested_at: SystemTime,
        from: &RestoreFrom,
    ) -> ApiResult<()> {
        let tdir = self.templates.dir(&from.template);
        let (t, d) = (from.template.clone(), tdir.clone());
        let meta = crate::node::blocking(move || files::load_meta(&t, &d)).await?;
        let templates = self.templates.clone();
        let (t, m) = (from.template.clone(), meta.clone());
        let memory = crate::node::blocking(move || templates.memory(&t, &m)).await?;
        let state = std::fs::File::open(tdir.join(DEVICES))
            .map_err(|e| files::damaged(&from.template, format!("{DEVICES}: {e}")))?;
        vm.update_spec(|s| {
            if let Some(r) = s.restore.as_mut() {
                r.pending = false;
            }
        });
        self.save_spec(vm)?;
        vm.start_restored(
            requested_at,
            Restore {
                memory,
                shared: false,
                state: state.into(),
                ignore_shared: true,
                resume: true,
                ready_at_resume: !from.await_ready_pattern,
            },
        )
        .await?;
        Ok(())
    }
}

/// Put a clone's NICs where hotplug can reach: q35's free hotplug ports (the template's
/// hot-added disks may hold some), pc's root bus.
fn place_nics(spec: &mut VmSpec) -> ApiResult<()> {
    if spec.machine != MachineType::Q35 {
        return Ok(());
    }
    let mut free = (0..HOTPLUG_PORTS)
        .map(|i| format!("hp{i}"))
        .filter(|p| !spec.disks.iter().any(|d| d.port.as_deref() == Some(p)));
    let count = spec.nics.len();
    for nic in &mut spec.nics {
        nic.port = Some(free.next().ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "{count} NICs do not fit the hotplug ports this clone has free (q35 has \
                 {HOTPLUG_PORTS}, shared with hot-added disks)"
            ))
        })?);
    }
    Ok(())
}

/// The clone's own files in `dir`: an overlay of each base disk, a copy of the UEFI
/// variables. The seed stays the template's (read-only).
fn make_files(spec: &mut VmSpec, dir: &Path, template: &str) -> ApiResult<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ApiError::Internal(format!("create {}: {e}", dir.display())))?;
    for d in &mut spec.disks {
        let base = d.path.clone();
        let overlay = dir.join(format!("{}.qcow2", d.id));
        let size = qcow2_size(&base)?;
        kcore_storage::qcow2::write_overlay(
            &overlay,
            &base.to_string_lossy(),
            VolumeFormat::Qcow2,
            size,
        )?;
        *d = Disk {
            path: overlay,
            format: DiskFormat::Qcow2,
            backing: Some(Backing {
                path: base,
                format: DiskFormat::Qcow2,
            }),
            volume: format!("{}-{}", spec.name, d.id),
            pool: String::new(),
            image: format!("template:{template}"),
            size_bytes: size,
            ..d.clone()
        };
    }
    if let Some(vars) = &spec.uefi_vars {
        let copy = dir.join("OVMF_VARS.fd");
        std::fs::copy(vars, &copy)
            .map_err(|e| ApiError::Internal(format!("copy {}: {e}", vars.display())))?;
        spec.uefi_vars = Some(copy);
    }
    Ok(())
}

/// The virtual size in a qcow2 header (bytes 24..32, big-endian, after the magic).
fn qcow2_size(path: &Path) -> ApiResult<u64> {
    use std::io::Read;
    let mut h = [0u8; 32];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut h))
        .map_err(|e| ApiError::Internal(format!("read {}: {e}", path.display())))?;
    if &h[..4] != b"QFI\xfb" {
        return Err(ApiError::FailedPrecondition(format!(
            "{} is not a qcow2 file: the template is damaged",
            path.display()
        )));
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&h[24..32]);
    Ok(u64::from_be_bytes(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(machine: &str, disk_ports: &[Option<&str>], nics: usize) -> VmSpec {
        let disks: Vec<_> = disk_ports
            .iter()
            .enumerate()
            .map(|(i, p)| serde_json::json!({"id": format!("disk{i}"), "path": "/x", "format": "qcow2", "port": p}))
            .collect();
        let nics: Vec<_> = (0..nics)
            .map(|i| serde_json::json!({"id": format!("net{i}"), "mac": format!("52:54:00:00:00:0{i}")}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "id": "c", "name": "c", "vcpus": 1, "memory_mib": 128, "machine": machine,
            "disks": disks, "nics": nics,
        }))
        .expect("a spec")
    }

    #[test]
    fn clone_nics_take_the_hotplug_ports_the_disks_left() {
        let mut s = spec("q35", &[None, Some("hp0")], 2);
        place_nics(&mut s).expect("room");
        let ports: Vec<_> = s.nics.iter().map(|n| n.port.as_deref()).collect();
        assert_eq!(ports, [Some("hp1"), Some("hp2")]);
        let mut s = spec("q35", &[Some("hp1")], 4);
        let e = place_nics(&mut s).expect_err("no room").to_string();
        assert!(e.contains("4 NICs do not fit"), "{e}");
        // pc hot-plugs onto its root bus.
        let mut s = spec("pc", &[], 3);
        place_nics(&mut s).expect("pc");
        assert!(s.nics.iter().all(|n| n.port.is_none()));
    }
}

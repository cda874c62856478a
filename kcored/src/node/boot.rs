//! What the node does once at start, around reattaching to its QEMUs: undo creates a
//! crash cut short, load the stored specs (bringing those of older versions up to date),
//! remove run dirs of VMs it does not know, and start the autostart VMs on the first start
//! since the host booted.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use kcore_vmm::spec::VmSpec;

use super::intent::{self, Found};
use super::{Node, blocking, write_spec};

/// In the run dir (a tmpfs, emptied by a reboot): present once this boot's autostart ran,
/// so a daemon restart does not start again what an operator stopped (as libvirt does).
const AUTOSTARTED: &str = "autostarted";

impl Node {
    /// Undo every create that a daemon crash cut short: its new volumes and its directory
    /// go. Stale intents beside a stored spec are dropped.
    pub(super) async fn undo_unfinished_creates(&self) {
        for dir in intent::vm_dirs(&self.cfg.data_dir.join("vms")) {
            match intent::inspect(&dir) {
                Found::Defined => intent::remove(&dir),
                Found::Unfinished(i) => {
                    if let Some(i) = i {
                        let storage = self.storage.clone();
                        let disks = i.disks.clone();
                        let _ = blocking(move || {
                            storage.delete_planned(&disks);
                            Ok(())
                        })
                        .await;
                        tracing::warn!(vm = %i.name, dir = %dir.display(), "undid a create the daemon did not finish");
                    }
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove");
                    }
                }
            }
        }
    }

    /// The stored specs, brought up to date: a QEMU uid of its own for each VM (specs from
    /// before per-VM uids), and the backing image of image-backed disks recorded (QEMU
    /// gets it as a descriptor). Changed specs are written back.
    pub(super) fn load_specs(&self) -> Vec<VmSpec> {
        let mut specs = read_specs(&self.cfg.data_dir.join("vms"));
        let range = self
            .cfg
            .qemu_uids
            .as_ref()
            .filter(|_| self.cfg.host.run_as.is_some());
        let mut used: HashSet<u32> = specs
            .iter()
            .filter_map(|s| s.qemu_uid.filter(|u| range.is_some_and(|r| r.contains(*u))))
            .collect();
        for spec in &mut specs {
            let mut changed = false;
            if let Some(r) = range
                && !spec.qemu_uid.is_some_and(|u| r.contains(u))
            {
                // A VM still running under its old uid keeps it until its next start.
                if let Some(uid) = r.pick(&used, |_| false) {
                    used.insert(uid);
                    spec.qemu_uid = Some(uid);
                    changed = true;
                }
            }
            for d in &mut spec.disks {
                if let Some(b) = self.storage.backing_of(d) {
                    d.backing = Some(b);
                    changed = true;
                }
            }
            if changed && let Err(e) = write_spec(&self.spec_dir(&spec.id), spec) {
                tracing::warn!(vm = %spec.name, error = %e, "cannot update spec.json");
            }
        }
        specs
    }

    pub(super) fn remove_leftover_run_dirs(&self) {
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

    /// On the first start since the host booted (no marker in the run dir, which a boot
    /// empties), start every autostart VM that is not running. The starts run in the
    /// background; the node serves meanwhile.
    pub(super) fn autostart_once_per_boot(self: &Arc<Self>) {
        let marker = self.cfg.run_dir.join(AUTOSTARTED);
        if marker.exists() {
            return;
        }
        if let Err(e) = std::fs::write(&marker, b"") {
            tracing::warn!(path = %marker.display(), error = %e, "cannot write the autostart marker");
        }
        let vms: Vec<_> = self
            .read_vms()
            .values()
            .filter(|vm| vm.spec().autostart && vm.status().state.can_start())
            .cloned()
            .collect();
        for vm in vms {
            tracing::info!(vm = %vm.name(), "autostart");
            // Through the node's start: a clone never started yet restores its template.
            let node = self.clone();
            tokio::spawn(async move {
                if let Err(e) = node.start_vm(vm.id(), SystemTime::now()).await {
                    tracing::warn!(vm = %vm.name(), error = %e, "autostart failed");
                }
            });
        }
    }
}

fn read_specs(dir: &Path) -> Vec<VmSpec> {
    let mut out = Vec::new();
    for d in intent::vm_dirs(dir) {
        let p = d.join("spec.json");
        match std::fs::read(&p).map(|b| serde_json::from_slice::<VmSpec>(&b)) {
            Ok(Ok(s)) => out.push(s),
            Ok(Err(err)) => tracing::error!(path = %p.display(), error = %err, "bad spec.json"),
            Err(err) => tracing::warn!(path = %p.display(), error = %err, "no spec.json"),
        }
    }
    out
}

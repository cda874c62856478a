//! Changing a defined VM in place (UpdateNodeVM): its vCPUs and memory while it is STOPPED,
//! its cloud-init seed (made again, or removed) and autostart at any time. The change is
//! checked whole first (the host's limits, the machine's room for the seed, the cloud-init
//! files), made under the VM's operation lock (no start runs meanwhile), and undone if the
//! spec cannot be stored: all of it or nothing.

use kcore_vmm::spec::check_resources;
use kcore_vmm::vm::VmState;

use super::view::VmView;
use super::{Node, blocking, seed};
use crate::error::ApiResult;
use crate::model::VmUpdate;
use crate::model::request::resize_needs_stop;

impl Node {
    /// Change VM `id` as `u` says; the new seed, if any, is what its next start gets.
    pub async fn update_vm(&self, id: &str, u: VmUpdate) -> ApiResult<VmView> {
        let vm = self.vm(id)?;
        let _ops = vm.lock_ops().await;
        let before = vm.spec();
        let state = vm.status().state;
        if u.resizes(before.vcpus, before.memory_mib) && state != VmState::Stopped {
            return Err(resize_needs_stop(vm.name(), &state.to_string()));
        }
        let vcpus = u.vcpus.unwrap_or(before.vcpus);
        let memory_mib = u.memory_mib.unwrap_or(before.memory_mib);
        check_resources(vcpus, memory_mib, Some(&self.cfg.limits))?;
        if let Some(c) = &u.cloud_init {
            c.validate()?;
            // A new seed is one more disk on the root bus.
            before.machine.check_device_count(
                before.disks.iter().filter(|d| d.port.is_none()).count()
                    + usize::from(!c.is_empty()),
                before.nics.iter().filter(|n| n.port.is_none()).count(),
            )?;
        }
        let dir = self.spec_dir(id);
        let old_seed = std::fs::read(dir.join(seed::FILE)).ok();
        let seed_path = match &u.cloud_init {
            None => before.seed.clone(),
            Some(c) if c.is_empty() => {
                seed::remove(&dir)?;
                None
            }
            Some(c) => {
                let (c, dir, id, name) =
                    (c.clone(), dir.clone(), id.to_string(), before.name.clone());
                Some(blocking(move || seed::write(&dir, &c, &id, &name)).await?)
            }
        };
        vm.update_spec(|s| {
            s.vcpus = vcpus;
            s.memory_mib = memory_mib;
            s.autostart = u.autostart.unwrap_or(s.autostart);
            s.seed = seed_path;
        });
        if let Err(e) = self.save_spec(&vm) {
            // Put back what was: the spec in memory and the seed on disk.
            vm.update_spec(|s| *s = before.clone());
            let restored = match &old_seed {
                Some(bytes) => {
                    crate::atomic_file::atomic_write(&dir.join(seed::FILE), bytes, 0o600)
                }
                None => std::fs::remove_file(dir.join(seed::FILE)).or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                }),
            };
            if let Err(r) = restored {
                tracing::error!(vm = %before.name, error = %r, "cannot put the old seed back");
            }
            return Err(e);
        }
        tracing::info!(vm = %before.name, vcpus, memory_mib, "updated");
        Ok(self.snapshot(&vm))
    }
}

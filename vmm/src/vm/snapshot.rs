//! Memory snapshots of a VM: saving a paused VM's state into a descriptor, and starting a
//! VM from a saved state instead of booting it (a template's clone, or the helper QEMU that
//! makes a template).
//!
//! A restoring QEMU starts with `-incoming defer`, its RAM in the file the owner hands
//! over (`memory-backend-file` on `/proc/self/fd/N`, shared or private), and without NICs;
//! once QMP is up the state is loaded (`migrate-incoming fd:`), the VM's NICs are
//! hot-plugged with their taps, and the vCPUs run. The timeline shows `restore_started`
//! and `state_loaded` between `qmp_ready` and `vcpus_running`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::SystemTime;

use super::{Vm, VmState, nics};
use crate::VmmError;
use crate::qmp::QmpClient;
use crate::timeline::Phase;

/// What a restoring start gets from the owner.
#[derive(Debug)]
pub struct Restore {
    /// The guest's RAM: a file (or memfd) of exactly the VM's memory size.
    pub memory: OwnedFd,
    /// Map it shared (writes reach the file: making a template) or private (a clone).
    pub shared: bool,
    /// The migration stream to load, opened for reading.
    pub state: OwnedFd,
    /// The stream was saved with `x-ignore-shared` (device state only, the RAM is the
    /// file's): the loading side needs the capability too.
    pub ignore_shared: bool,
    /// Run the guest once loaded (a clone); else leave it PAUSED (a template's helper).
    pub resume: bool,
    /// Record the guest ready as soon as it runs (the snapshot was of a ready guest),
    /// instead of waiting for the ready pattern on the console.
    pub ready_at_resume: bool,
}

/// A [`Restore`] once QEMU was spawned (it holds the memory file itself now).
pub(super) struct Loading {
    state: OwnedFd,
    ignore_shared: bool,
    resume: bool,
    pub(super) ready_at_resume: bool,
}

impl Restore {
    pub(super) fn after_spawn(self) -> Loading {
        Loading {
            state: self.state,
            ignore_shared: self.ignore_shared,
            resume: self.resume,
            ready_at_resume: self.ready_at_resume,
        }
    }
}

impl Vm {
    /// Start QEMU from a saved state (see the module). Allowed where [`Vm::start`] is.
    pub async fn start_restored(
        &self,
        requested_at: SystemTime,
        restore: Restore,
    ) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        self.operator_acts();
        self.inner
            .restarts
            .store(0, std::sync::atomic::Ordering::SeqCst);
        self.start_locked(requested_at, Some(restore)).await
    }

    /// Write the state of this PAUSED VM into `out`: devices, and RAM unless
    /// `ignore_shared` (then RAM in a shared file is left out). The VM stays paused; a
    /// [`Vm::resume`] runs it on.
    pub async fn save_state(&self, out: OwnedFd, ignore_shared: bool) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        if self.status().state != VmState::Paused {
            return Err(self.wrong_state("save its state (pause it first)"));
        }
        let qmp = self.qmp()?;
        qmp.set_migration_capability("x-ignore-shared", ignore_shared)
            .await?;
        let r = qmp.migrate_to_fd(out.as_fd()).await;
        drop(out);
        r?;
        tracing::info!(vm = %self.inner.name, ignore_shared, "state saved");
        Ok(())
    }

    /// The restore part of a launch: load the state, plug the NICs; whether to run on.
    pub(super) async fn load_state(
        &self,
        qmp: &QmpClient,
        r: Loading,
        taps: Vec<OwnedFd>,
    ) -> Result<bool, VmmError> {
        self.record(Phase::RestoreStarted, SystemTime::now());
        if r.ignore_shared {
            qmp.set_migration_capability("x-ignore-shared", true)
                .await?;
        }
        qmp.migrate_from_fd(r.state.as_fd()).await?;
        drop(r.state);
        self.record(Phase::StateLoaded, SystemTime::now());
        let spec = self.spec();
        for (nic, tap) in spec.nics.iter().zip(taps) {
            nics::plug_nic(qmp, spec.machine, nic, tap).await?;
        }
        Ok(r.resume)
    }
}

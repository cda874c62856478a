//! NICs: the taps come from the owner (the node creates them and attaches them to their
//! networks), through a [`NicOpener`] called at every launch, restarts included; QEMU gets
//! their file descriptors at spawn (`-netdev tap,fd=N`). A NIC added to a running VM gets its
//! tap through QMP (`getfd`, SCM_RIGHTS), then `netdev_add` and `device_add`; removal is
//! `device_del`, waiting for the guest to let go (`DEVICE_DELETED`), then `netdev_del`, which
//! closes QEMU's descriptor (a non-persistent tap then disappears).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;

use super::Vm;
use crate::VmmError;
use crate::spec::{MachineType, Nic, VmSpec};

/// Plug `nic` into a QEMU that gets `tap` (`getfd`, `netdev_add`, `device_add`), undoing
/// what got in when a step fails.
pub(super) async fn plug_nic(
    qmp: &crate::qmp::QmpClient,
    machine: MachineType,
    nic: &Nic,
    tap: OwnedFd,
) -> Result<(), VmmError> {
    let id = &nic.id;
    qmp.execute_with_fd("getfd", Some(json!({ "fdname": id })), tap.as_fd())
        .await?;
    drop(tap);
    let steps = async {
        qmp.execute(
            "netdev_add",
            Some(json!({ "type": "tap", "id": id, "fd": id, "vhost": false })),
        )
        .await?;
        let mut dev = json!({
            "driver": nic.model.device(machine),
            "netdev": id,
            "mac": nic.mac.to_string(),
            "id": id,
        });
        if let Some(port) = &nic.port {
            dev["bus"] = json!(port);
        }
        qmp.execute_with_timeout("device_add", Some(dev), Duration::from_secs(30))
            .await?;
        Ok::<(), VmmError>(())
    };
    if let Err(e) = steps.await {
        // Undo what got in; netdev_add took the fd if it succeeded.
        let _ = qmp.execute("netdev_del", Some(json!({ "id": id }))).await;
        let _ = qmp.execute("closefd", Some(json!({ "fdname": id }))).await;
        return Err(e);
    }
    Ok(())
}

/// Opens the taps of a spec's NICs for a start, one descriptor per NIC in `spec.nics`
/// order. Called for every launch (restart policy included), never while holding the tap
/// open afterwards: QEMU's copy keeps the tap alive.
pub type NicOpener =
    Arc<dyn Fn(VmSpec) -> BoxFuture<'static, Result<Vec<OwnedFd>, VmmError>> + Send + Sync>;

/// File descriptor number of the first NIC's tap inside QEMU (3 and 4 are QMP and console).
pub(super) const FIRST_NIC_FD: i32 = 5;

impl Vm {
    /// Set the function that provides the NICs' taps at each launch.
    pub fn set_nic_opener(&self, opener: NicOpener) {
        *self
            .inner
            .nic_opener
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(opener);
    }

    /// The taps for a launch of `spec` (none without NICs).
    pub(super) async fn open_nics(&self, spec: &VmSpec) -> Result<Vec<OwnedFd>, VmmError> {
        if spec.nics.is_empty() {
            return Ok(Vec::new());
        }
        let opener = self
            .inner
            .nic_opener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                VmmError::Network("no NIC provider: cannot start a VM with NICs".into())
            })?;
        let fds = opener(spec.clone()).await?;
        if fds.len() != spec.nics.len() {
            return Err(VmmError::Network(format!(
                "{} taps for {} NICs",
                fds.len(),
                spec.nics.len()
            )));
        }
        Ok(fds)
    }

    /// Plug `nic` (its `port` chosen with [`Vm::free_hotplug_port`]) into the running QEMU,
    /// which gets `tap`. The caller adds the NIC to the spec once this succeeds.
    pub async fn attach_nic(&self, nic: &Nic, tap: OwnedFd) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        let machine = self.hotplug_allowed("attach a NIC")?;
        plug_nic(&self.qmp()?, machine, nic, tap).await?;
        let id = &nic.id;
        tracing::info!(vm = %self.inner.name, nic = %id, mac = %nic.mac, "NIC attached");
        Ok(())
    }

    /// Unplug a NIC from the running QEMU and drop its netdev (closing the tap). The caller
    /// removes it from the spec.
    pub async fn detach_nic(&self, nic: &Nic) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        let machine = self.hotplug_allowed("detach a NIC")?;
        if machine == MachineType::Q35 && nic.port.is_none() {
            return Err(VmmError::InvalidSpec(format!(
                "NIC {} is on the q35 root bus, which cannot unplug: stop the VM to detach it",
                nic.id
            )));
        }
        let qmp = self.qmp()?;
        self.unplug_device(&nic.id, "NIC").await?;
        qmp.execute("netdev_del", Some(json!({ "id": nic.id })))
            .await?;
        tracing::info!(vm = %self.inner.name, nic = %nic.id, "NIC detached");
        Ok(())
    }
}

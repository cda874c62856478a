//! Disks added to and removed from a running VM through QMP. The daemon opens the volume
//! and hands QEMU the file descriptor (`add-fd`, SCM_RIGHTS), so an unprivileged QEMU never
//! needs to open a path itself: `blockdev-add` of `/dev/fdset/N`, then `device_add`. Removal
//! is `device_del`, then waiting for the guest to let go (`DEVICE_DELETED`), then
//! `blockdev-del` and `remove-fd`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Vm, VmState};
use crate::VmmError;
use crate::argv::HOTPLUG_PORTS;
use crate::spec::{Disk, MachineType};

/// How long the guest gets to release a disk after `device_del`.
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(30);

impl Vm {
    pub(super) fn hotplug_allowed(&self, op: &'static str) -> Result<MachineType, VmmError> {
        let state = self.status().state;
        if !matches!(state, VmState::Running | VmState::Paused) {
            return Err(VmmError::WrongState {
                op,
                state: state.to_string(),
            });
        }
        let machine = self.spec().machine;
        if machine == MachineType::Microvm {
            return Err(VmmError::InvalidSpec(
                "microvm has no hotplug: stop the VM to change its disks or NICs".into(),
            ));
        }
        Ok(machine)
    }

    /// A free hotplug port (q35), or None (pc: the root bus takes hotplug). Disks and NICs
    /// share the ports.
    pub fn free_hotplug_port(&self) -> Result<Option<String>, VmmError> {
        let spec = self.spec();
        if spec.machine != MachineType::Q35 {
            // pc: hot-added devices take a slot of the root bus.
            spec.machine.check_device_count(
                spec.disks.iter().filter(|d| d.port.is_none()).count() + 1,
                spec.nics.iter().filter(|n| n.port.is_none()).count(),
            )?;
            return Ok(None);
        }
        if spec.profile == crate::spec::Profile::Fast {
            return Err(VmmError::InvalidSpec(
                "this q35 VM has the fast profile, which has no hotplug ports: stop the VM \
                 to change its disks or NICs"
                    .into(),
            ));
        }
        let used = |p: &str| {
            spec.disks.iter().any(|d| d.port.as_deref() == Some(p))
                || spec.nics.iter().any(|n| n.port.as_deref() == Some(p))
        };
        (0..HOTPLUG_PORTS)
            .map(|i| format!("hp{i}"))
            .find(|p| !used(p))
            .map(Some)
            .ok_or_else(|| {
                VmmError::InvalidSpec(format!(
                    "all {HOTPLUG_PORTS} hotplug ports are in use: stop the VM to add more \
                     disks or NICs"
                ))
            })
    }

    /// `device_del id`, then wait for the guest to release it (`DEVICE_DELETED`).
    pub(super) async fn unplug_device(&self, id: &str, what: &str) -> Result<(), VmmError> {
        let qmp = self.qmp()?;
        let mut events = self.inner.events.subscribe();
        qmp.execute("device_del", Some(json!({ "id": id }))).await?;
        let deleted = tokio::time::timeout(UNPLUG_TIMEOUT, async {
            loop {
                match events.recv().await {
                    Ok((name, data))
                        if name == "DEVICE_DELETED"
                            && data.get("device").and_then(Value::as_str) == Some(id) =>
                    {
                        return true;
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return false,
                }
            }
        })
        .await;
        if !matches!(deleted, Ok(true)) {
            return Err(VmmError::QmpTimeout {
                command: format!("device_del {id} (the guest did not release the {what})"),
                timeout: UNPLUG_TIMEOUT,
            });
        }
        Ok(())
    }

    /// Plug `disk` (its `port` chosen with [`Vm::free_hotplug_port`]) into the running
    /// QEMU, which gets `fd` (opened read-write by the caller) and, for an overlay,
    /// `backing` (its image, opened read-only). The caller adds the disk to the spec once
    /// this succeeds.
    pub async fn attach_disk(
        &self,
        disk: &Disk,
        fd: OwnedFd,
        backing: Option<OwnedFd>,
    ) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        self.hotplug_allowed("attach a disk")?;
        let qmp = self.qmp()?;
        let id = &disk.id;
        let add_fd = async |fd: OwnedFd, opaque: &str| {
            let added = qmp
                .execute_with_fd("add-fd", Some(json!({ "opaque": opaque })), fd.as_fd())
                .await?;
            added
                .get("fdset-id")
                .and_then(Value::as_i64)
                .ok_or_else(|| {
                    VmmError::QmpProtocol(format!("add-fd returned no fdset-id: {added}"))
                })
        };
        let fdset = add_fd(fd, id).await?;
        let base = match (&disk.backing, backing) {
            (Some(b), Some(fd)) => match add_fd(fd, &format!("{id}-base")).await {
                Ok(set) => Some((b.format, set)),
                Err(e) => {
                    let _ = qmp
                        .execute("remove-fd", Some(json!({ "fdset-id": fdset })))
                        .await;
                    return Err(e);
                }
            },
            _ => None,
        };
        let driver = if disk.path.starts_with("/dev/") {
            "host_device"
        } else {
            "file"
        };
        let steps = async {
            if let Some((format, set)) = base {
                qmp.execute(
                    "blockdev-add",
                    Some(json!({
                        "driver": "file",
                        "filename": format!("/dev/fdset/{set}"),
                        "node-name": format!("{id}-base-file"),
                        "read-only": true,
                    })),
                )
                .await?;
                qmp.execute(
                    "blockdev-add",
                    Some(json!({
                        "driver": format.as_str(),
                        "file": format!("{id}-base-file"),
                        "node-name": format!("{id}-base"),
                        "read-only": true,
                    })),
                )
                .await?;
            }
            qmp.execute(
                "blockdev-add",
                Some(json!({
                    "driver": driver,
                    "filename": format!("/dev/fdset/{fdset}"),
                    "node-name": format!("{id}-file"),
                    "discard": "unmap",
                })),
            )
            .await?;
            let mut format = json!({
                "driver": disk.format.as_str(),
                "file": format!("{id}-file"),
                "node-name": id,
            });
            if base.is_some() {
                format["backing"] = json!(format!("{id}-base"));
            }
            qmp.execute("blockdev-add", Some(format)).await?;
            let mut dev = json!({ "driver": "virtio-blk-pci", "drive": id, "id": id });
            if let Some(port) = &disk.port {
                dev["bus"] = json!(port);
            }
            qmp.execute_with_timeout("device_add", Some(dev), Duration::from_secs(30))
                .await?;
            Ok::<(), VmmError>(())
        };
        if let Err(e) = steps.await {
            // Undo what got in; each step may not have happened.
            for node in [
                id.to_string(),
                format!("{id}-file"),
                format!("{id}-base"),
                format!("{id}-base-file"),
            ] {
                let _ = qmp
                    .execute("blockdev-del", Some(json!({ "node-name": node })))
                    .await;
            }
            for set in std::iter::once(fdset).chain(base.map(|(_, s)| s)) {
                let _ = qmp
                    .execute("remove-fd", Some(json!({ "fdset-id": set })))
                    .await;
            }
            return Err(e);
        }
        tracing::info!(vm = %self.inner.name, disk = %id, "disk attached");
        Ok(())
    }

    /// Unplug a disk from the running QEMU: `device_del`, wait for the guest to release it,
    /// then drop the block nodes and the fd. The caller removes it from the spec.
    pub async fn detach_disk(&self, disk: &Disk) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        let machine = self.hotplug_allowed("detach a disk")?;
        if machine == MachineType::Q35 && disk.port.is_none() {
            return Err(VmmError::InvalidSpec(format!(
                "{} is on the q35 root bus, which cannot unplug: stop the VM to detach it",
                disk.volume
            )));
        }
        let qmp = self.qmp()?;
        let id = &disk.id;
        self.unplug_device(id, "disk").await?;
        qmp.execute("blockdev-del", Some(json!({ "node-name": id })))
            .await?;
        qmp.execute(
            "blockdev-del",
            Some(json!({ "node-name": format!("{id}-file") })),
        )
        .await?;
        if disk.backing.is_some() {
            for node in [format!("{id}-base"), format!("{id}-base-file")] {
                if let Err(e) = qmp
                    .execute("blockdev-del", Some(json!({ "node-name": node })))
                    .await
                {
                    tracing::warn!(vm = %self.inner.name, error = %e, "cannot drop the backing node");
                }
            }
        }
        // The disk came through fdsets tagged with its id (and `<id>-base`): release them.
        if let Ok(sets) = qmp.execute("query-fdsets", None).await
            && let Some(sets) = sets.as_array()
        {
            for set in sets {
                let tags = [json!(id), json!(format!("{id}-base"))];
                let ours = set.get("fds").and_then(Value::as_array).is_some_and(|fds| {
                    fds.iter()
                        .any(|f| f.get("opaque").is_some_and(|o| tags.contains(o)))
                });
                if ours && let Some(n) = set.get("fdset-id") {
                    let _ = qmp
                        .execute("remove-fd", Some(json!({ "fdset-id": n })))
                        .await;
                }
            }
        }
        tracing::info!(vm = %self.inner.name, disk = %id, "disk detached");
        Ok(())
    }

    /// Grow a disk of the running QEMU (`block_resize`); the guest sees the new size.
    pub async fn resize_disk(&self, disk: &Disk, size_bytes: u64) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        let state = self.status().state;
        if !matches!(state, VmState::Running | VmState::Paused) {
            return Err(VmmError::WrongState {
                op: "resize a disk live",
                state: state.to_string(),
            });
        }
        self.qmp()?
            .execute(
                "block_resize",
                Some(json!({ "node-name": disk.id, "size": size_bytes })),
            )
            .await?;
        Ok(())
    }
}

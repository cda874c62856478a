//! Live migration on a node (docs/migration.md): as destination, define the VM with new
//! volumes and taps, start its QEMU waiting for the stream and serve its disks; as source,
//! mirror and send (the `vmm` crate's `migration` module does the QMP); the switch-over on
//! the destination; and the leftovers of a migration a daemon restart cut short.
//!
//! A destination keeps a marker (`<data-dir>/vms/<id>/incoming`) from its define to the
//! switch-over: a node that starts and finds one removes that VM (its QEMU, volumes and
//! taps), since before the switch the source is the running copy.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kcore_vmm::migration::{Incoming, MirrorDisk, Outgoing, Progress};
use kcore_vmm::spec::Firmware;
use tokio::sync::mpsc;

use super::Node;
use super::view::VmView;
use crate::error::{ApiError, ApiResult};
use crate::model::{IncomingPorts, PrepareIncoming, SendVm};

const INCOMING_MARKER: &str = "incoming";

/// Mark a VM's directory as the destination of a migration not yet switched over; the
/// marker holds a token of this migration.
pub(super) fn mark_incoming(dir: &Path) -> ApiResult<()> {
    let token = uuid::Uuid::new_v4().to_string();
    crate::atomic_file::atomic_write(&dir.join(INCOMING_MARKER), token.as_bytes(), 0o600)
        .map_err(|e| ApiError::Internal(format!("cannot mark {} incoming: {e}", dir.display())))
}

fn incoming_token(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(INCOMING_MARKER)).ok()
}

fn is_incoming(dir: &Path) -> bool {
    dir.join(INCOMING_MARKER).exists()
}

/// A free TCP port on `host` (the NBD server binds it right after).
fn free_port(host: &str) -> ApiResult<u16> {
    let addr = if host.contains(':') {
        format!("[{host}]:0")
    } else {
        format!("{host}:0")
    };
    std::net::TcpListener::bind(&addr)
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| {
            ApiError::FailedPrecondition(format!("cannot listen on {host} for the migration: {e}"))
        })
}

impl Node {
    /// Destination: make the VM here and wait for it. Nothing is left on failure; a VM
    /// not switched over a minute past the migration's timeout is removed (its controller
    /// went away).
    pub async fn prepare_migration(
        self: &Arc<Self>,
        p: PrepareIncoming,
    ) -> ApiResult<IncomingPorts> {
        if self.read_vms().contains_key(&p.id) {
            return Err(ApiError::AlreadyExists(format!(
                "VM {} is already on node {}",
                p.name, self.cfg.name
            )));
        }
        let id = p.id.clone();
        self.define_as(p.id.clone(), p.name.clone(), p.request.clone(), true)
            .await?;
        let r = self.listen_for(&p).await;
        if r.is_ok()
            && let Some(token) = incoming_token(&self.spec_dir(&id))
        {
            let (node, vm_id) = (Arc::downgrade(self), id.clone());
            let wait = Duration::from_secs(u64::from(p.timeout_secs.max(1)) + 60);
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let Some(node) = node.upgrade() else { return };
                if incoming_token(&node.spec_dir(&vm_id)).as_deref() == Some(token.as_str()) {
                    tracing::warn!(vm = %vm_id, "no switch-over came: removing the incoming VM");
                    if let Err(e) = node.undefine(&vm_id, true, false).await {
                        tracing::error!(vm = %vm_id, error = %e, "cannot remove an incoming VM");
                    }
                }
            });
        }
        if r.is_err()
            && let Err(e) = self.undefine(&id, true, false).await
        {
            tracing::error!(vm = %p.name, error = %e, "cannot remove a failed incoming VM");
        }
        r
    }

    async fn listen_for(&self, p: &PrepareIncoming) -> ApiResult<IncomingPorts> {
        let vm = self.vm(&p.id)?;
        if vm.spec().firmware == Firmware::Uefi {
            return Err(ApiError::FailedPrecondition(
                "UEFI VMs cannot be migrated yet (their variable store is not carried)".into(),
            ));
        }
        vm.start_incoming(SystemTime::now()).await?;
        let nbd = free_port(&p.listen_host)?;
        let migration = vm
            .listen_incoming(&Incoming {
                host: p.listen_host.clone(),
                nbd_port: nbd,
                tls: p.tls.clone(),
                client_dn: p.client_dn.clone(),
                disks: vm.spec().disks.iter().map(|d| d.id.clone()).collect(),
            })
            .await?;
        tracing::info!(vm = %p.name, migration, nbd, "waiting for an incoming migration");
        Ok(IncomingPorts { migration, nbd })
    }

    /// Source: send the VM; progress on the channel, then the outcome.
    pub fn migrate_out(
        self: &Arc<Self>,
        s: SendVm,
    ) -> ApiResult<mpsc::Receiver<ApiResult<Progress>>> {
        let vm = self.vm(&s.id)?;
        let spec = vm.spec();
        let out = Outgoing {
            host: s.host.clone(),
            migration_port: s.ports.migration,
            nbd_port: s.ports.nbd,
            tls: s.tls.clone(),
            disks: spec
                .disks
                .iter()
                .map(|d| MirrorDisk {
                    id: d.id.clone(),
                    top_only: d.backing.is_some(),
                })
                .collect(),
            max_downtime_ms: u64::from(s.max_downtime_ms),
            bandwidth: u64::from(s.bandwidth_mib) << 20,
            timeout: Duration::from_secs(u64::from(s.timeout_secs.max(1))),
        };
        let (tx, rx) = mpsc::channel(64);
        // Runs on its own task, rolling back on failure.
        tokio::spawn(async move {
            let progress_tx = tx.clone();
            // The controller dropping the stream (it gave up: the destination went away,
            // or it did) cancels: before the switch-over the source keeps the guest.
            let mut report = move |p: Progress| {
                let _ = progress_tx.try_send(Ok(p));
                !progress_tx.is_closed()
            };
            let r = vm.migrate_out(&out, &mut report).await;
            if let Err(e) = r {
                let _ = tx.send(Err(ApiError::from(e))).await;
            }
        });
        Ok(rx)
    }

    /// Destination: the switch-over. On failure the VM is removed here (the source runs
    /// on).
    pub async fn commit_migration(
        &self,
        id: &str,
        source_paused: Option<SystemTime>,
        mirrored: Option<SystemTime>,
    ) -> ApiResult<VmView> {
        let vm = self.vm(id)?;
        let dir = self.spec_dir(id);
        if !is_incoming(&dir) {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {id} is not waiting for a migration on node {}",
                self.cfg.name
            )));
        }
        let disks: Vec<String> = vm.spec().disks.iter().map(|d| d.id.clone()).collect();
        let r = vm
            .finish_incoming(&disks, source_paused, mirrored, Duration::from_secs(60))
            .await;
        match r {
            Ok(()) => {
                if let Err(e) = std::fs::remove_file(dir.join(INCOMING_MARKER)) {
                    tracing::warn!(vm = %vm.name(), error = %e, "cannot remove the incoming marker");
                }
                Ok(self.snapshot(&vm))
            }
            Err(e) => {
                if let Err(u) = self.undefine(id, true, false).await {
                    tracing::error!(vm = %vm.name(), error = %u, "cannot remove a failed incoming VM");
                }
                Err(e.into())
            }
        }
    }

    /// Source: the destination could not take over after a completed stream: run here.
    pub async fn resume_migrated(&self, id: &str) -> ApiResult<VmView> {
        let vm = self.vm(id)?;
        vm.resume_after_migration().await?;
        Ok(self.snapshot(&vm))
    }

    /// At start, after the VMs were recovered: a migration one of them was sending when
    /// the daemon died is cancelled (the guest runs on here).
    pub(super) async fn abandon_outgoing_migrations(&self) {
        let vms: Vec<kcore_vmm::vm::Vm> = self.read_vms().values().cloned().collect();
        for vm in vms {
            if !vm.status().state.is_active() || is_incoming(&self.spec_dir(vm.id())) {
                continue;
            }
            match vm.abandon_outgoing().await {
                Ok(true) => {
                    tracing::warn!(vm = %vm.name(), "cancelled a migration the daemon did not finish")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(vm = %vm.name(), error = %e, "cannot check for a migration")
                }
            }
        }
    }

    /// At start, after the VMs were recovered: a VM still marked incoming never got its
    /// switch-over, so the source runs it: remove it here.
    pub(super) async fn undo_unfinished_migrations(&self) {
        let ids: Vec<String> = self
            .read_vms()
            .keys()
            .filter(|id| is_incoming(&self.spec_dir(id)))
            .cloned()
            .collect();
        for id in ids {
            tracing::warn!(vm = %id, "removing the destination copy of a migration that did not finish");
            if let Err(e) = self.undefine(&id, true, false).await {
                tracing::error!(vm = %id, error = %e, "cannot remove an unfinished incoming VM");
            }
        }
    }
}

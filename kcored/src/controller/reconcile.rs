//! Reconciliation: the store (what the controller was asked for) against a node's
//! heartbeat (what the node has), on every heartbeat. It finishes what a controller crash
//! cut short and never destroys a VM a node runs:
//!
//! - a row still CREATING that the node never got (the crash came before DefineVM) is
//!   removed once it is older than a grace period and the node is not defining it;
//! - a VM created to run whose start was not confirmed is started;
//! - a row whose VM the node no longer has turns ERROR with the reason (and back when the
//!   node has it again; a delete cut short
//!   finishes with `kctl vm delete`);
//! - a VM the node has and the store does not (a lost or older database) is adopted, or,
//!   when its name is taken, reported once as an event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Controller;
use super::node_client::NodeClient;
use super::store::VmRow;
use crate::convert::now_rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::metrics::daemon::ReconcileAction;
use crate::model::{NodeVms, VmStatus};

/// How long a CREATING row may wait for its node to show the VM: covers a DefineVM still
/// running on the node when the controller that sent it died.
const CREATE_GRACE: Duration = Duration::from_secs(10);

fn lost_reason(node: &str) -> String {
    format!("node {node} does not have this VM")
}

fn older_than(rfc3339: &str, d: Duration) -> bool {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t.into()).ok())
        .is_some_and(|age| age > d)
}

impl Controller {
    /// Reconcile `node`'s VMs against its heartbeat. Errors are logged: the next
    /// heartbeat tries again.
    pub(super) fn reconcile(self: &Arc<Self>, node: &str, client: &NodeClient, hb: &NodeVms) {
        let started = std::time::Instant::now();
        if let Err(e) = self.try_reconcile(node, client, hb) {
            tracing::warn!(node, error = %e, "reconciliation failed");
        }
        self.metrics.reconciled(node, started.elapsed());
    }

    fn try_reconcile(
        self: &Arc<Self>,
        node: &str,
        client: &NodeClient,
        hb: &NodeVms,
    ) -> ApiResult<()> {
        let actual: HashMap<&str, VmStatus> = hb
            .vms
            .iter()
            .map(|(id, _, status)| (id.as_str(), *status))
            .collect();
        let rows = self.store.list_vms(Some(node))?;
        for row in &rows {
            // Busy here, or the store heard of it after the heartbeat was made.
            if self.is_busy(&row.id) || row.seq > hb.seq {
                continue;
            }
            match actual.get(row.id.as_str()) {
                None if row.status == VmStatus::Creating => {
                    if !hb.defining.contains(&row.id) && older_than(&row.created_at, CREATE_GRACE) {
                        self.store.delete_vm(&row.id)?;
                        self.metrics.action(node, ReconcileAction::Removed);
                        tracing::info!(vm = %row.name, node, "interrupted create removed");
                        self.emit(
                            "vm.deleted",
                            Some(row),
                            format!("the create was interrupted before node {node} had the VM"),
                        );
                    }
                }
                None => {
                    let reason = lost_reason(node);
                    if row.status != VmStatus::Error || row.status_reason != reason {
                        self.store.set_status(&row.id, VmStatus::Error, &reason)?;
                        self.metrics.action(node, ReconcileAction::Lost);
                        let r = VmRow {
                            status: VmStatus::Error,
                            ..row.clone()
                        };
                        self.emit("vm.status", Some(&r), reason);
                    }
                }
                Some(&status) => {
                    if row.pending_start {
                        self.finish_create(row, status)?;
                    }
                    if row.status == VmStatus::Error && row.status_reason == lost_reason(node) {
                        // The node has it again (its disk came back, say).
                        self.store.set_status(&row.id, status, "")?;
                        let r = VmRow {
                            status,
                            ..row.clone()
                        };
                        self.emit("vm.status", Some(&r), format!("node {node} has it again"));
                    }
                }
            }
        }
        let ids: Vec<String> = hb
            .vms
            .iter()
            .map(|(id, _, _)| id)
            .filter(|id| !rows.iter().any(|r| &r.id == *id) && !self.is_busy(id))
            .cloned()
            .collect();
        // A VM the store has on another node: the other end of a migration this
        // controller did not see to its end (it was restarted).
        let mut ids = ids;
        let mut elsewhere = Vec::new();
        ids.retain(|id| match self.store.get_vm(id) {
            Ok(Some(row)) if row.node != node => {
                elsewhere.push((row, actual.get(id.as_str()).copied()));
                false
            }
            _ => true,
        });
        for (row, here) in elsewhere {
            let (me, node, client) = (self.clone(), node.to_string(), client.clone());
            tokio::spawn(async move {
                if let Err(e) = me.settle_migration(&node, client, row, here).await {
                    tracing::warn!(node, error = %e, "cannot settle an unfinished migration");
                }
            });
        }
        if !ids.is_empty() {
            let (me, node, client) = (self.clone(), node.to_string(), client.clone());
            tokio::spawn(async move {
                if let Err(e) = me.adopt(&node, client, &ids).await {
                    tracing::warn!(node, error = %e, "cannot adopt VMs");
                }
            });
        }
        Ok(())
    }

    /// One running copy: `node` has `row`'s VM, which the store has on another node. A
    /// copy here that does not run is a migration's leftover (the destination before the
    /// switch-over, or the source after it): removed. A copy here that runs while the
    /// store's node has it paused is a switch-over the store missed: the VM is here now
    /// and the other copy goes.
    async fn settle_migration(
        self: &Arc<Self>,
        node: &str,
        mut client: NodeClient,
        row: VmRow,
        here: Option<VmStatus>,
    ) -> ApiResult<()> {
        if self.is_busy(&row.id) {
            return Ok(());
        }
        let _busy = self.busy(&row.id);
        if here != Some(VmStatus::Running) {
            client.undefine(&row.id, true, false).await?;
            self.emit(
                "vm.migrate",
                Some(&row),
                format!(
                    "removed the copy on node {node} left by a migration that did not finish                      (the VM is on node {})",
                    row.node
                ),
            );
            return Ok(());
        }
        if row.status == VmStatus::Paused || row.status == VmStatus::Unknown {
            let from = row.node.clone();
            self.store.move_vm(&row.id, node)?;
            if let Ok(mut src) = self.nodes.client(&from)
                && let Err(e) = src.undefine(&row.id, true, false).await
            {
                tracing::warn!(vm = %row.name, node = %from, error = %e, "cannot remove the source copy");
            }
            let moved = self.get_row(&row.id)?;
            self.emit(
                "vm.migrated",
                Some(&moved),
                format!("found running on node {node} after a migration from node {from}: it is here now"),
            );
        }
        Ok(())
    }

    /// A create that asked for a running VM and whose start was not confirmed.
    fn finish_create(self: &Arc<Self>, row: &VmRow, status: VmStatus) -> ApiResult<()> {
        match status {
            VmStatus::Stopped => {
                tracing::info!(vm = %row.name, "starting a VM whose create was interrupted");
                self.metrics.action(&row.node, ReconcileAction::Started);
                self.emit(
                    "vm.status",
                    Some(row),
                    "finishing an interrupted create: starting",
                );
                // Busy from now, so the next heartbeat does not start it twice.
                let busy = self.busy(&row.id);
                let (me, id) = (self.clone(), row.id.clone());
                tokio::spawn(async move {
                    if let Err(e) = me.start_on_node(&id, SystemTime::now(), false).await {
                        tracing::warn!(vm = %id, error = %e, "cannot finish interrupted create");
                    }
                    drop(busy);
                });
            }
            VmStatus::Creating | VmStatus::Starting => {}
            _ => self.store.clear_pending_start(&row.id)?,
        }
        Ok(())
    }

    /// Take VMs the node has and the store does not into the store.
    async fn adopt(&self, node: &str, mut client: NodeClient, ids: &[String]) -> ApiResult<()> {
        let vms = client.list_vms().await?;
        for nv in vms.into_iter().filter(|v| ids.contains(&v.id)) {
            if self.store.get_vm(&nv.id)?.is_some() || self.is_busy(&nv.id) {
                continue;
            }
            // ListNodeVMs describes every VM (its spec as a request).
            let Some(spec) = nv.defined.clone() else {
                continue;
            };
            let now = now_rfc3339();
            let row = VmRow {
                id: nv.id.clone(),
                name: nv.name.clone(),
                node: node.to_string(),
                spec,
                status: nv.status,
                status_reason: nv.reason.clone(),
                pid: nv.pid,
                timeline: nv.timeline.clone(),
                seq: nv.seq,
                created_at: now.clone(),
                updated_at: now,
                disks: nv.disks.clone(),
                nics: nv.nics.clone(),
                pending_start: false,
                tainted: false,
            };
            match self.store.insert_vm(&row) {
                Ok(()) => {
                    self.metrics.action(node, ReconcileAction::Adopted);
                    tracing::info!(vm = %row.name, node, "adopted a VM the store did not have");
                    self.emit(
                        "vm.adopted",
                        Some(&row),
                        format!("node {node} has it and the store did not"),
                    );
                }
                Err(ApiError::AlreadyExists(_)) => {
                    if self.report_once(&nv.id) {
                        self.metrics.action(node, ReconcileAction::Orphan);
                        tracing::warn!(vm = %nv.name, id = %nv.id, node, "orphan VM");
                        self.emit(
                            "vm.orphan",
                            Some(&row),
                            format!(
                                "node {node} has a VM {} (id {}) the store does not know, and \
                                 the name is taken",
                                nv.name, nv.id
                            ),
                        );
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_come_from_rfc3339_timestamps() {
        assert!(!older_than(&now_rfc3339(), Duration::from_secs(5)));
        assert!(older_than("2020-01-01T00:00:00Z", Duration::from_secs(5)));
        assert!(!older_than("garbage", Duration::from_secs(5)));
    }
}

//! Cluster operations behind the public API's thin handlers: listing, cordoning and
//! draining nodes, following events, issuing and renewing certificates, and who may
//! register a node.

use std::path::PathBuf;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::Controller;
use super::node_client::Stop;
use crate::auth::Role;
use crate::caller::{Caller, Requester};
use crate::error::{ApiError, ApiResult};
use crate::model::{DrainedVm, Event, Issued, NodeView, VmStats, VmStatus};

/// How to drain a node.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drain {
    /// Stop every VM instead of migrating (the old drain).
    pub stop_all: bool,
    /// Stops kill at once.
    pub force: bool,
    /// Seconds a stopped VM gets to power off (None: 30).
    pub timeout_secs: Option<u32>,
}

/// Events sent when `WatchEvents` asks for no history and does not follow.
const DEFAULT_HISTORY: u32 = 50;

impl Controller {
    /// What a VM uses (its node samples it): now, and the last `since_seconds` of history
    /// (0: the hour the node keeps). The VM is named as the store names it.
    pub async fn vm_stats(&self, vm: &str, since_seconds: u32) -> ApiResult<VmStats> {
        let row = self.get_row(vm)?;
        let mut client = self.nodes.client(&row.node)?;
        let ask = client.vm_stats(&row.id, since_seconds);
        let mut stats = tokio::time::timeout(std::time::Duration::from_secs(10), ask)
            .await
            .map_err(|_| {
                ApiError::Unavailable(format!("node {} did not answer in 10 s", row.node))
            })??;
        stats.vm = row.name;
        Ok(stats)
    }

    /// Every node: those followed, then those registered and not reached since this start
    /// (NOT_READY), by name.
    pub fn list_nodes(&self) -> ApiResult<Vec<NodeView>> {
        let mut nodes: Vec<NodeView> = self
            .nodes
            .all()
            .iter()
            .map(|l| self.node_view(l))
            .collect::<Result<_, _>>()?;
        for (name, address) in self.store.list_nodes()? {
            if !nodes.iter().any(|n| n.name == name) {
                nodes.push(NodeView {
                    name,
                    address,
                    ready: false,
                    ..Default::default()
                });
            }
        }
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(nodes)
    }

    /// Cordon (no new VMs placed there) or uncordon a node, for `by`.
    pub fn cordon(&self, by: &Requester, name: &str, on: bool) -> ApiResult<NodeView> {
        let link = self.nodes.get(name)?;
        self.store.set_cordoned(name, on)?;
        let kind = if on {
            "node.cordoned"
        } else {
            "node.uncordoned"
        };
        self.emit(kind, None, format!("{name} by {by}"));
        self.node_view(&link)
    }

    /// Cordon a node and empty it, for `by`: every running VM is live-migrated to the node
    /// a create would pick; a VM that cannot move (or every VM, with `stop_all`), and a
    /// paused one, is stopped. `each` hears of every VM as it is dealt with.
    pub async fn drain(
        self: &std::sync::Arc<Self>,
        by: &Requester,
        pki_dir: Option<PathBuf>,
        name: &str,
        how: Drain,
        each: &mut (dyn FnMut(&DrainedVm) + Send),
    ) -> ApiResult<(NodeView, Vec<DrainedVm>)> {
        let link = self.nodes.get(name)?;
        self.store.set_cordoned(name, true)?;
        let mut done = Vec::new();
        for vm in self.store.list_vms(Some(name))? {
            if !matches!(vm.status, VmStatus::Running | VmStatus::Paused) {
                continue;
            }
            let mut d = DrainedVm {
                name: vm.name.clone(),
                ..Default::default()
            };
            if vm.status == VmStatus::Paused {
                d.reason = "paused VMs are not migrated".into();
            } else if how.stop_all {
                d.reason = "asked to stop".into();
            } else {
                match self.migrate_away(by, pki_dir.clone(), &vm).await {
                    Ok((to, downtime_ms)) => {
                        d.action = "migrated".into();
                        d.to_node = to;
                        d.downtime_ms = downtime_ms;
                    }
                    Err(e) => d.reason = e.to_string(),
                }
            }
            if d.action.is_empty() {
                self.stop_vm(
                    by,
                    &vm.name,
                    Stop {
                        force: how.force,
                        timeout_secs: how.timeout_secs,
                    },
                    true,
                )
                .await?;
                d.action = "stopped".into();
            }
            each(&d);
            done.push(d);
        }
        let count = |a: &str| done.iter().filter(|d| d.action == a).count();
        self.emit(
            "node.drained",
            None,
            format!(
                "{name}: migrated {}, stopped {} by {by}",
                count("migrated"),
                count("stopped")
            ),
        );
        Ok((self.node_view(&link)?, done))
    }

    /// Migrate `vm` to where a create would go (its own node is cordoned by now).
    async fn migrate_away(
        self: &std::sync::Arc<Self>,
        by: &Requester,
        pki_dir: Option<PathBuf>,
        vm: &super::store::VmRow,
    ) -> ApiResult<(String, u64)> {
        let to = {
            let _place = self.place_lock.lock().await;
            self.schedule("", &vm.spec)?
        };
        let m = crate::model::MigrateVm {
            vm: vm.id.clone(),
            to: to.clone(),
            timeout_secs: 0,
            max_downtime_ms: 0,
            bandwidth_mib: 0,
        };
        let last = self.migrate_vm(by, pki_dir, m, &mut |_| {}).await?;
        Ok((to, last.downtime_ms))
    }

    /// The last `history` events (of `vm`, if given; 50 when neither history nor follow is
    /// asked), then, with `follow`, the new ones as they come. Subscribes before reading
    /// the history and skips live events already in it, so none is lost or doubled.
    pub fn watch_events(
        &self,
        vm: Option<String>,
        history: u32,
        follow: bool,
    ) -> ApiResult<mpsc::Receiver<Event>> {
        let history = match (history, follow) {
            (0, false) => DEFAULT_HISTORY,
            (n, _) => n,
        };
        let mut sub = self.subscribe();
        let past = if history > 0 {
            self.store.recent_events(history, vm.as_deref())?
        } else {
            Vec::new()
        };
        let last_id = past.last().map(|e| e.id).unwrap_or(0);
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            for ev in past {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            if !follow {
                return;
            }
            loop {
                match sub.recv().await {
                    Ok(ev) => {
                        if ev.id <= last_id || vm.as_ref().is_some_and(|v| *v != ev.vm_name) {
                            continue;
                        }
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "event watcher lagged");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Ok(rx)
    }

    /// A client certificate (admin or viewer) signed by the cluster CA in `pki_dir`, for
    /// `by`.
    pub async fn issue_certificate(
        &self,
        by: &Requester,
        pki_dir: Option<PathBuf>,
        name: &str,
        role: &str,
    ) -> ApiResult<Issued> {
        let role: Role = role.parse().map_err(ApiError::InvalidArgument)?;
        if !matches!(role, Role::Admin | Role::Viewer) {
            return Err(ApiError::InvalidArgument(format!(
                "role {role} cannot be issued: use viewer or admin (nodes join with a join token)"
            )));
        }
        let dir = pki_dir
            .ok_or_else(|| ApiError::FailedPrecondition("this controller has no PKI".into()))?;
        let who = name.to_string();
        let (cert_pem, key_pem, ca_pem) = tokio::task::spawn_blocking(move || {
            let (cert, key) = crate::pki::issue_client_cert(&dir, &who, role)?;
            let ca = crate::pki::Pki { dir }.read_string(crate::pki::CA_CERT)?;
            Ok::<_, crate::pki::PkiError>((cert, key, ca))
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
        self.record_issued(&cert_pem);
        tracing::info!(name, role = %role, "issued a client certificate");
        self.emit(
            "cert.issued",
            None,
            format!("issued a {role} certificate for {name} by {by}"),
        );
        Ok(Issued {
            cert_pem,
            key_pem,
            ca_pem,
        })
    }

    /// Register a node's address. A node (by its certificate) may register only itself,
    /// and not once it was removed; admins may register any.
    pub async fn register(
        self: &std::sync::Arc<Self>,
        by: &Requester,
        name: &str,
        address: &str,
    ) -> ApiResult<()> {
        if let Caller::Certificate { name: cn, role } = &by.caller
            && role.as_str() == Role::Node.as_str()
        {
            if cn != name {
                return Err(ApiError::PermissionDenied(format!(
                    "node {cn:?} may register only itself"
                )));
            }
            if self.store.is_removed(cn)? {
                return Err(ApiError::PermissionDenied(format!(
                    "node {cn} was removed from the cluster: join it again with a new token"
                )));
            }
        }
        let known = self.nodes.get(name).is_ok_and(|l| l.address == address);
        self.register_node(name, address).await?;
        if !known {
            self.emit_node("node.registered", name, format!("at {address} by {by}"));
        }
        Ok(())
    }

    /// A new certificate for the node that asks (by its current one), from its CSR.
    pub async fn renew_node_certificate(
        &self,
        by: &Requester,
        pki_dir: Option<PathBuf>,
        csr_pem: &str,
    ) -> ApiResult<Issued> {
        let name = match &by.caller {
            Caller::Certificate { name, role } if role.as_str() == Role::Node.as_str() => {
                name.clone()
            }
            _ => {
                return Err(ApiError::PermissionDenied(
                    "only a node renews a node certificate, with its own".into(),
                ));
            }
        };
        let gone = || ApiError::PermissionDenied(format!("node {name} is not in the cluster"));
        if self.nodes.get(&name).is_err() {
            return Err(gone());
        }
        let dir = pki_dir
            .ok_or_else(|| ApiError::FailedPrecondition("this controller has no PKI".into()))?;
        let resp =
            super::join::sign_for_node(dir, &name, csr_pem, self.tuning.node_cert_lifetime).await?;
        self.record_issued(&resp.cert_pem);
        // Removed while this was signed: the new certificate goes the way of the old ones.
        if self.nodes.get(&name).is_err() {
            if let Ok(info) = crate::pki::cert_info(resp.cert_pem.as_bytes()) {
                self.revoke(by, "", &info.serial, None)?;
            }
            return Err(gone());
        }
        tracing::info!(node = %name, "renewed a node certificate");
        self.emit_node(
            "node.cert_renewed",
            &name,
            format!("issued a new node certificate for {by}"),
        );
        Ok(resp)
    }
}

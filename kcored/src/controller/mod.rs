//! The controller: cluster state in SQLite, the public `KcoreService` API, and a link to
//! every node agent (over `NodeAgent`, even in-process for all-in-one) whose stream of VM
//! changes keeps the store up to date.

pub mod certs;
pub mod grpc;
pub mod join;
pub mod migration;
pub mod networks;
pub mod node_client;
pub mod nodes;
mod ops;
pub use ops::Drain;
pub mod reconcile;
pub mod schedule;
pub mod storage;
pub mod store;
pub mod templates;
mod update;
pub mod vms;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast;

use crate::convert::now_rfc3339;
use crate::error::ApiResult;
use crate::model::{Event, Timeline, VmReport};
use nodes::Nodes;
use store::Store;

/// How the controller hears from its nodes, and how much it places on them.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// How often each node sends a heartbeat on its stream.
    pub heartbeat: Duration,
    /// A node silent this long is NotReady and its VMs UNKNOWN.
    pub node_timeout: Duration,
    /// vCPUs placed on a node, as a multiple of its cpus.
    pub cpu_overcommit: f64,
    /// How long the certificates issued to nodes are valid (they renew with a third left).
    pub node_cert_lifetime: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            heartbeat: Duration::from_secs(2),
            node_timeout: Duration::from_secs(6),
            cpu_overcommit: 4.0,
            node_cert_lifetime: crate::pki::LEAF_LIFETIME,
        }
    }
}

/// The controller's state. Shared behind an `Arc`.
#[derive(Debug)]
pub struct Controller {
    pub store: Store,
    pub nodes: Nodes,
    events: broadcast::Sender<Event>,
    /// Serializes network create, delete and node sync.
    net_lock: tokio::sync::Mutex<()>,
    /// Held from placing a VM and picking its MACs until its row is in the store, so no
    /// two creates take the same room or the same MAC.
    place_lock: tokio::sync::Mutex<()>,
    /// VMs this process is creating or deleting right now: reconciliation leaves them be.
    busy: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    /// Orphans already reported, so each is reported once.
    reported: std::sync::Mutex<HashSet<String>>,
    pub tuning: Tuning,
    /// Serials of revoked certificates; the TLS listener refuses them.
    pub revoked: crate::auth::Revoked,
    /// How to dial registered nodes' NodeAgent over TCP: the cluster CA and the
    /// controller's client certificate. Set once the PKI is ready.
    pub node_tls: std::sync::OnceLock<tonic::transport::ClientTlsConfig>,
    /// Heartbeat and reconciliation figures.
    pub metrics: crate::metrics::daemon::ControllerMetrics,
}

impl Controller {
    pub fn new(store: Store, tuning: Tuning) -> Arc<Controller> {
        // Every slot is allocated (and touched) up front: ~200 B each.
        let (events, _) = broadcast::channel(1024);
        Arc::new(Controller {
            store,
            nodes: Nodes::default(),
            events,
            net_lock: tokio::sync::Mutex::new(()),
            place_lock: tokio::sync::Mutex::new(()),
            busy: Arc::default(),
            reported: std::sync::Mutex::default(),
            tuning,
            revoked: crate::auth::Revoked::default(),
            node_tls: std::sync::OnceLock::new(),
            metrics: Default::default(),
        })
    }

    /// Record an event and tell the watchers.
    pub fn emit(&self, kind: &str, vm: Option<&store::VmRow>, message: impl Into<String>) {
        self.publish(Event {
            id: 0,
            at: now_rfc3339(),
            kind: kind.to_string(),
            vm_id: vm.map(|v| v.id.clone()).unwrap_or_default(),
            vm_name: vm.map(|v| v.name.clone()).unwrap_or_default(),
            status: vm.map(|v| v.status).unwrap_or_default(),
            node: vm.map(|v| v.node.clone()).unwrap_or_default(),
            message: message.into(),
        });
    }

    /// Record an event about a node (ready, not ready).
    pub fn emit_node(&self, kind: &str, node: &str, message: impl Into<String>) {
        self.publish(Event {
            id: 0,
            at: now_rfc3339(),
            kind: kind.to_string(),
            node: node.to_string(),
            message: message.into(),
            ..Default::default()
        });
    }

    fn publish(&self, ev: Event) {
        match self.store.insert_event(ev) {
            Ok(ev) => {
                let _ = self.events.send(ev);
            }
            Err(e) => tracing::warn!(error = %e, "cannot store event"),
        }
    }

    /// Mark a VM as being created or deleted by this process until the guard drops
    /// (guards count: the VM is busy until the last one drops).
    pub fn busy(&self, id: &str) -> Busy {
        *self
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.to_string())
            .or_default() += 1;
        Busy {
            set: self.busy.clone(),
            id: id.to_string(),
        }
    }

    /// True the first time it is called for `id`.
    pub fn report_once(&self, id: &str) -> bool {
        self.reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_string())
    }

    pub fn is_busy(&self, id: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(id)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Take in the node's view of a VM: update the row, emit events for what changed.
    pub fn apply_node_vm(&self, nv: &VmReport) -> ApiResult<Option<store::VmRow>> {
        let Some((before, row)) = self.store.apply_node_vm(nv)? else {
            return Ok(None);
        };
        if before.status != row.status {
            self.emit("vm.status", Some(&row), row.status_reason.clone());
        }
        let ready = |t: &Option<Timeline>| {
            t.as_ref()
                .and_then(|t| t.guest_ready())
                .map(|(ms, at)| (ms, at.to_string()))
        };
        if let Some((ms, at)) = ready(&row.timeline)
            && ready(&before.timeline).map(|(_, a)| a) != Some(at)
        {
            self.emit(
                "vm.guest_ready",
                Some(&row),
                format!("guest ready {ms:.1} ms after the request"),
            );
        }
        Ok(Some(row))
    }
}

/// See [`Controller::busy`].
#[derive(Debug)]
pub struct Busy {
    set: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    id: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        // Counted: the create and its background start may both hold the same VM.
        if let Some(n) = set.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                set.remove(&self.id);
            }
        }
    }
}

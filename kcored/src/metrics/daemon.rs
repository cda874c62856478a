//! Figures the daemon counts as things happen: QMP commands (node), heartbeats and
//! reconciliation (controller). Everything else is read at scrape time by the collectors
//! ([`super::vm`], [`super::cluster`]).

use std::time::Duration;

use kcore_vmm::qmp::{QmpObserver, QmpOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// QMP commands the daemon sends (and common passthrough ones); any other is `other`, so
/// passthrough cannot grow the number of series.
const QMP_COMMANDS: &[&str] = &[
    "qmp_capabilities",
    "query-status",
    "query-blockstats",
    "cont",
    "stop",
    "system_powerdown",
    "system_reset",
    "quit",
    "device_add",
    "device_del",
    "blockdev-add",
    "blockdev-del",
    "block_resize",
    "add-fd",
    "remove-fd",
    "getfd",
    "closefd",
    "netdev_add",
    "netdev_del",
    "query-cpus-fast",
    "query-block",
    "query-version",
    "human-monitor-command",
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QmpLabels {
    command: String,
    outcome: &'static str,
}

fn qmp_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 30.0,
    ])
}

/// QMP command latency, by command and outcome.
#[derive(Debug, Clone)]
pub struct QmpMetrics {
    seconds: Family<QmpLabels, Histogram, fn() -> Histogram>,
}

impl Default for QmpMetrics {
    fn default() -> Self {
        QmpMetrics {
            seconds: Family::new_with_constructor(qmp_histogram as fn() -> Histogram),
        }
    }
}

impl QmpMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "kcore_qmp_command_duration_seconds",
            "Time from sending a QMP command to QEMU's reply, by command and outcome (ok, \
             error, timeout, closed)",
            self.seconds.clone(),
        );
    }

    /// The hook every QMP client of the node reports to.
    pub fn observer(&self) -> QmpObserver {
        let me = self.clone();
        QmpObserver(std::sync::Arc::new(
            move |command: &str, took: Duration, outcome: QmpOutcome| {
                let command = if QMP_COMMANDS.contains(&command) {
                    command
                } else {
                    "other"
                };
                me.seconds
                    .get_or_create(&QmpLabels {
                        command: command.to_string(),
                        outcome: outcome.as_str(),
                    })
                    .observe(took.as_secs_f64());
            },
        ))
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    node: String,
    action: &'static str,
}

/// What reconciliation did to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileAction {
    /// An interrupted create's row removed.
    Removed,
    /// A create's unconfirmed start started.
    Started,
    /// A row whose VM the node does not have turned ERROR.
    Lost,
    /// A VM the store did not have adopted.
    Adopted,
    /// A VM the store did not have, whose name is taken.
    Orphan,
}

impl ReconcileAction {
    fn as_str(self) -> &'static str {
        match self {
            ReconcileAction::Removed => "removed",
            ReconcileAction::Started => "started",
            ReconcileAction::Lost => "lost",
            ReconcileAction::Adopted => "adopted",
            ReconcileAction::Orphan => "orphan",
        }
    }
}

/// The controller's heartbeat and reconciliation figures.
#[derive(Debug, Clone)]
pub struct ControllerMetrics {
    heartbeats: Family<NodeLabels, Counter>,
    not_ready: Family<NodeLabels, Counter>,
    reconciles: Family<NodeLabels, Counter>,
    reconcile_seconds: Histogram,
    actions: Family<ActionLabels, Counter>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        ControllerMetrics {
            heartbeats: Family::default(),
            not_ready: Family::default(),
            reconciles: Family::default(),
            reconcile_seconds: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            actions: Family::default(),
        }
    }
}

impl ControllerMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "kcore_node_heartbeats",
            "Heartbeats the controller received, by node",
            self.heartbeats.clone(),
        );
        r.register(
            "kcore_node_not_ready",
            "Times a node turned NotReady (stream lost or heartbeats late), by node",
            self.not_ready.clone(),
        );
        r.register(
            "kcore_reconcile_runs",
            "Reconciliations of the store against a node's heartbeat, by node",
            self.reconciles.clone(),
        );
        r.register(
            "kcore_reconcile_duration_seconds",
            "Time one reconciliation took",
            self.reconcile_seconds.clone(),
        );
        r.register(
            "kcore_reconcile_actions",
            "What reconciliation changed, by node and action (removed, started, lost, \
             adopted, orphan)",
            self.actions.clone(),
        );
    }

    pub fn heartbeat(&self, node: &str) {
        self.heartbeats
            .get_or_create(&NodeLabels {
                node: node.to_string(),
            })
            .inc();
    }

    pub fn not_ready(&self, node: &str) {
        self.not_ready
            .get_or_create(&NodeLabels {
                node: node.to_string(),
            })
            .inc();
    }

    pub fn reconciled(&self, node: &str, took: Duration) {
        self.reconciles
            .get_or_create(&NodeLabels {
                node: node.to_string(),
            })
            .inc();
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    pub fn action(&self, node: &str, action: ReconcileAction) {
        self.actions
            .get_or_create(&ActionLabels {
                node: node.to_string(),
                action: action.as_str(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthrough_commands_do_not_make_series() {
        let m = QmpMetrics::default();
        let o = m.observer();
        (o.0)("query-status", Duration::from_millis(1), QmpOutcome::Ok);
        (o.0)("x-made-up-1", Duration::from_millis(1), QmpOutcome::Error);
        (o.0)("x-made-up-2", Duration::from_millis(1), QmpOutcome::Error);
        let mut r = Registry::default();
        m.register(&mut r);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).expect("encode");
        assert!(
            text.contains(r#"command="query-status",outcome="ok""#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"kcore_qmp_command_duration_seconds_count{command="other",outcome="error"} 2"#
            ),
            "{text}"
        );
        assert!(!text.contains("x-made-up"), "{text}");
    }
}

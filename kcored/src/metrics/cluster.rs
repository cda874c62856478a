//! The cluster as the controller knows it, at scrape time: each node's state, capacity and
//! allocation, its VMs by state (from the store), how long since its last heartbeat, and
//! its pools' space (as of that heartbeat).

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{Labels, encode_rows};
use crate::controller::Controller;
use crate::model::VmStatus;

/// Every state a VM row can have, each a series of `kcore_node_vms`.
const STATES: &[VmStatus] = &[
    VmStatus::Pending,
    VmStatus::Creating,
    VmStatus::Stopped,
    VmStatus::Starting,
    VmStatus::Running,
    VmStatus::Paused,
    VmStatus::Stopping,
    VmStatus::Crashed,
    VmStatus::Error,
    VmStatus::Unknown,
];

/// The controller's collector.
#[derive(Debug)]
pub struct ClusterCollector {
    ctl: Arc<Controller>,
}

impl ClusterCollector {
    pub fn new(ctl: Arc<Controller>) -> ClusterCollector {
        ClusterCollector { ctl }
    }
}

fn age_seconds(rfc3339: &str) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    let age = chrono::Utc::now().signed_duration_since(t);
    Some(age.num_milliseconds().max(0) as f64 / 1000.0)
}

impl Collector for ClusterCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let nodes = match self.ctl.list_nodes() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot list nodes");
                Vec::new()
            }
        };
        let mut by_state: HashMap<(String, VmStatus), i64> = HashMap::new();
        match self.ctl.store.list_vms(None) {
            Ok(vms) => {
                for v in vms {
                    *by_state.entry((v.node.clone(), v.status)).or_default() += 1;
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot list VMs"),
        }
        let node = |n: &str| -> Labels { vec![("node", n.to_string())] };
        let per_node = |f: &dyn Fn(&crate::model::NodeView) -> f64| {
            nodes
                .iter()
                .map(|n| (node(&n.name), ConstGauge::new(f(n))))
                .collect::<Vec<_>>()
        };
        type Figure<'a> = (&'a str, &'a str, &'a dyn Fn(&crate::model::NodeView) -> f64);
        let figures: [Figure<'_>; 7] = [
            (
                "kcore_node_ready",
                "1 when the node is Ready, 0 when NotReady",
                &|n| f64::from(u8::from(n.ready)),
            ),
            (
                "kcore_node_cordoned",
                "1 when no new VMs are placed on the node",
                &|n| f64::from(u8::from(n.cordoned)),
            ),
            ("kcore_node_cpus", "cpus the node offers to VMs", &|n| {
                f64::from(n.info.cpus)
            }),
            (
                "kcore_node_memory_bytes",
                "Memory the node offers to VMs",
                &|n| f64::from(n.info.memory_mb) * 1048576.0,
            ),
            (
                "kcore_node_allocated_vcpus",
                "vCPUs of the node's VMs that run",
                &|n| f64::from(n.allocated_vcpu),
            ),
            (
                "kcore_node_allocated_memory_bytes",
                "Memory of the node's VMs that run",
                &|n| f64::from(n.allocated_memory_mb) * 1048576.0,
            ),
            (
                "kcore_node_vm_count",
                "VMs on the node that run (counted in the allocation)",
                &|n| f64::from(n.vm_count),
            ),
        ];
        for (name, help, f) in figures {
            encode_rows(&mut enc, name, help, MetricType::Gauge, per_node(f))?;
        }
        encode_rows(
            &mut enc,
            "kcore_node_heartbeat_age_seconds",
            "Seconds since the node's last heartbeat",
            MetricType::Gauge,
            nodes
                .iter()
                .filter_map(|n| {
                    Some((
                        node(&n.name),
                        ConstGauge::new(age_seconds(&n.last_heartbeat)?),
                    ))
                })
                .collect(),
        )?;
        let mut names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        for (n, _) in by_state.keys() {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        encode_rows(
            &mut enc,
            "kcore_node_vms",
            "VMs the store places on the node, by state",
            MetricType::Gauge,
            names
                .iter()
                .flat_map(|n| {
                    STATES.iter().map(|s| {
                        (
                            vec![("node", n.clone()), ("state", s.as_str().to_string())],
                            ConstGauge::new(by_state.get(&(n.clone(), *s)).copied().unwrap_or(0)),
                        )
                    })
                })
                .collect(),
        )?;
        let pools = |f: fn(&crate::model::PoolView) -> u64| {
            nodes
                .iter()
                .flat_map(|n| {
                    n.pools.iter().map(move |p| {
                        (
                            vec![("node", n.name.clone()), ("pool", p.name.clone())],
                            ConstGauge::new(f(p) as f64),
                        )
                    })
                })
                .collect::<Vec<_>>()
        };
        encode_rows(
            &mut enc,
            "kcore_pool_capacity_bytes",
            "Size of a node's storage pool, as of its last heartbeat",
            MetricType::Gauge,
            pools(|p| p.total_bytes),
        )?;
        encode_rows(
            &mut enc,
            "kcore_pool_free_bytes",
            "Free space of a node's storage pool, as of its last heartbeat",
            MetricType::Gauge,
            pools(|p| p.free_bytes),
        )?;
        Ok(())
    }
}

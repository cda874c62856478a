//! The cluster at a glance: every node with its capacity and allocation, the VMs by state,
//! and what just happened.

use std::collections::BTreeMap;

use kcore_proto::v1 as pb;
use maud::{Markup, html};

use super::{STATUSES, event_list, mib, scroll, status_badge, status_name};
use crate::charts::bar;

/// The node's state as the API names it, without its prefix.
pub fn node_state(n: &pb::Node) -> &'static str {
    match pb::NodeState::try_from(n.state) {
        Ok(pb::NodeState::Ready) => "READY",
        Ok(pb::NodeState::NotReady) => "NOT_READY",
        _ => "UNKNOWN",
    }
}

/// A node's capacity and allocation as two bars.
pub fn node_bars(n: &pb::Node) -> Markup {
    html! {
        (bar(f64::from(n.allocated_vcpu), f64::from(n.cpus),
            &format!("{} / {} vCPUs", n.allocated_vcpu, n.cpus), "cpu"))
        (bar(f64::from(n.allocated_memory_mb), f64::from(n.memory_mb),
            &format!("{} / {}", mib(u64::from(n.allocated_memory_mb)), mib(u64::from(n.memory_mb))), "memory"))
    }
}

pub fn render(nodes: &[pb::Node], vms: &[pb::Vm], events: &[pb::Event]) -> Markup {
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for v in vms {
        *by_state.entry(status_name(v.status)).or_default() += 1;
    }
    html! {
        h1 { "Cluster" }
        section.cards #vm-states aria-label="VMs by state" {
            div.card.total { span.n data-count=(vms.len()) { (vms.len()) } span { "VMs" } }
            @for s in STATUSES {
                @if let Some(n) = by_state.get(s) {
                    a.card.(s.to_lowercase()) href=(format!("/vms?state={s}")) data-state=(s) {
                        span.n data-count=(n) { (n) } span { (s) }
                    }
                }
            }
        }
        h2 { "Nodes" }
        div.nodes #nodes {
            @for n in nodes {
                article.node data-node=(n.name) data-state=(node_state(n)) {
                    h3 {
                        a href=(format!("/vms?node={}", n.name)) { (n.name) } " "
                        span.badge.(node_state(n).to_lowercase()) { (node_state(n)) }
                        @if n.cordoned { " " span.badge.cordoned { "CORDONED" } }
                    }
                    (node_bars(n))
                    p.muted { (n.vm_count) " running VMs · " (n.accel) " · QEMU " (n.qemu_version) }
                }
            }
            @if nodes.is_empty() { p.muted { "no nodes" } }
        }
        h2 { "Recent events" }
        (event_list(events, "event-list"))
        p { a href="/events" { "all events, live" } }
    }
}

/// VMs of one node by state, as a small table (the nodes view).
pub fn states_table(vms: &[&pb::Vm]) -> Markup {
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for v in vms {
        *by_state.entry(status_name(v.status)).or_default() += 1;
    }
    scroll(html! {
        table.compact {
            tr { @for (s, _) in &by_state { th { (status_badge(status_value(s))) } } }
            tr { @for (_, n) in &by_state { td { (n) } } }
        }
    })
}

/// The number of a status name (`RUNNING`).
pub fn status_value(name: &str) -> i32 {
    pb::VmStatus::from_str_name(&format!("VM_STATUS_{name}"))
        .map(|s| s as i32)
        .unwrap_or(0)
}

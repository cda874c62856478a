//! The nodes: state, capacity and allocation, VMs by state, pools, networks, last heartbeat.

use kcore_proto::v1 as pb;
use maud::{Markup, html};

use super::overview::{node_bars, node_state, states_table};
use super::{bytes, scroll};
use crate::charts::bar;

pub fn render(nodes: &[pb::Node], vms: &[pb::Vm]) -> Markup {
    html! {
        h1 { "Nodes" }
        @for n in nodes {
            @let mine: Vec<&pb::Vm> = vms.iter().filter(|v| v.node == n.name).collect();
            article.node.wide data-node=(n.name) data-state=(node_state(n)) {
                h2 {
                    (n.name) " " span.badge.(node_state(n).to_lowercase()) { (node_state(n)) }
                    @if n.cordoned { " " span.badge.cordoned { "CORDONED" } }
                }
                (node_bars(n))
                table.kv {
                    tr { th { "Address" } td { code { (n.address) } } }
                    tr { th { "Host" } td { (n.hostname) } }
                    tr { th { "Capacity" } td.capacity data-cpus=(n.cpus) data-memory-mb=(n.memory_mb) {
                        (n.cpus) " cpus, " (super::mib(u64::from(n.memory_mb))) } }
                    tr { th { "Allocated" } td { (n.allocated_vcpu) " vCPUs, " (super::mib(u64::from(n.allocated_memory_mb))) " (" (n.vm_count) " running VMs)" } }
                    tr { th { "QEMU" } td { (n.qemu_version) " (" (n.accel) ")" } }
                    tr { th { "Version" } td { (n.version) } }
                    tr { th { "Last heartbeat" } td { (n.last_heartbeat) } }
                    tr { th { "Networks" } td { (n.networks.join(", ")) } }
                }
                h3 { "VMs by state" }
                @if mine.is_empty() { p.muted { "no VMs" } } @else {
                    (states_table(&mine))
                    p { a href=(format!("/vms?node={}", n.name)) { "list them" } }
                }
                h3 { "Pools" }
                (scroll(html! {
                    table {
                        thead { tr { th { "Pool" } th { "Type" } th { "Source" } th { "Free" } th { "Use" } } }
                        tbody { @for p in &n.pools {
                            tr { td { (p.name) } td { (p.r#type) } td { code { (p.source) } }
                                 td.num { (bytes(p.free_bytes)) " of " (bytes(p.total_bytes)) }
                                 td { (bar((p.total_bytes - p.free_bytes.min(p.total_bytes)) as f64, p.total_bytes as f64,
                                        &bytes(p.total_bytes - p.free_bytes.min(p.total_bytes)), "used")) } }
                        } }
                    }
                }))
            }
        }
        @if nodes.is_empty() { p.muted { "no nodes" } }
    }
}

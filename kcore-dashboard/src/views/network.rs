//! The networks: mode, subnet and gateway, bridge, how each node has them, leases.

use kcore_proto::v1 as pb;
use maud::{Markup, html};

use super::scroll;

fn mode(m: i32) -> &'static str {
    match pb::NetworkMode::try_from(m) {
        Ok(pb::NetworkMode::Nat) => "nat",
        Ok(pb::NetworkMode::Bridge) => "bridge",
        _ => "?",
    }
}

pub fn render(nets: &[pb::Network], vms: &[pb::Vm]) -> Markup {
    html! {
        h1 { "Networks" }
        @for n in nets {
            article.network data-network=(n.name) {
                h2 { (n.name) " " span.badge { (mode(n.mode)) } }
                table.kv {
                    @if !n.subnet.is_empty() { tr { th { "Subnet" } td { code { (n.subnet) } } } }
                    @if !n.gateway.is_empty() { tr { th { "Gateway" } td { code { (n.gateway) } } } }
                    tr { th { "Bridge" } td { code { (n.bridge) } } }
                    @if !n.uplink.is_empty() { tr { th { "Uplink" } td { code { (n.uplink) } } } }
                    tr { th { "VMs" } td { (n.vm_count) } }
                    tr { th { "Created" } td { (n.created_at) } }
                }
                h3 { "On the nodes" }
                (scroll(html! {
                    table {
                        thead { tr { th { "Node" } th { "Ready" } th { "dnsmasq" } th { "Leases" } th { "Message" } } }
                        tbody { @for o in &n.nodes {
                            tr data-node=(o.node) {
                                td { (o.node) } td { (if o.ready { "yes" } else { "no" }) }
                                td.num { @if o.dnsmasq_pid > 0 { (o.dnsmasq_pid) } }
                                td.num { (o.leases) } td { (o.message) }
                            }
                        } }
                    }
                }))
                h3 { "Addresses" }
                (scroll(html! {
                    table.leases {
                        thead { tr { th { "VM" } th { "NIC" } th { "MAC" } th { "Address" } } }
                        tbody {
                            @for v in vms { @for nic in v.nics.iter().filter(|x| x.network == n.name) {
                                tr { td { a href=(format!("/vms/{}", v.name)) { (v.name) } } td { (nic.id) }
                                     td { code { (nic.mac) } } td { (nic.ip) } }
                            } }
                        }
                    }
                }))
            }
        }
        @if nets.is_empty() { p.muted { "no networks" } }
    }
}

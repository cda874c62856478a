//! The VM list: filter by node and state, sort by any column; status, node, vCPUs,
//! memory, addresses and age.

use kcore_proto::v1 as pb;
use maud::{Markup, html};
use serde::Deserialize;

use super::{STATUSES, age, mib, scroll, status_badge, status_name};

/// The query string of `/vms`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub node: String,
    pub state: String,
    pub sort: String,
    pub order: String,
}

const COLUMNS: &[(&str, &str)] = &[
    ("name", "Name"),
    ("status", "Status"),
    ("node", "Node"),
    ("vcpu", "vCPU"),
    ("memory", "Memory"),
    ("addresses", "Addresses"),
    ("age", "Age"),
];

fn addresses(v: &pb::Vm) -> String {
    v.nics
        .iter()
        .filter(|n| !n.ip.is_empty())
        .map(|n| n.ip.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The VMs the query keeps, sorted as it asks (by name by default; `order=desc` reverses).
pub fn select<'a>(vms: &'a [pb::Vm], q: &ListQuery) -> Vec<&'a pb::Vm> {
    let mut out: Vec<&pb::Vm> = vms
        .iter()
        .filter(|v| q.node.is_empty() || v.node == q.node)
        .filter(|v| q.state.is_empty() || status_name(v.status).eq_ignore_ascii_case(&q.state))
        .collect();
    match q.sort.as_str() {
        "status" => out.sort_by(|a, b| {
            status_name(a.status)
                .cmp(status_name(b.status))
                .then(a.name.cmp(&b.name))
        }),
        "node" => out.sort_by(|a, b| a.node.cmp(&b.node).then(a.name.cmp(&b.name))),
        "vcpu" => out.sort_by(|a, b| a.vcpu.cmp(&b.vcpu).then(a.name.cmp(&b.name))),
        "memory" => out.sort_by(|a, b| a.memory_mb.cmp(&b.memory_mb).then(a.name.cmp(&b.name))),
        "addresses" => out.sort_by_key(|v| addresses(v)),
        // Oldest first: the creation time, ascending.
        "age" => out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name))),
        _ => out.sort_by(|a, b| a.name.cmp(&b.name)),
    }
    if q.order == "desc" {
        out.reverse();
    }
    out
}

fn sort_link(q: &ListQuery, col: &str) -> String {
    let current = if q.sort.is_empty() {
        "name"
    } else {
        q.sort.as_str()
    };
    let order = if current == col && q.order != "desc" {
        "desc"
    } else {
        "asc"
    };
    let mut s = format!("/vms?sort={col}&order={order}");
    if !q.node.is_empty() {
        s.push_str(&format!("&node={}", q.node));
    }
    if !q.state.is_empty() {
        s.push_str(&format!("&state={}", q.state));
    }
    s
}

pub fn render(
    vms: &[pb::Vm],
    nodes: &[pb::Node],
    q: &ListQuery,
    now: chrono::DateTime<chrono::Utc>,
) -> Markup {
    let shown = select(vms, q);
    html! {
        h1 { "VMs" }
        form.filters method="get" action="/vms" {
            label { "Node "
                select name="node" {
                    option value="" { "any" }
                    @for n in nodes { option value=(n.name) selected[q.node == n.name] { (n.name) } }
                }
            }
            label { "State "
                select name="state" {
                    option value="" { "any" }
                    @for s in STATUSES { option value=(s) selected[q.state.eq_ignore_ascii_case(s)] { (s) } }
                }
            }
            input type="hidden" name="sort" value=(q.sort);
            input type="hidden" name="order" value=(q.order);
            button type="submit" { "Filter" }
            span.muted #vm-count data-shown=(shown.len()) data-total=(vms.len()) {
                (shown.len()) " of " (vms.len()) " VMs"
            }
        }
        (scroll(html! {
            table.vms #vm-table {
                thead { tr {
                    @for (col, label) in COLUMNS {
                        th { a href=(sort_link(q, col)) { (label) } }
                    }
                } }
                tbody {
                    @for v in &shown {
                        tr data-vm=(v.name) data-status=(status_name(v.status)) {
                            td { a href=(format!("/vms/{}", v.name)) { (v.name) } }
                            td { (status_badge(v.status)) }
                            td { (v.node) }
                            td.num { (v.vcpu) }
                            td.num { (mib(u64::from(v.memory_mb))) }
                            td { (addresses(v)) }
                            td.num title=(v.created_at) { (age(&v.created_at, now)) }
                        }
                    }
                }
            }
        }))
        @if shown.is_empty() { p.muted { "no VMs match" } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, node: &str, status: pb::VmStatus, memory_mb: u32) -> pb::Vm {
        pb::Vm {
            name: name.into(),
            node: node.into(),
            status: status as i32,
            memory_mb,
            ..Default::default()
        }
    }

    #[test]
    fn filters_and_sorts() {
        let vms = [
            vm("b", "n1", pb::VmStatus::Running, 512),
            vm("a", "n2", pb::VmStatus::Stopped, 128),
            vm("c", "n1", pb::VmStatus::Running, 256),
        ];
        let names = |q: &ListQuery| {
            select(&vms, q)
                .iter()
                .map(|v| v.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&ListQuery::default()), ["a", "b", "c"]);
        let q = ListQuery {
            node: "n1".into(),
            sort: "memory".into(),
            order: "desc".into(),
            ..Default::default()
        };
        assert_eq!(names(&q), ["b", "c"]);
        let q = ListQuery {
            state: "stopped".into(),
            ..Default::default()
        };
        assert_eq!(names(&q), ["a"]);
    }
}

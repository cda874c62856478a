//! Nodes, events, networks and storage: list nodes, networks, pools, images, volumes and
//! recent events (read); import an image, cordon a node (write); drain a node (destructive).
//! The node and event tools are in [`nodes`], the network and storage ones in [`storage`];
//! this module lists them and holds the summary helpers they share.

mod nodes;
mod storage;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::access::Access;
use crate::registry::{Meta, ToolDef, tool};

use nodes::{cordon_node, drain_node, list_nodes, recent_events};
use storage::{import_image, list_images, list_networks, list_pools, list_templates, list_volumes};

/// No arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnNode {
    /// Only this node (default: every ready node).
    #[serde(default)]
    pub node: Option<String>,
}

/// Every node, event, network and storage tool.
pub fn tools() -> Vec<ToolDef> {
    vec![
        tool(
            Meta {
                name: "list_nodes",
                title: "List nodes",
                description: "The cluster's nodes with their state (READY or NOT_READY), \
                    capacity (CPUs, memory) and what is allocated to VMs, their pools with \
                    free space, networks, accelerator (kvm or tcg) and whether they are \
                    cordoned. Use it to pick a node or size a VM.",
                access: Access::Read,
                idempotent: true,
                open_world: false,
                methods: &["ListNodes"],
            },
            list_nodes,
        ),
        tool(
            Meta {
                name: "recent_events",
                title: "Recent events",
                description: "The latest events (oldest first): VMs created, started, \
                    stopped, crashed, ready, deleted, QMP commands, nodes ready or not; \
                    changes name who asked. Filter by VM to see what happened to it.",
                access: Access::Read,
                idempotent: true,
                open_world: false,
                methods: &["WatchEvents"],
            },
            recent_events,
        ),
        tool(
            Meta {
                name: "list_networks",
                title: "List networks",
                description: "The networks VMs can join (create_vm's networks): nat networks \
                    (kcore's bridge with DHCP, DNS and masquerade: guests lease an address) \
                    and bridge networks (a host bridge), with how they stand on each node.",
                access: Access::Read,
                idempotent: true,
                open_world: false,
                methods: &["ListNetworks"],
            },
            list_networks,
        ),
        tool(
            Meta {
                name: "list_pools",
                title: "List storage pools",
                description: "The storage pools of the nodes (dir or lvm) with their total and \
                    free bytes: where disks and images go.",
                access: Access::Read,
                idempotent: true,
                open_world: false,
                methods: &["ListPools"],
            },
            list_pools,
        ),
        tool(
            Meta {
                name: "list_images",
                title: "List images",
                description: "The disk images VMs can boot from (create_vm's image), per \
                    node and pool, with format, sizes and SHA-256.",
                access: Access::Read,
                idempotent: true,
                open_world: false,
                methods: &["ListImages"],
            },
            list_images,
        ),
        tool(
            Meta {
                name: "list_templates",
                title: "List templates",
                description: "The memory-snapshot templates (create_vm's template): node, \
                    source VM, the vCPUs and memory their clones have, size, clones.",
                access: Access::Read,
                idempotent: true,
                open_world: false,
                methods: &["ListTemplates"],
            },
            list_templates,
        ),
        tool(
            Meta {
                name: "list_volumes",
                title: "List volumes",
                description: "The volumes (disks) in the pools, with the VM using each (empty: \
                    none, e.g. kept by delete_vm keep_disks) and the image it was cloned from.",
                access: Access::Read,
                idempotent: true,
                open_world: false,
                methods: &["ListVolumes"],
            },
            list_volumes,
        ),
        tool(
            Meta {
                name: "import_image",
                title: "Import an image",
                description: "Import a qcow2 or raw disk image from an http(s) URL or a file \
                    on the node into a dir pool, checked (and with sha256 verified); returns \
                    once it is there. VMs then boot from it with create_vm's image.",
                access: Access::Write,
                idempotent: false,
                open_world: true,
                methods: &["ImportImage"],
            },
            import_image,
        ),
        tool(
            Meta {
                name: "cordon_node",
                title: "Cordon or uncordon a node",
                description: "Cordon a node (the scheduler places no new VMs there; its VMs \
                    keep running) or, with cordon false, uncordon it.",
                access: Access::Write,
                idempotent: true,
                open_world: false,
                methods: &["CordonNode"],
            },
            cordon_node,
        ),
        tool(
            Meta {
                name: "drain_node",
                title: "Drain a node",
                description: "Cordon a node and live-migrate every VM running on it to \
                    another node (placed as a create would be); VMs that cannot move, and \
                    paused ones, are stopped (gracefully, each given timeout_secs; with \
                    force, killed at once). Use it before maintenance.",
                access: Access::Destructive,
                idempotent: true,
                open_world: false,
                methods: &["DrainNode"],
            },
            drain_node,
        ),
    ]
}

pub(crate) fn lines(head: String, items: impl Iterator<Item = String>) -> String {
    let mut s = head;
    for line in items {
        s.push('\n');
        s.push_str(&line);
    }
    s
}

pub(crate) fn gib(bytes: u64) -> String {
    // Display only: a rounded GiB figure.
    let g = bytes as f64 / f64::from(1u32 << 30);
    format!("{g:.1} GiB")
}

pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    match n {
        0 => format!("no {many}"),
        1 => format!("1 {one}:"),
        n => format!("{n} {many}:"),
    }
}

pub(crate) fn opt(s: Option<String>) -> String {
    s.unwrap_or_default()
}

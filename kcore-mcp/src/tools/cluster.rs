//! Nodes, events, networks and storage: list nodes, networks, pools, images, volumes and
//! recent events (read); import an image, cordon a node (write); drain a node (destructive).

use std::time::Duration;

use kcore_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::TIMEOUT_CAP;
use crate::access::Access;
use crate::error::ToolError;
use crate::registry::{Ctx, Done, LONG, Meta, SHORT, ToolDef, tool};
use crate::views::{Event, Image, Network, Node, Pool, Volume};

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

#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeList {
    pub nodes: Vec<Node>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NetworkList {
    pub networks: Vec<Network>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PoolList {
    pub pools: Vec<Pool>,
}

/// A memory-snapshot template: clones of it start where its guest stood.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Template {
    pub name: String,
    /// The node it is on; its clones run there.
    pub node: String,
    /// The VM it was taken from.
    pub source_vm: String,
    /// vCPUs and memory (MiB) its clones have (create_vm must pass these).
    pub vcpu: u32,
    pub memory_mb: u32,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// Bytes its files take on the node.
    pub size_bytes: u64,
    /// Disks its clones get (overlays of its frozen bases).
    pub disks: u32,
    /// The VMs cloned from it (it cannot be deleted while there are any).
    pub clones: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TemplateList {
    pub templates: Vec<Template>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ImageList {
    pub images: Vec<Image>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct VolumeList {
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsArgs {
    /// Only events of this VM (by name).
    #[serde(default)]
    pub vm: Option<String>,
    /// How many of the latest events (default 30, at most 500).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EventList {
    /// Oldest first.
    pub events: Vec<Event>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportArgs {
    /// The image's name: 1-63 of a-z, 0-9 and '-'.
    pub name: String,
    /// An http(s) URL, or a path on the node (over the local socket: one kcore-mcp's user may
    /// read; over TLS: one under the node's --import-dir). qcow2 or raw.
    pub source: String,
    /// The expected SHA-256 (hex); the import fails if the file's differs.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The node to import on (required when there are several).
    #[serde(default)]
    pub node: Option<String>,
    /// The dir pool to keep it in (default "default").
    #[serde(default)]
    pub pool: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Imported {
    pub image: Image,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CordonArgs {
    /// The node's name.
    pub name: String,
    /// true: cordon (no new VMs placed there); false: uncordon.
    pub cordon: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainArgs {
    /// The node's name.
    pub name: String,
    /// Seconds each VM's guest gets to power off (default 30, at most 300).
    #[serde(default)]
    pub timeout_secs: Option<u32>,
    /// Kill the VMs at once instead.
    #[serde(default)]
    pub force: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Drained {
    pub node: Node,
    /// The VMs that were stopped.
    pub stopped: Vec<String>,
    /// The VMs that were live-migrated to other nodes.
    pub migrated: Vec<String>,
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

fn lines(head: String, items: impl Iterator<Item = String>) -> String {
    let mut s = head;
    for line in items {
        s.push('\n');
        s.push_str(&line);
    }
    s
}

fn gib(bytes: u64) -> String {
    // Display only: a rounded GiB figure.
    let g = bytes as f64 / f64::from(1u32 << 30);
    format!("{g:.1} GiB")
}

fn count(n: usize, one: &str, many: &str) -> String {
    match n {
        0 => format!("no {many}"),
        1 => format!("1 {one}:"),
        n => format!("{n} {many}:"),
    }
}

fn opt(s: Option<String>) -> String {
    s.unwrap_or_default()
}

async fn list_nodes(ctx: Ctx, _: NoArgs) -> Result<Done<NodeList>, ToolError> {
    let client = ctx.client().await?;
    let nodes = client
        .api()
        .list_nodes(ctx.req(pb::ListNodesRequest {}, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .nodes;
    let nodes: Vec<Node> = nodes.iter().map(Node::from).collect();
    let summary = lines(
        count(nodes.len(), "node", "nodes"),
        nodes.iter().map(|n| {
            format!(
                "{} {}{}: {} VMs, {} vCPU allocated on {} CPUs, {}/{} MiB memory allocated, {}",
                n.name,
                n.state,
                if n.cordoned { " (cordoned)" } else { "" },
                n.vm_count,
                n.allocated_vcpu,
                n.cpus,
                n.allocated_memory_mb,
                n.memory_mb,
                n.accel
            )
        }),
    );
    Ok(Done {
        summary,
        data: NodeList { nodes },
    })
}

async fn recent_events(ctx: Ctx, a: EventsArgs) -> Result<Done<EventList>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::WatchEventsRequest {
        follow: false,
        history: a.limit.unwrap_or(30).clamp(1, 500),
        vm: opt(a.vm),
    };
    let mut stream = client
        .api()
        .watch_events(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    let mut events = Vec::new();
    while let Some(e) = stream.message().await.map_err(|s| client.error(s))? {
        events.push(Event::from(&e));
    }
    let summary = lines(
        count(events.len(), "event", "events"),
        events.iter().map(Event::line),
    );
    Ok(Done {
        summary,
        data: EventList { events },
    })
}

async fn list_networks(ctx: Ctx, _: NoArgs) -> Result<Done<NetworkList>, ToolError> {
    let client = ctx.client().await?;
    let networks = client
        .api()
        .list_networks(ctx.req(pb::ListNetworksRequest {}, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .networks;
    let networks: Vec<Network> = networks.iter().map(Network::from).collect();
    let summary = lines(
        count(networks.len(), "network", "networks"),
        networks.iter().map(|n| {
            format!(
                "{} {} {} bridge {}, {} VMs",
                n.name, n.mode, n.subnet, n.bridge, n.vm_count
            )
        }),
    );
    Ok(Done {
        summary,
        data: NetworkList { networks },
    })
}

async fn list_pools(ctx: Ctx, a: OnNode) -> Result<Done<PoolList>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::ListPoolsRequest { node: opt(a.node) };
    let pools = client
        .api()
        .list_pools(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .pools;
    let pools: Vec<Pool> = pools.iter().map(Pool::from).collect();
    let summary = lines(
        count(pools.len(), "pool", "pools"),
        pools.iter().map(|p| {
            format!(
                "{} on {} ({} {}): {} free of {}",
                p.name,
                p.node,
                p.kind,
                p.source,
                gib(p.free_bytes),
                gib(p.total_bytes)
            )
        }),
    );
    Ok(Done {
        summary,
        data: PoolList { pools },
    })
}

async fn list_images(ctx: Ctx, a: OnNode) -> Result<Done<ImageList>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::ListImagesRequest { node: opt(a.node) };
    let images = client
        .api()
        .list_images(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .images;
    let images: Vec<Image> = images.iter().map(Image::from).collect();
    let summary = lines(
        count(images.len(), "image", "images"),
        images.iter().map(|i| {
            format!(
                "{} on {} in {}: {}, {}",
                i.name,
                i.node,
                i.pool,
                i.format,
                gib(i.virtual_size)
            )
        }),
    );
    Ok(Done {
        summary,
        data: ImageList { images },
    })
}

async fn list_templates(ctx: Ctx, a: OnNode) -> Result<Done<TemplateList>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::ListTemplatesRequest {
        node: a.node.unwrap_or_default(),
    };
    let templates: Vec<Template> = client
        .api()
        .list_templates(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .templates
        .into_iter()
        .map(|t| Template {
            name: t.name,
            node: t.node,
            source_vm: t.source_vm,
            vcpu: t.vcpu,
            memory_mb: t.memory_mb,
            created_at: t.created_at,
            size_bytes: t.size_bytes,
            disks: t.disks,
            clones: t.clones,
        })
        .collect();
    let summary = lines(
        count(templates.len(), "template", "templates"),
        templates.iter().map(|t| {
            format!(
                "{} on {}: {} vCPU, {} MiB, from {}, {} clone(s)",
                t.name,
                t.node,
                t.vcpu,
                t.memory_mb,
                t.source_vm,
                t.clones.len()
            )
        }),
    );
    Ok(Done {
        summary,
        data: TemplateList { templates },
    })
}

async fn list_volumes(ctx: Ctx, a: OnNode) -> Result<Done<VolumeList>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::ListVolumesRequest { node: opt(a.node) };
    let volumes = client
        .api()
        .list_volumes(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .volumes;
    let volumes: Vec<Volume> = volumes.iter().map(Volume::from).collect();
    let summary = lines(
        count(volumes.len(), "volume", "volumes"),
        volumes.iter().map(|v| {
            format!(
                "{} in {} on {}: {}, {}{}",
                v.name,
                v.pool,
                v.node,
                v.format,
                gib(v.virtual_size),
                if v.vm.is_empty() {
                    ", unused".to_string()
                } else {
                    format!(", disk of {}", v.vm)
                }
            )
        }),
    );
    Ok(Done {
        summary,
        data: VolumeList { volumes },
    })
}

async fn import_image(ctx: Ctx, a: ImportArgs) -> Result<Done<Imported>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::ImportImageRequest {
        name: a.name.clone(),
        source: a.source,
        sha256: opt(a.sha256),
        node: opt(a.node),
        pool: opt(a.pool),
        caller: None,
    };
    let mut stream = client
        .api()
        .import_image(ctx.req(req, Duration::from_secs(3600)))
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    while let Some(p) = stream.message().await.map_err(|s| client.error(s))? {
        if let Some(image) = p.image {
            let image = Image::from(&image);
            return Ok(Done {
                summary: format!(
                    "imported image {} on {} in pool {} ({}, {})",
                    image.name,
                    image.node,
                    image.pool,
                    image.format,
                    gib(image.virtual_size)
                ),
                data: Imported { image },
            });
        }
    }
    Err(ToolError::Api {
        code: tonic::Code::Unknown,
        message: format!("the import of {} ended without the image", a.name),
    })
}

async fn cordon_node(ctx: Ctx, a: CordonArgs) -> Result<Done<Node>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::CordonNodeRequest {
        name: a.name,
        cordon: a.cordon,
    };
    let node = client
        .api()
        .cordon_node(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    let node = Node::from(&node);
    Ok(Done {
        summary: format!(
            "node {} is {}",
            node.name,
            if node.cordoned {
                "cordoned"
            } else {
                "uncordoned"
            }
        ),
        data: node,
    })
}

async fn drain_node(ctx: Ctx, a: DrainArgs) -> Result<Done<Drained>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::DrainNodeRequest {
        name: a.name,
        timeout_secs: a.timeout_secs.unwrap_or(0).min(TIMEOUT_CAP),
        force: a.force.unwrap_or(false),
        stop: false,
    };
    let r = client
        .api()
        .drain_node(ctx.req(req, LONG))
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    let node = Node::from(&r.node.unwrap_or_default());
    Ok(Done {
        summary: format!(
            "drained node {}: stopped {}",
            node.name,
            if r.stopped.is_empty() {
                "nothing".to_string()
            } else {
                r.stopped.join(", ")
            }
        ),
        data: Drained {
            node,
            stopped: r.stopped,
            migrated: r.migrated,
        },
    })
}

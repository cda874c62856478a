//! The node and event tools: list nodes, recent events (read); cordon a node (write);
//! drain a node (destructive).

use kcore_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{NoArgs, count, lines, opt};
use crate::error::ToolError;
use crate::registry::{Ctx, Done, LONG, SHORT};
use crate::tools::TIMEOUT_CAP;
use crate::views::{Event, Node};

#[derive(Debug, Serialize, JsonSchema)]
pub struct NodeList {
    pub nodes: Vec<Node>,
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

pub(crate) async fn list_nodes(ctx: Ctx, _: NoArgs) -> Result<Done<NodeList>, ToolError> {
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

pub(crate) async fn recent_events(ctx: Ctx, a: EventsArgs) -> Result<Done<EventList>, ToolError> {
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

pub(crate) async fn cordon_node(ctx: Ctx, a: CordonArgs) -> Result<Done<Node>, ToolError> {
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

pub(crate) async fn drain_node(ctx: Ctx, a: DrainArgs) -> Result<Done<Drained>, ToolError> {
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

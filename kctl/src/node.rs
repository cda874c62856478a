//! `kctl node list|get`.

use anyhow::Result;
use kcore_proto::v1::{CreateJoinTokenRequest, GetNodeStatusRequest, ListNodesRequest, Node};

use crate::endpoint::Client;
use crate::output::{self, Format};

/// `kctl node list`.
pub async fn list(client: &Client, format: Format) -> Result<()> {
    let response = client
        .api()
        .list_nodes(ListNodesRequest {})
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &response);
    }
    output::print_table(&table(&response.nodes))
}

/// `kctl node get`.
pub async fn get(client: &Client, format: Format, name: String) -> Result<()> {
    let node = client
        .api()
        .get_node_status(GetNodeStatusRequest { name })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &node);
    }
    output::write_stdout(describe(&node).as_bytes())
}

/// READY, NOT_READY, with ",CORDONED" when no new VMs go there.
fn state_text(node: &kcore_proto::v1::Node) -> String {
    let state = output::node_state(node.state).to_string();
    if node.cordoned {
        format!("{state},CORDONED")
    } else {
        state
    }
}

/// `kctl node cordon | uncordon`.
pub async fn cordon(client: &Client, format: Format, name: String, cordon: bool) -> Result<()> {
    let node = client
        .api()
        .cordon_node(kcore_proto::v1::CordonNodeRequest { name, cordon })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &node);
    }
    let verb = if cordon { "Cordoned" } else { "Uncordoned" };
    output::write_stdout(format!("{verb} node {}\n", node.name).as_bytes())
}

/// `kctl node drain`: one line per VM (migrated where, or stopped and why), then the
/// summary.
pub async fn drain(
    client: &Client,
    format: Format,
    name: String,
    timeout: Option<u32>,
    force: bool,
    stop: bool,
) -> Result<()> {
    let reply = client
        .api()
        .drain_node(kcore_proto::v1::DrainNodeRequest {
            name,
            timeout_secs: timeout.unwrap_or(0),
            force,
            stop,
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &reply);
    }
    let node = reply.node.map(|n| n.name).unwrap_or_default();
    let mut out = String::new();
    for vm in &reply.vms {
        match vm.action.as_str() {
            "migrated" => {
                out += &format!(
                    "{}: migrated to {} (downtime {} ms)\n",
                    vm.name, vm.to_node, vm.downtime_ms
                )
            }
            a => out += &format!("{}: {a} ({})\n", vm.name, vm.reason),
        }
    }
    let summary = if reply.vms.is_empty() {
        "no VM was running".to_string()
    } else {
        format!(
            "migrated {}, stopped {}",
            reply.migrated.len(),
            reply.stopped.len()
        )
    };
    out += &format!("Drained node {node}: cordoned, {summary}\n");
    output::write_stdout(out.as_bytes())
}

/// `kctl node remove`.
pub async fn remove(client: &Client, format: Format, name: String) -> Result<()> {
    let reply = client
        .api()
        .remove_node(kcore_proto::v1::RemoveNodeRequest { name: name.clone() })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &reply);
    }
    output::write_stdout(
        format!(
            "Removed node {name}: {} certificate(s) revoked; it may not register again \
             until it joins with a new token\n",
            reply.revoked.len()
        )
        .as_bytes(),
    )
}

/// `kctl node join-token`: the token alone on stdout (table mode), or the object.
pub async fn join_token(client: &Client, format: Format, ttl: Option<u32>) -> Result<()> {
    let token = client
        .api()
        .create_join_token(CreateJoinTokenRequest {
            ttl_seconds: ttl.unwrap_or(0),
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &token);
    }
    output::write_stdout(format!("{}\n", token.token).as_bytes())
}

/// NAME, STATE, CPUS, MEMORY, VMS, ALLOC VCPU, ALLOC MEMORY, ACCEL, VERSION.
pub fn table(nodes: &[Node]) -> comfy_table::Table {
    let mut table = output::table(&[
        "NAME",
        "STATE",
        "CPUS",
        "MEMORY",
        "VMS",
        "ALLOC VCPU",
        "ALLOC MEMORY",
        "ACCEL",
        "VERSION",
    ]);
    output::align_right(&mut table, &[2, 3, 4, 5, 6]);
    for node in nodes {
        table.add_row(vec![
            node.name.clone(),
            state_text(node),
            node.cpus.to_string(),
            output::mib(node.memory_mb),
            node.vm_count.to_string(),
            node.allocated_vcpu.to_string(),
            output::mib(node.allocated_memory_mb),
            output::or_dash(&node.accel),
            output::or_dash(&node.version),
        ]);
    }
    table
}

/// The key/value description for `node get`.
pub fn describe(node: &Node) -> String {
    output::key_values(&[
        ("Name", node.name.clone()),
        ("State", state_text(node)),
        ("Address", node.address.clone()),
        ("Hostname", node.hostname.clone()),
        ("CPUs", node.cpus.to_string()),
        ("Memory", output::mib(node.memory_mb)),
        ("VMs", node.vm_count.to_string()),
        (
            "Allocated",
            format!(
                "{} vCPU, {}",
                node.allocated_vcpu,
                output::mib(node.allocated_memory_mb)
            ),
        ),
        (
            "Pools",
            node.pools
                .iter()
                .map(|p| {
                    format!(
                        "{} ({} free of {})",
                        p.name,
                        output::bytes(p.free_bytes),
                        output::bytes(p.total_bytes)
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("Networks", node.networks.join(", ")),
        ("Accel", node.accel.clone()),
        ("QEMU", node.qemu_version.clone()),
        ("Version", node.version.clone()),
        (
            "Last heartbeat",
            if node.last_heartbeat.is_empty() {
                String::new()
            } else {
                output::short_time_ms(&node.last_heartbeat) + " UTC"
            },
        ),
    ])
}

#[cfg(test)]
mod tests {
    use kcore_proto::v1::NodeState;

    use super::*;

    fn sample() -> Node {
        Node {
            name: "node-1".into(),
            address: "10.0.0.5:7444".into(),
            state: NodeState::Ready as i32,
            cpus: 16,
            memory_mb: 65536,
            vm_count: 3,
            allocated_vcpu: 6,
            allocated_memory_mb: 1536,
            version: "0.1.0".into(),
            accel: "kvm".into(),
            pools: vec![kcore_proto::v1::Pool {
                name: "default".into(),
                total_bytes: 100 << 30,
                free_bytes: 40 << 30,
                ..Default::default()
            }],
            networks: vec!["lan".into(), "dmz".into()],
            ..Default::default()
        }
    }

    #[test]
    fn node_table() {
        let text = table(&[sample()]).trim_fmt();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAME    STATE  CPUS  MEMORY  VMS  ALLOC VCPU  ALLOC MEMORY  ACCEL  VERSION"
        );
        assert_eq!(
            lines[1],
            "node-1  READY    16  64 GiB    3           6       1.5 GiB  kvm    0.1.0"
        );
    }

    #[test]
    fn node_description() {
        let text = describe(&sample());
        assert!(text.contains("State:     READY\n"), "{text}");
        assert!(text.contains("Allocated: 6 vCPU, 1.5 GiB\n"), "{text}");
        assert!(
            text.contains("Pools:     default (40.0 GiB free of 100.0 GiB)\n"),
            "{text}"
        );
        assert!(text.contains("Networks:  lan, dmz\n"), "{text}");
        assert!(!text.contains("Hostname"), "{text}");
    }
}

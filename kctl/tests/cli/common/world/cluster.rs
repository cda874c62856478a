//! Nodes, events, certificates and networks: kcored/src/controller/ (nodes.rs, grpc.rs,
//! certs.rs, join.rs, networks.rs) and the node's side of a network (kcored/src/node/).

use std::net::Ipv4Addr;

use kcore_proto::v1::*;
use tonic::Status;

use super::{NODE, World};
use crate::common::texts::*;

/// The links on the mock's host a bridge network may take as its uplink.
const HOST_LINKS: &[&str] = &["eth1"];

/// `a.b.c.d/len` as (network, prefix length).
fn cidr(text: &str) -> Option<(u32, u32)> {
    let (addr, len) = text.split_once('/')?;
    Some((u32::from(addr.parse::<Ipv4Addr>().ok()?), len.parse().ok()?))
}

fn overlap((a, la): (u32, u32), (b, lb): (u32, u32)) -> bool {
    let len = la.min(lb);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == b & mask
}

impl World {
    pub fn list_nodes(&self) -> Vec<Node> {
        let mut nodes = self.nodes.clone();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes
    }

    pub fn cordon(&self, name: &str, cordon: bool) -> Result<Node, Status> {
        let mut node = self.node(name)?.clone();
        node.cordoned = cordon;
        Ok(node)
    }

    /// Cordoned, and its running or paused VMs stopped.
    pub fn drain(&self, name: &str) -> Result<DrainNodeResponse, Status> {
        let node = self.cordon(name, true)?;
        let stopped: Vec<String> = self
            .vms
            .iter()
            .filter(|v| v.node == name)
            .filter(|v| {
                [VmStatus::Running, VmStatus::Paused]
                    .map(|s| s as i32)
                    .contains(&v.status)
            })
            .map(|v| v.name.clone())
            .collect();
        let mut node = node;
        node.allocated_vcpu = 0;
        node.allocated_memory_mb = 0;
        // As kcored with --stop: every VM stopped, for that reason.
        let vms = stopped
            .iter()
            .map(|n| DrainedVm {
                name: n.clone(),
                action: "stopped".into(),
                reason: "asked to stop".into(),
                ..Default::default()
            })
            .collect();
        Ok(DrainNodeResponse {
            node: Some(node),
            stopped,
            migrated: Vec::new(),
            vms,
        })
    }

    pub fn remove_node(&self, name: &str) -> Result<RemoveNodeResponse, Status> {
        let node = self.node(name)?;
        if node.address.starts_with("unix://") {
            return Err(Status::failed_precondition(OWN_NODE.fill(&[name])));
        }
        Ok(RemoveNodeResponse::default())
    }

    /// RegisterNode over the unix socket: nodes call it, kctl never does.
    pub fn register_node(&self, name: &str, address: &str) -> Result<(), Status> {
        let host_port = address
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !host_port {
            return Err(Status::invalid_argument(BAD_NODE_ADDRESS.fill(&[address])));
        }
        if let Ok(node) = self.node(name) {
            if node.address == address {
                return Ok(());
            }
            if node.address.starts_with("unix://") {
                return Err(Status::already_exists(LOCAL_NODE.fill(&[name])));
            }
        }
        // Nothing listens at a node address the mock is given; tonic says so.
        Err(Status::unavailable(CANNOT_REACH_NODE.fill(&[
            name,
            address,
            "transport error",
        ])))
    }

    pub fn join_token(&self, ttl_seconds: u32) -> JoinToken {
        let ttl = if ttl_seconds == 0 { 3600 } else { ttl_seconds };
        JoinToken {
            token: "7d3f0b9e2a61c4d8".repeat(4),
            expires_at: (chrono::Utc::now() + chrono::Duration::seconds(i64::from(ttl)))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }

    /// The events WatchEvents sends before following: the last `history` (50 unless
    /// following), of one VM when it is named.
    pub fn events(&self, r: &WatchEventsRequest) -> Vec<Event> {
        let history = match (r.history, r.follow) {
            (0, false) => 50,
            (n, _) => n as usize,
        };
        let mine: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| r.vm.is_empty() || e.vm_name == r.vm)
            .collect();
        let skip = mine.len().saturating_sub(history);
        mine.into_iter().skip(skip).cloned().collect()
    }

    /// IssueCertificate's checks; the mock's CA signs.
    pub fn issue_certificate(&self, role: &str) -> Result<(), Status> {
        match role {
            "admin" | "viewer" => Ok(()),
            "node" | "controller" => Err(Status::invalid_argument(ROLE_NOT_ISSUED.fill(&[role]))),
            other => Err(Status::invalid_argument(UNKNOWN_ROLE.fill(&[other]))),
        }
    }

    pub fn revoke(&self, r: &RevokeCertificateRequest) -> Result<Vec<CertificateInfo>, Status> {
        let serial = r.serial.trim().to_ascii_lowercase();
        if r.name.is_empty() == serial.is_empty() {
            return Err(Status::invalid_argument(NAME_OR_SERIAL.fill(&[])));
        }
        let targets: Vec<CertificateInfo> = self
            .certs
            .iter()
            .filter(|c| c.revoked_at.is_empty())
            .filter(|c| (!r.name.is_empty() && c.name == r.name) || c.serial == serial)
            .cloned()
            .collect();
        if targets.is_empty() {
            return Err(Status::not_found(if r.name.is_empty() {
                NO_CERT_SERIAL.fill(&[&serial])
            } else {
                NO_CERT_NAMED.fill(&[&r.name])
            }));
        }
        if let Some(c) = targets.iter().find(|c| c.role == "controller") {
            return Err(Status::failed_precondition(
                CONTROLLER_CERT.fill(&[&c.serial]),
            ));
        }
        Ok(targets
            .into_iter()
            .map(|c| CertificateInfo {
                revoked_at: "2025-01-10T12:40:00.000Z".into(),
                ..c
            })
            .collect())
    }

    pub fn get_network(&self, name: &str) -> Result<Network, Status> {
        self.networks
            .iter()
            .find(|n| n.name == name)
            .cloned()
            .ok_or_else(|| Status::not_found(NO_NETWORK.fill(&[name])))
    }

    pub fn create_network(&self, r: &CreateNetworkRequest) -> Result<Network, Status> {
        if self.networks.iter().any(|n| n.name == r.name) {
            return Err(Status::already_exists(NETWORK_EXISTS.fill(&[&r.name])));
        }
        let nat = r.mode == NetworkMode::Nat as i32;
        let bridge = if nat && r.bridge.is_empty() {
            format!("kbr-{}", r.name)
        } else {
            r.bridge.clone()
        };
        for other in &self.networks {
            if other.bridge == bridge {
                return Err(Status::invalid_argument(
                    BRIDGE_TAKEN.fill(&[&bridge, &other.name]),
                ));
            }
            if let (Some(ours), Some(theirs)) = (cidr(&r.subnet), cidr(&other.subnet))
                && overlap(ours, theirs)
            {
                return Err(Status::invalid_argument(SUBNET_OVERLAP.fill(&[
                    &r.subnet,
                    &other.name,
                    &other.subnet,
                ])));
            }
        }
        // The node builds it; its one failure is the answer.
        if !r.uplink.is_empty() && !HOST_LINKS.contains(&r.uplink.as_str()) {
            return Err(Status::not_found(UPLINK_MISSING.fill(&[&r.uplink, NODE])));
        }
        Ok(Network {
            name: r.name.clone(),
            mode: r.mode,
            subnet: r.subnet.clone(),
            gateway: cidr(&r.subnet)
                .map(|(net, _)| Ipv4Addr::from(net + 1).to_string())
                .unwrap_or_default(),
            bridge,
            uplink: r.uplink.clone(),
            created_at: "2025-01-10T12:30:00.000Z".into(),
            nodes: vec![NetworkOnNode {
                node: NODE.into(),
                ready: true,
                message: String::new(),
                dnsmasq_pid: if nat { 1721 } else { 0 },
                leases: 0,
            }],
            vm_count: 0,
        })
    }

    pub fn delete_network(&self, name: &str) -> Result<(), Status> {
        self.get_network(name)?;
        let users: Vec<&str> = self
            .vms
            .iter()
            .filter(|v| v.nics.iter().any(|n| n.network == name))
            .map(|v| v.name.as_str())
            .collect();
        if !users.is_empty() {
            return Err(Status::failed_precondition(
                NETWORK_IN_USE.fill(&[name, &users.join(", ")]),
            ));
        }
        Ok(())
    }
}

//! Networks as a node has them and as the cluster lists them. The definition itself is
//! [`NetworkDef`], validated the same way by the controller and every node.

pub use crate::netdef::{Mode as NetworkMode, NetworkDef};

/// How a network stands on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    pub node: String,
    /// The bridge (and for nat the address, dnsmasq and the NAT table) are in place.
    pub ready: bool,
    /// What is wrong when not ready.
    pub message: String,
    /// nat: the dnsmasq serving it.
    pub dnsmasq_pid: Option<u32>,
    /// nat: leases handed out.
    pub leases: u32,
}

impl NetworkStatus {
    /// Not in place on `node`, for `message`'s reason.
    pub fn missing(node: &str, message: &str) -> Self {
        NetworkStatus {
            node: node.to_string(),
            ready: false,
            message: message.to_string(),
            dnsmasq_pid: None,
            leases: 0,
        }
    }
}

/// A network of a node: the definition it keeps and how it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkView {
    pub def: NetworkDef,
    pub status: NetworkStatus,
}

/// A network of the cluster: its definition, how each node has it, and how many VMs have
/// a NIC on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNetwork {
    pub def: NetworkDef,
    pub nodes: Vec<NetworkStatus>,
    pub vm_count: u32,
}

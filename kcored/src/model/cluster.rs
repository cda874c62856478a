//! What the controller keeps of the cluster besides VMs: the certificates it issued.

use super::storage::PoolView;

/// A certificate the controller issued (or made for itself), as its list keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertInfo {
    /// Lowercase hex.
    pub serial: String,
    /// The CN: a person or tool, or a node's name.
    pub name: String,
    /// admin, viewer, node, controller (or server).
    pub role: String,
    pub not_after: String,
    pub issued_at: String,
    /// Empty while valid.
    pub revoked_at: String,
}

/// A node's own facts, from its heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    pub name: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub cpus: u32,
    #[serde(default)]
    pub memory_mb: u32,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub qemu_version: String,
    /// kvm or tcg.
    #[serde(default)]
    pub accel: String,
}

/// What the controller keeps of a node's last heartbeat (kept in the store, so a node that
/// is away still shows it after a restart).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeFacts {
    #[serde(default)]
    pub info: Option<NodeInfo>,
    #[serde(default)]
    pub pools: Vec<PoolView>,
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub images: Vec<String>,
}

/// A node as the API shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeView {
    pub name: String,
    pub address: String,
    pub ready: bool,
    pub info: NodeInfo,
    pub vm_count: u32,
    pub allocated_vcpu: u32,
    pub allocated_memory_mb: u32,
    pub last_heartbeat: String,
    pub cordoned: bool,
    pub pools: Vec<PoolView>,
    pub networks: Vec<String>,
}

/// A certificate and its key, signed by the cluster CA, with the CA's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    /// Empty when the key was the requester's own (a CSR).
    pub key_pem: String,
    pub ca_pem: String,
}

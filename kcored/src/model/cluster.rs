//! What the controller keeps of the cluster besides VMs: the certificates it issued.

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

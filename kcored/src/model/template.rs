//! Memory-snapshot templates as the API lists them.

use kcore_vmm::spec::MachineType;

/// A template on a node, with the VMs cloned from it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateView {
    pub name: String,
    pub node: String,
    /// The VM it was taken from (as it was named then).
    pub source_vm: String,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub machine: MachineType,
    /// RFC 3339.
    pub created_at: String,
    /// Bytes its files take on the node's disk.
    pub size_bytes: u64,
    /// How many disks its clones get (overlays of its frozen bases).
    pub disks: u32,
    /// The VMs made from it, by name.
    pub clones: Vec<String>,
}

//! Storage as the nodes have it and the API lists it: pools, images and volumes, and an
//! image import's progress.

use std::path::PathBuf;

use kcore_storage::{PoolKind, VolumeFormat};

/// A storage pool of a node with its free space.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PoolView {
    pub name: String,
    #[serde(default)]
    pub node: String,
    /// dir or lvm.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The directory, or VG[/THINPOOL].
    #[serde(default)]
    pub source: String,
    #[serde(default, deserialize_with = "super::vm::u64_lenient")]
    pub total_bytes: u64,
    #[serde(default, deserialize_with = "super::vm::u64_lenient")]
    pub free_bytes: u64,
}

impl PoolView {
    /// A pool of `node` of this kind, with its capacity.
    pub fn of(name: &str, node: &str, kind: &PoolKind, total_bytes: u64, free_bytes: u64) -> Self {
        let (kind, source) = match kind {
            PoolKind::Dir { path } => ("dir", path.display().to_string()),
            PoolKind::Lvm { vg, thin_pool } => (
                "lvm",
                match thin_pool {
                    Some(t) => format!("{vg}/{t}"),
                    None => vg.clone(),
                },
            ),
        };
        PoolView {
            name: name.to_string(),
            node: node.to_string(),
            kind: kind.to_string(),
            source,
            total_bytes,
            free_bytes,
        }
    }
}

/// An image in a dir pool of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageView {
    pub name: String,
    pub node: String,
    pub pool: String,
    pub format: VolumeFormat,
    pub virtual_size: u64,
    pub actual_size: u64,
    /// Lowercase hex; None for an image placed by hand without one.
    pub sha256: Option<String>,
}

/// A volume of a pool of a node, with the VM whose disk it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeView {
    pub name: String,
    pub node: String,
    pub pool: String,
    pub vm: Option<String>,
    pub format: VolumeFormat,
    pub virtual_size: u64,
    pub actual_size: u64,
    /// The image (or file) it is an overlay of.
    pub backing: Option<String>,
    pub path: PathBuf,
}

/// How far an image import is; the last one carries the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProgress {
    pub done_bytes: u64,
    /// None when unknown.
    pub total_bytes: Option<u64>,
    pub image: Option<ImageView>,
}

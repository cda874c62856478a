//! Pools, images and volumes: the controller picks the node (kcored/src/controller/storage.rs),
//! the node answers (kcored/src/node/storage.rs, grpc.rs) with the storage crate's checks.

use kcore_proto::v1::*;
use sha2::{Digest, Sha256};
use tonic::Status;

use super::{GIB, MIB, World};
use crate::common::texts::*;

/// sha256 of 2 GiB and of 1 MiB of zeros: the mock web server's images.
pub const ZEROS_2G_SHA: &str = "a7c744c13cc101ed66c29f672f92455547889cc586ce6d44fe76ae824958ea51";
pub const ZEROS_1M_SHA: &str = "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58";
/// A raw image of 2 GiB, served with its length.
pub const BIG_URL: &str = "https://images.example/debian-13.raw";
/// A raw image of 1 MiB, served without a length (chunked).
pub const TINY_URL: &str = "https://images.example/tiny.img";

/// What the node sends for an import it began: progress (done, total; total 0 when the
/// source does not say), then the image or the failure.
pub struct ImportPlan {
    pub progress: Vec<(u64, u64)>,
    pub end: Result<Image, Status>,
}

/// What an import read: its bytes' length, sha256 and leading bytes, and the length the
/// source announced.
struct Download {
    len: u64,
    sha256: String,
    head: Vec<u8>,
    announced: Option<u64>,
}

impl Download {
    fn zeros(len: u64, sha256: &str, announced: bool) -> Self {
        Download {
            len,
            sha256: sha256.into(),
            head: vec![0; 512],
            announced: announced.then_some(len),
        }
    }

    fn file(bytes: &[u8]) -> Self {
        Download {
            len: bytes.len() as u64,
            sha256: Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            head: bytes.iter().take(512).copied().collect(),
            announced: Some(bytes.len() as u64),
        }
    }
}

impl World {
    /// The nodes a listing covers: the one asked for, or every ready node.
    fn nodes_for(&self, node: &str) -> Result<Vec<String>, Status> {
        if node.is_empty() {
            return Ok(self
                .nodes
                .iter()
                .filter(|n| n.state == NodeState::Ready as i32)
                .map(|n| n.name.clone())
                .collect());
        }
        Ok(vec![self.ready_node(node)?.name.clone()])
    }

    /// The node a single-node operation goes to: the one asked for, or the only one.
    fn one_node(&self, node: &str) -> Result<String, Status> {
        let name = if node.is_empty() {
            &self.nodes[0].name
        } else {
            node
        };
        Ok(self.ready_node(name)?.name.clone())
    }

    pub fn pool(&self, name: &str) -> Result<&Pool, Status> {
        self.pools.iter().find(|p| p.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
            Status::not_found(NO_POOL_ON_NODE.fill(&[name, &self.nodes[0].name, &names.join(", ")]))
        })
    }

    pub fn list_pools(&self, node: &str) -> Result<Vec<Pool>, Status> {
        let nodes = self.nodes_for(node)?;
        Ok(self
            .pools
            .iter()
            .filter(|p| nodes.contains(&p.node))
            .cloned()
            .collect())
    }

    pub fn list_images(&self, node: &str) -> Result<Vec<Image>, Status> {
        let nodes = self.nodes_for(node)?;
        let mut images: Vec<Image> = self
            .images
            .iter()
            .filter(|i| nodes.contains(&i.node))
            .cloned()
            .collect();
        images.sort_by(|a, b| (&a.name, &a.node).cmp(&(&b.name, &b.node)));
        Ok(images)
    }

    pub fn delete_image(&self, r: &DeleteImageRequest) -> Result<(), Status> {
        self.one_node(&r.node)?;
        let pool_name = if r.pool.is_empty() {
            "default"
        } else {
            &r.pool
        };
        if self.pool(pool_name)?.r#type != "dir" {
            return Err(Status::invalid_argument(
                NO_IMAGES_IN_POOL.fill(&[pool_name]),
            ));
        }
        if !self
            .images
            .iter()
            .any(|i| i.name == r.name && i.pool == pool_name)
        {
            return Err(Status::not_found(NO_SUCH.fill(&["image", &r.name])));
        }
        let users: Vec<&str> = self
            .volumes
            .iter()
            .filter(|v| v.pool == pool_name && v.backing == r.name)
            .map(|v| v.name.as_str())
            .collect();
        if !users.is_empty() {
            return Err(Status::failed_precondition(
                IMAGE_IN_USE.fill(&[&r.name, &users.join(", ")]),
            ));
        }
        Ok(())
    }

    /// An import up to where the node starts streaming: the controller's checks, then the
    /// node opening a source path (as the caller: the mock runs as kctl's user).
    pub fn import_image(&self, r: &ImportImageRequest) -> Result<ImportPlan, Status> {
        if r.source.is_empty() {
            return Err(Status::invalid_argument(SOURCE_REQUIRED.fill(&[])));
        }
        let node = self.one_node(&r.node)?;
        let source = if r.source.contains("://") {
            None
        } else {
            let bytes = std::fs::read(&r.source).map_err(|e| {
                Status::invalid_argument(HOST_FILE_UNREADABLE.fill(&[
                    "image source",
                    &r.source,
                    &e.to_string(),
                ]))
            })?;
            Some(Download::file(&bytes))
        };
        Ok(self.import_on_node(r, &node, source))
    }

    /// The node's part, on its blocking task: its failures arrive in the stream.
    fn import_on_node(
        &self,
        r: &ImportImageRequest,
        node: &str,
        file: Option<Download>,
    ) -> ImportPlan {
        let fail = |end: Status| ImportPlan {
            progress: Vec::new(),
            end: Err(end),
        };
        let pool = if r.pool.is_empty() {
            "default"
        } else {
            &r.pool
        };
        match self.pool(pool) {
            Err(e) => return fail(e),
            Ok(p) if p.r#type != "dir" => {
                return fail(Status::invalid_argument(NOT_AN_IMAGE_POOL.fill(&[pool])));
            }
            Ok(_) => {}
        }
        if self
            .images
            .iter()
            .any(|i| i.name == r.name && i.pool == pool)
        {
            return fail(Status::already_exists(IMAGE_EXISTS.fill(&[&r.name, pool])));
        }
        let got = match (file, r.source.as_str()) {
            (Some(file), _) => file,
            (None, BIG_URL) => Download::zeros(2 * GIB, ZEROS_2G_SHA, true),
            (None, TINY_URL) => Download::zeros(MIB, ZEROS_1M_SHA, false),
            (None, url) => {
                let reason = HTTP_STATUS.fill(&["404", "Not Found"]);
                return fail(Status::unavailable(DOWNLOAD_FAILED.fill(&[url, &reason])));
            }
        };
        // One message per quarter (kcored: at most one per 4 MiB, and the last).
        let total = got.announced.unwrap_or(0);
        let progress = if got.len >= 4 * MIB {
            (1..=4).map(|q| (got.len / 4 * q, total)).collect()
        } else if total > 0 {
            vec![(got.len, total)]
        } else {
            Vec::new()
        };
        let expected = r.sha256.to_ascii_lowercase();
        let end = if !expected.is_empty() && expected != got.sha256 {
            Err(Status::invalid_argument(SHA256_MISMATCH.fill(&[
                &r.name,
                &expected,
                &got.sha256,
            ])))
        } else if got.head.starts_with(b"QFI\xfb") && got.head.len() >= 32 {
            let size = u64::from_be_bytes(got.head[24..32].try_into().unwrap_or_default());
            Ok(("qcow2", size))
        } else if got.len < 512 || !got.len.is_multiple_of(512) {
            let text = if got.len < 512 {
                RAW_TOO_SMALL
            } else {
                RAW_NOT_SECTORS
            };
            let reason = text.fill(&[&got.len.to_string()]);
            Err(Status::invalid_argument(
                IMAGE_REFUSED.fill(&[&r.name, &reason]),
            ))
        } else {
            Ok(("raw", got.len))
        }
        .map(|(format, virtual_size)| Image {
            name: r.name.clone(),
            node: node.into(),
            pool: pool.into(),
            format: format.into(),
            virtual_size,
            actual_size: got.len,
            sha256: got.sha256.clone(),
        });
        ImportPlan { progress, end }
    }

    pub fn list_volumes(&self, node: &str) -> Result<Vec<Volume>, Status> {
        let nodes = self.nodes_for(node)?;
        Ok(self
            .volumes
            .iter()
            .filter(|v| nodes.contains(&v.node))
            .cloned()
            .collect())
    }

    /// A new empty volume, as the node makes it (qcow2 in a dir pool, raw in lvm).
    pub fn create_volume(&self, r: &CreateVolumeRequest) -> Result<Volume, Status> {
        if r.size_gb == 0 {
            return Err(Status::invalid_argument(NEW_VOLUME_SIZE.fill(&[])));
        }
        let node = self.one_node(&r.node)?;
        let pool_name = if r.pool.is_empty() {
            "default"
        } else {
            &r.pool
        };
        let pool = self.pool(pool_name)?;
        if self
            .volumes
            .iter()
            .any(|v| v.name == r.name && v.pool == pool_name && v.node == node)
        {
            return Err(Status::already_exists(
                ALREADY_EXISTS.fill(&["volume", &r.name]),
            ));
        }
        let (format, path) = if pool.r#type == "lvm" {
            let vg = pool.source.split('/').next().unwrap_or_default();
            ("raw", format!("/dev/{vg}/kcore-{}", r.name))
        } else {
            ("qcow2", format!("{}/volumes/{}.qcow2", pool.source, r.name))
        };
        let size = u64::from(r.size_gb) << 30;
        Ok(Volume {
            name: r.name.clone(),
            node,
            pool: pool_name.to_string(),
            vm: String::new(),
            format: format.into(),
            virtual_size: size,
            actual_size: if format == "raw" { size } else { 200 << 10 },
            backing: String::new(),
            path,
        })
    }

    pub fn delete_volume(&self, r: &DeleteVolumeRequest) -> Result<(), Status> {
        let pool = if r.pool.is_empty() {
            "default"
        } else {
            &r.pool
        };
        let ready = self.nodes_for("")?;
        let holders: Vec<&Volume> = self
            .volumes
            .iter()
            .filter(|v| v.name == r.name && v.pool == pool && ready.contains(&v.node))
            .collect();
        let node = if r.node.is_empty() {
            match holders.first() {
                Some(v) => v.node.clone(),
                None => {
                    return Err(Status::not_found(NO_VOLUME_ANYWHERE.fill(&[&r.name, pool])));
                }
            }
        } else {
            r.node.clone()
        };
        self.one_node(&node)?;
        if let Some(v) = self
            .volumes
            .iter()
            .find(|v| v.name == r.name && v.pool == pool && !v.vm.is_empty())
        {
            return Err(Status::failed_precondition(
                VOLUME_IN_USE.fill(&[&r.name, pool, &v.vm, &v.vm, &r.name]),
            ));
        }
        self.pool(pool)?;
        if holders.is_empty() {
            return Err(Status::not_found(NO_SUCH.fill(&["volume", &r.name])));
        }
        Ok(())
    }

    /// An existing volume a disk attach names: there, and no VM's disk.
    pub fn volume_to_attach(&self, pool: &str, name: &str) -> Result<&Volume, Status> {
        self.pool(pool)?;
        let v = self
            .volumes
            .iter()
            .find(|v| v.name == name && v.pool == pool)
            .ok_or_else(|| Status::not_found(NO_SUCH.fill(&["volume", name])))?;
        if !v.vm.is_empty() {
            return Err(Status::failed_precondition(
                VOLUME_USED.fill(&[name, pool, &v.vm]),
            ));
        }
        Ok(v)
    }
}

//! Storage calls of the public API: pools, images and volumes live on the nodes; the
//! controller picks the node and gathers the answers.

use kcore_types::ImageName;

use super::Controller;
pub use super::node_client::{DiskOp, ProgressStream};
use super::nodes::NodeLink;
use super::store::VmRow;
use crate::caller::Requester;
use crate::error::{ApiError, ApiResult};
use crate::model::{ImageView, PoolView, VolumeView};

impl Controller {
    /// The nodes a listing covers: the one asked for, or every ready node.
    pub(super) fn nodes_for(&self, node: &str) -> ApiResult<Vec<NodeLink>> {
        if node.is_empty() {
            Ok(self.nodes.all().into_iter().filter(|l| l.ready).collect())
        } else {
            self.nodes.client(node)?;
            Ok(vec![self.nodes.get(node)?])
        }
    }

    /// The node a single-node operation goes to: the one asked for, or the only one.
    fn one_node(&self, node: &str) -> ApiResult<NodeLink> {
        if !node.is_empty() {
            self.nodes.client(node)?;
            return self.nodes.get(node);
        }
        let all = self.nodes.all();
        match all.as_slice() {
            [only] => {
                self.nodes.client(&only.name)?;
                Ok(only.clone())
            }
            [] => Err(ApiError::Unavailable("no nodes".into())),
            _ => Err(ApiError::InvalidArgument(
                "several nodes: say which one with --node".into(),
            )),
        }
    }

    pub async fn list_pools(&self, node: &str) -> ApiResult<Vec<PoolView>> {
        let mut out = Vec::new();
        for mut l in self.nodes_for(node)? {
            out.extend(l.client.list_pools().await?);
        }
        Ok(out)
    }

    pub async fn list_images(&self, node: &str) -> ApiResult<Vec<ImageView>> {
        let mut out = Vec::new();
        for mut l in self.nodes_for(node)? {
            out.extend(l.client.list_images().await?);
        }
        out.sort_by(|a, b| (&a.name, &a.node).cmp(&(&b.name, &b.node)));
        Ok(out)
    }

    pub async fn list_volumes(&self, node: &str) -> ApiResult<Vec<VolumeView>> {
        let mut out = Vec::new();
        for mut l in self.nodes_for(node)? {
            out.extend(l.client.list_volumes().await?);
        }
        Ok(out)
    }

    /// A new empty volume `name` of `size_gb` GiB in `pool` (empty: default) on `node`
    /// (empty: the only node), for `by`.
    pub async fn create_volume(
        &self,
        by: &Requester,
        name: &str,
        pool: &str,
        size_gb: u32,
        node: &str,
    ) -> ApiResult<VolumeView> {
        kcore_storage::validate_name("volume", name)?;
        if size_gb == 0 {
            return Err(ApiError::InvalidArgument(
                "a new volume needs a size of at least 1 GiB".into(),
            ));
        }
        let mut l = self.one_node(node)?;
        let v = l.client.create_volume(name, pool, size_gb).await?;
        self.emit_node(
            "volume.created",
            &l.name,
            format!("{} in pool {} ({size_gb} GiB) by {by}", v.name, v.pool),
        );
        Ok(v)
    }

    /// Delete, for `by`, volume `name` of `pool` (empty: default) no VM uses, on `node`
    /// (empty: the one node that has it).
    pub async fn delete_volume(
        &self,
        by: &Requester,
        name: &str,
        pool: &str,
        node: &str,
    ) -> ApiResult<()> {
        kcore_storage::validate_name("volume", name)?;
        let pool = if pool.is_empty() { "default" } else { pool };
        let node = if node.is_empty() {
            let holders: Vec<String> = self
                .list_volumes("")
                .await?
                .into_iter()
                .filter(|v| v.name == name && v.pool == pool)
                .map(|v| v.node)
                .collect();
            match holders.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(ApiError::NotFound(format!(
                        "no volume {name} in pool {pool} on any ready node (kctl volume list)"
                    )));
                }
                many => {
                    return Err(ApiError::InvalidArgument(format!(
                        "volume {name} is on nodes {}: say which with --node",
                        many.join(", ")
                    )));
                }
            }
        } else {
            node.to_string()
        };
        let mut l = self.one_node(&node)?;
        l.client.delete_volume(&node, name, pool).await?;
        self.emit_node(
            "volume.deleted",
            &node,
            format!("{name} in pool {pool} by {by}"),
        );
        Ok(())
    }

    /// Import an image on its node for `caller`, who must be able to read a source path.
    pub async fn import_image(
        &self,
        caller: &Requester,
        req: &ImportRequest,
    ) -> ApiResult<ProgressStream> {
        if req.source.is_empty() {
            return Err(ApiError::InvalidArgument(
                "source is required: a path on the node or an http(s) URL".into(),
            ));
        }
        let mut l = self.one_node(&req.node)?;
        // The node checks the source against the caller the controller vouches for, never
        // against one the client named.
        let stream = l
            .client
            .import_image(
                &caller.caller,
                req.name.as_str(),
                &req.source,
                &req.sha256,
                &req.pool,
            )
            .await?;
        self.emit(
            "image.import",
            None,
            format!("importing {} on {} for {caller}", req.name, l.name),
        );
        Ok(stream)
    }

    /// Delete, for `by`, image `name` of `pool` (empty: default) on `node` (empty: the
    /// only node).
    pub async fn delete_image(
        &self,
        by: &Requester,
        name: &str,
        pool: &str,
        node: &str,
    ) -> ApiResult<()> {
        let mut l = self.one_node(node)?;
        l.client.delete_image(name, pool).await?;
        self.emit(
            "image.deleted",
            None,
            format!("{name} on {} by {by}", l.name),
        );
        Ok(())
    }
}

/// An image to import.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub name: ImageName,
    /// A path on the node, or an http(s) URL.
    pub source: String,
    /// Expected sha256 (hex; empty: not checked).
    pub sha256: String,
    /// The node (empty: the only one).
    pub node: String,
    /// The dir pool (empty: default).
    pub pool: String,
}

impl Controller {
    /// Attach, detach or resize a VM's disk on its node, for `by`.
    pub async fn disk_op(&self, by: &Requester, vm: &str, op: DiskOp) -> ApiResult<VmRow> {
        let row = self.get_row(vm)?;
        let what = match &op {
            DiskOp::Attach {
                pool,
                size_gb,
                volume,
            } => {
                if volume.is_empty() {
                    format!("attached a {size_gb} GiB disk from pool {pool}")
                } else {
                    format!("attached volume {volume} from pool {pool}")
                }
            }
            DiskOp::Detach { disk, .. } => format!("detached disk {disk}"),
            DiskOp::Resize { disk, size_gb } => format!("resized disk {disk} to {size_gb} GiB"),
        };
        let nv = self.nodes.client(&row.node)?.disk(&row.id, &op).await?;
        self.apply_node_vm(&nv)?;
        let row = self.get_row(&row.id)?;
        self.emit("vm.disk", Some(&row), format!("{what} by {by}"));
        Ok(row)
    }
}

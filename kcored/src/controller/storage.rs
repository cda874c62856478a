//! Storage calls of the public API: pools, images and volumes live on the nodes; the
//! controller picks the node and gathers the answers.

use kcore_proto::v1 as pb;
use tonic::Streaming;

use super::Controller;
pub use super::node_client::DiskOp;
use super::nodes::NodeLink;
use super::store::VmRow;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};

impl Controller {
    /// The nodes a listing covers: the one asked for, or every ready node.
    fn nodes_for(&self, node: &str) -> ApiResult<Vec<NodeLink>> {
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

    pub async fn list_pools(&self, node: &str) -> ApiResult<Vec<pb::Pool>> {
        let mut out = Vec::new();
        for mut l in self.nodes_for(node)? {
            let r = l
                .client
                .list_node_pools(pb::ListPoolsRequest::default())
                .await?;
            out.extend(r.into_inner().pools);
        }
        Ok(out)
    }

    pub async fn list_images(&self, node: &str) -> ApiResult<Vec<pb::Image>> {
        let mut out = Vec::new();
        for mut l in self.nodes_for(node)? {
            let r = l
                .client
                .list_node_images(pb::ListImagesRequest::default())
                .await?;
            out.extend(r.into_inner().images);
        }
        out.sort_by(|a, b| (&a.name, &a.node).cmp(&(&b.name, &b.node)));
        Ok(out)
    }

    pub async fn list_volumes(&self, node: &str) -> ApiResult<Vec<pb::Volume>> {
        let mut out = Vec::new();
        for mut l in self.nodes_for(node)? {
            let r = l
                .client
                .list_node_volumes(pb::ListVolumesRequest::default())
                .await?;
            out.extend(r.into_inner().volumes);
        }
        Ok(out)
    }

    /// A new empty volume on the node asked for (or the only node).
    pub async fn create_volume(&self, req: pb::CreateVolumeRequest) -> ApiResult<pb::Volume> {
        kcore_storage::validate_name("volume", &req.name)?;
        if req.size_gb == 0 {
            return Err(ApiError::InvalidArgument(
                "a new volume needs a size of at least 1 GiB".into(),
            ));
        }
        let size_gb = req.size_gb;
        let mut l = self.one_node(&req.node)?;
        let v = l
            .client
            .create_node_volume(pb::CreateVolumeRequest {
                node: l.name.clone(),
                ..req
            })
            .await?
            .into_inner();
        self.emit_node(
            "volume.created",
            &l.name,
            format!("{} in pool {} ({size_gb} GiB)", v.name, v.pool),
        );
        Ok(v)
    }

    /// Delete a volume no VM uses, on the node asked for or the one node that has it.
    pub async fn delete_volume(&self, req: pb::DeleteVolumeRequest) -> ApiResult<()> {
        kcore_storage::validate_name("volume", &req.name)?;
        let pool = if req.pool.is_empty() {
            "default".to_string()
        } else {
            req.pool.clone()
        };
        let node = if req.node.is_empty() {
            let holders: Vec<String> = self
                .list_volumes("")
                .await?
                .into_iter()
                .filter(|v| v.name == req.name && v.pool == pool)
                .map(|v| v.node)
                .collect();
            match holders.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(ApiError::NotFound(format!(
                        "no volume {} in pool {pool} on any ready node (kctl volume list)",
                        req.name
                    )));
                }
                many => {
                    return Err(ApiError::InvalidArgument(format!(
                        "volume {} is on nodes {}: say which with --node",
                        req.name,
                        many.join(", ")
                    )));
                }
            }
        } else {
            req.node.clone()
        };
        let mut l = self.one_node(&node)?;
        l.client
            .delete_node_volume(pb::DeleteVolumeRequest {
                name: req.name.clone(),
                pool: pool.clone(),
                node: node.clone(),
            })
            .await?;
        self.emit_node(
            "volume.deleted",
            &node,
            format!("{} in pool {pool}", req.name),
        );
        Ok(())
    }

    /// Import an image on its node for `caller`, who must be able to read a source path.
    pub async fn import_image(
        &self,
        caller: &Caller,
        mut req: pb::ImportImageRequest,
    ) -> ApiResult<Streaming<pb::ImportImageProgress>> {
        // The node checks the source against the caller the controller vouches for, never
        // against one the client named.
        req.caller = Some(caller.into());
        kcore_storage::validate_name("image", &req.name)?;
        if req.source.is_empty() {
            return Err(ApiError::InvalidArgument(
                "source is required: a path on the node or an http(s) URL".into(),
            ));
        }
        let mut l = self.one_node(&req.node)?;
        let name = req.name.clone();
        let stream = l.client.node_import_image(req).await?.into_inner();
        self.emit(
            "image.import",
            None,
            format!("importing {name} on {} for {caller}", l.name),
        );
        Ok(stream)
    }

    pub async fn delete_image(&self, req: pb::DeleteImageRequest) -> ApiResult<()> {
        let mut l = self.one_node(&req.node)?;
        let name = req.name.clone();
        l.client.delete_node_image(req).await?;
        self.emit("image.deleted", None, format!("{name} on {}", l.name));
        Ok(())
    }
}

impl Controller {
    /// Attach, detach or resize a VM's disk on its node.
    pub async fn disk_op(&self, vm: &str, op: DiskOp) -> ApiResult<VmRow> {
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
        self.emit("vm.disk", Some(&row), what);
        Ok(row)
    }
}

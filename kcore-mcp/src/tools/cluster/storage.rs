//! The network and storage tools: list networks, pools, images, templates and volumes
//! (read); import an image (write).

use std::time::Duration;

use kcore_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{NoArgs, OnNode, count, gib, lines, opt};
use crate::error::ToolError;
use crate::registry::{Ctx, Done, SHORT};
use crate::views::{Image, Network, Pool, Volume};

#[derive(Debug, Serialize, JsonSchema)]
pub struct NetworkList {
    pub networks: Vec<Network>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PoolList {
    pub pools: Vec<Pool>,
}

/// A memory-snapshot template: clones of it start where its guest stood.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Template {
    pub name: String,
    /// The node it is on; its clones run there.
    pub node: String,
    /// The VM it was taken from.
    pub source_vm: String,
    /// vCPUs and memory (MiB) its clones have (create_vm must pass these).
    pub vcpu: u32,
    pub memory_mb: u32,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// Bytes its files take on the node.
    pub size_bytes: u64,
    /// Disks its clones get (overlays of its frozen bases).
    pub disks: u32,
    /// The VMs cloned from it (it cannot be deleted while there are any).
    pub clones: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TemplateList {
    pub templates: Vec<Template>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ImageList {
    pub images: Vec<Image>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct VolumeList {
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportArgs {
    /// The image's name: 1-63 of a-z, 0-9 and '-'.
    pub name: String,
    /// An http(s) URL, or a path on the node (over the local socket: one kcore-mcp's user may
    /// read; over TLS: one under the node's --import-dir). qcow2 or raw.
    pub source: String,
    /// The expected SHA-256 (hex); the import fails if the file's differs.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The node to import on (required when there are several).
    #[serde(default)]
    pub node: Option<String>,
    /// The dir pool to keep it in (default "default").
    #[serde(default)]
    pub pool: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Imported {
    pub image: Image,
}

pub(crate) async fn list_networks(ctx: Ctx, _: NoArgs) -> Result<Done<NetworkList>, ToolError> {
    let client = ctx.client().await?;
    let networks = client
        .api()
        .list_networks(ctx.req(pb::ListNetworksRequest {}, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .networks;
    let networks: Vec<Network> = networks.iter().map(Network::from).collect();
    let summary = lines(
        count(networks.len(), "network", "networks"),
        networks.iter().map(|n| {
            format!(
                "{} {} {} bridge {}, {} VMs",
                n.name, n.mode, n.subnet, n.bridge, n.vm_count
            )
        }),
    );
    Ok(Done {
        summary,
        data: NetworkList { networks },
    })
}

pub(crate) async fn list_pools(ctx: Ctx, a: OnNode) -> Result<Done<PoolList>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::ListPoolsRequest { node: opt(a.node) };
    let pools = client
        .api()
        .list_pools(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .pools;
    let pools: Vec<Pool> = pools.iter().map(Pool::from).collect();
    let summary = lines(
        count(pools.len(), "pool", "pools"),
        pools.iter().map(|p| {
            format!(
                "{} on {} ({} {}): {} free of {}",
                p.name,
                p.node,
                p.kind,
                p.source,
                gib(p.free_bytes),
                gib(p.total_bytes)
            )
        }),
    );
    Ok(Done {
        summary,
        data: PoolList { pools },
    })
}

pub(crate) async fn list_images(ctx: Ctx, a: OnNode) -> Result<Done<ImageList>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::ListImagesRequest { node: opt(a.node) };
    let images = client
        .api()
        .list_images(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .images;
    let images: Vec<Image> = images.iter().map(Image::from).collect();
    let summary = lines(
        count(images.len(), "image", "images"),
        images.iter().map(|i| {
            format!(
                "{} on {} in {}: {}, {}",
                i.name,
                i.node,
                i.pool,
                i.format,
                gib(i.virtual_size)
            )
        }),
    );
    Ok(Done {
        summary,
        data: ImageList { images },
    })
}

pub(crate) async fn list_templates(ctx: Ctx, a: OnNode) -> Result<Done<TemplateList>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::ListTemplatesRequest {
        node: a.node.unwrap_or_default(),
    };
    let templates: Vec<Template> = client
        .api()
        .list_templates(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .templates
        .into_iter()
        .map(|t| Template {
            name: t.name,
            node: t.node,
            source_vm: t.source_vm,
            vcpu: t.vcpu,
            memory_mb: t.memory_mb,
            created_at: t.created_at,
            size_bytes: t.size_bytes,
            disks: t.disks,
            clones: t.clones,
        })
        .collect();
    let summary = lines(
        count(templates.len(), "template", "templates"),
        templates.iter().map(|t| {
            format!(
                "{} on {}: {} vCPU, {} MiB, from {}, {} clone(s)",
                t.name,
                t.node,
                t.vcpu,
                t.memory_mb,
                t.source_vm,
                t.clones.len()
            )
        }),
    );
    Ok(Done {
        summary,
        data: TemplateList { templates },
    })
}

pub(crate) async fn list_volumes(ctx: Ctx, a: OnNode) -> Result<Done<VolumeList>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::ListVolumesRequest { node: opt(a.node) };
    let volumes = client
        .api()
        .list_volumes(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .volumes;
    let volumes: Vec<Volume> = volumes.iter().map(Volume::from).collect();
    let summary = lines(
        count(volumes.len(), "volume", "volumes"),
        volumes.iter().map(|v| {
            format!(
                "{} in {} on {}: {}, {}{}",
                v.name,
                v.pool,
                v.node,
                v.format,
                gib(v.virtual_size),
                if v.vm.is_empty() {
                    ", unused".to_string()
                } else {
                    format!(", disk of {}", v.vm)
                }
            )
        }),
    );
    Ok(Done {
        summary,
        data: VolumeList { volumes },
    })
}

pub(crate) async fn import_image(ctx: Ctx, a: ImportArgs) -> Result<Done<Imported>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::ImportImageRequest {
        name: a.name.clone(),
        source: a.source,
        sha256: opt(a.sha256),
        node: opt(a.node),
        pool: opt(a.pool),
        caller: None,
    };
    let mut stream = client
        .api()
        .import_image(ctx.req(req, Duration::from_secs(3600)))
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    while let Some(p) = stream.message().await.map_err(|s| client.error(s))? {
        if let Some(image) = p.image {
            let image = Image::from(&image);
            return Ok(Done {
                summary: format!(
                    "imported image {} on {} in pool {} ({}, {})",
                    image.name,
                    image.node,
                    image.pool,
                    image.format,
                    gib(image.virtual_size)
                ),
                data: Imported { image },
            });
        }
    }
    Err(ToolError::Api {
        code: tonic::Code::Unknown,
        message: format!("the import of {} ended without the image", a.name),
    })
}

//! `kctl pool list` and `kctl volume list|create|delete`: the storage the nodes have.

use anyhow::Result;
use kcore_proto::v1::{
    CreateVolumeRequest, DeleteVolumeRequest, ListPoolsRequest, ListVolumesRequest, Pool, Volume,
};

use crate::endpoint::Client;
use crate::output::{self, Format};

/// `kctl pool list`.
pub async fn list_pools(client: &Client, format: Format, node: Option<String>) -> Result<()> {
    let response = client
        .api()
        .list_pools(ListPoolsRequest {
            node: node.unwrap_or_default(),
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &response);
    }
    output::print_table(&pools_table(&response.pools))
}

/// NAME, NODE, TYPE, SOURCE, SIZE, FREE, USED%.
pub fn pools_table(pools: &[Pool]) -> comfy_table::Table {
    let mut table = output::table(&["NAME", "NODE", "TYPE", "SOURCE", "SIZE", "FREE", "USED%"]);
    output::align_right(&mut table, &[4, 5, 6]);
    for pool in pools {
        // A size of 0 means the node could not measure the pool.
        let size = |bytes: u64| {
            if pool.total_bytes == 0 {
                "-".to_string()
            } else {
                output::bytes(bytes)
            }
        };
        table.add_row(vec![
            pool.name.clone(),
            output::or_dash(&pool.node),
            output::or_dash(&pool.r#type),
            output::or_dash(&pool.source),
            size(pool.total_bytes),
            size(pool.free_bytes),
            output::used_percent(pool.total_bytes, pool.free_bytes),
        ]);
    }
    table
}

/// `kctl volume list`.
pub async fn list_volumes(client: &Client, format: Format, node: Option<String>) -> Result<()> {
    let response = client
        .api()
        .list_volumes(ListVolumesRequest {
            node: node.unwrap_or_default(),
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &response);
    }
    output::print_table(&volumes_table(&response.volumes))
}

/// `kctl volume create`.
pub async fn create_volume(
    client: &Client,
    format: Format,
    name: String,
    size_gb: u32,
    pool: String,
    node: Option<String>,
) -> Result<()> {
    let volume = client
        .api()
        .create_volume(CreateVolumeRequest {
            name,
            pool,
            size_gb,
            node: node.unwrap_or_default(),
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &volume);
    }
    println!(
        "Created volume {} (pool {}, {}) on {}",
        volume.name,
        volume.pool,
        output::bytes(volume.virtual_size),
        volume.node
    );
    Ok(())
}

/// `kctl volume delete`.
pub async fn delete_volume(
    client: &Client,
    name: String,
    pool: String,
    node: Option<String>,
) -> Result<()> {
    client
        .api()
        .delete_volume(DeleteVolumeRequest {
            name: name.clone(),
            pool: pool.clone(),
            node: node.unwrap_or_default(),
        })
        .await
        .map_err(|s| client.error(s))?;
    println!("Deleted volume {name} (pool {pool})");
    Ok(())
}

/// NAME, NODE, POOL, VM, FORMAT, VIRTUAL, ACTUAL, BACKING.
pub fn volumes_table(volumes: &[Volume]) -> comfy_table::Table {
    let mut table = output::table(&[
        "NAME", "NODE", "POOL", "VM", "FORMAT", "VIRTUAL", "ACTUAL", "BACKING",
    ]);
    output::align_right(&mut table, &[5, 6]);
    for volume in volumes {
        table.add_row(vec![
            volume.name.clone(),
            output::or_dash(&volume.node),
            output::or_dash(&volume.pool),
            output::or_dash(&volume.vm),
            output::or_dash(&volume.format),
            output::bytes(volume.virtual_size),
            output::bytes(volume.actual_size),
            output::or_dash(&volume.backing),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_table() {
        let pools = [
            Pool {
                name: "default".into(),
                node: "node-1".into(),
                r#type: "dir".into(),
                source: "/var/lib/kcore/pools/default".into(),
                total_bytes: 100 << 30,
                free_bytes: 63 << 30,
            },
            Pool {
                name: "fast".into(),
                node: "node-1".into(),
                r#type: "lvm".into(),
                source: "vg0/thin".into(),
                ..Default::default()
            },
        ];
        let text = pools_table(&pools).trim_fmt();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME     NODE    TYPE  SOURCE                             SIZE      FREE  USED%",
                "default  node-1  dir   /var/lib/kcore/pools/default  100.0 GiB  63.0 GiB    37%",
                "fast     node-1  lvm   vg0/thin                              -         -      -",
            ]
        );
    }

    #[test]
    fn volume_table() {
        let volumes = [
            Volume {
                name: "web-root".into(),
                node: "node-1".into(),
                pool: "default".into(),
                vm: "web".into(),
                format: "qcow2".into(),
                virtual_size: 10 << 30,
                actual_size: 3 << 20,
                backing: "debian-12".into(),
                path: "/var/lib/kcore/pools/default/web-root.qcow2".into(),
            },
            Volume {
                name: "old-data".into(),
                node: "node-1".into(),
                pool: "fast".into(),
                format: "raw".into(),
                virtual_size: 1 << 30,
                actual_size: 1 << 30,
                ..Default::default()
            },
        ];
        let text = volumes_table(&volumes).trim_fmt();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME      NODE    POOL     VM   FORMAT   VIRTUAL   ACTUAL  BACKING",
                "web-root  node-1  default  web  qcow2   10.0 GiB  3.0 MiB  debian-12",
                "old-data  node-1  fast     -    raw      1.0 GiB  1.0 GiB  -",
            ]
        );
    }
}

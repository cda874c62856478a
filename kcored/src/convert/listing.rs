//! Pools, images, volumes and networks between the proto and the domain, both ways: the
//! node answers with these messages, the controller reads them back and answers the API.

use kcore_proto::v1 as pb;
use kcore_types::NetworkName;

use super::opt_str;
use crate::error::{ApiError, ApiResult};
use crate::model::{
    ClusterNetwork, ImageView, ImportProgress, NetworkDef, NetworkMode, NetworkStatus, NetworkView,
    PoolView, VolumeView,
};

pub fn pool_from_pb(p: &pb::Pool) -> PoolView {
    PoolView {
        name: p.name.clone(),
        node: p.node.clone(),
        kind: p.r#type.clone(),
        source: p.source.clone(),
        total_bytes: p.total_bytes,
        free_bytes: p.free_bytes,
    }
}

pub fn pool_to_pb(p: &PoolView) -> pb::Pool {
    pb::Pool {
        name: p.name.clone(),
        node: p.node.clone(),
        r#type: p.kind.clone(),
        source: p.source.clone(),
        total_bytes: p.total_bytes,
        free_bytes: p.free_bytes,
    }
}

pub fn image_to_pb(i: &ImageView) -> pb::Image {
    pb::Image {
        name: i.name.clone(),
        node: i.node.clone(),
        pool: i.pool.clone(),
        format: i.format.as_str().to_string(),
        virtual_size: i.virtual_size,
        actual_size: i.actual_size,
        sha256: i.sha256.clone().unwrap_or_default(),
    }
}

pub fn image_from_pb(i: &pb::Image) -> ApiResult<ImageView> {
    Ok(ImageView {
        name: i.name.clone(),
        node: i.node.clone(),
        pool: i.pool.clone(),
        format: i.format.parse()?,
        virtual_size: i.virtual_size,
        actual_size: i.actual_size,
        sha256: opt_str(&i.sha256),
    })
}

pub fn volume_to_pb(v: &VolumeView) -> pb::Volume {
    pb::Volume {
        name: v.name.clone(),
        node: v.node.clone(),
        pool: v.pool.clone(),
        vm: v.vm.clone().unwrap_or_default(),
        format: v.format.as_str().to_string(),
        virtual_size: v.virtual_size,
        actual_size: v.actual_size,
        backing: v.backing.clone().unwrap_or_default(),
        path: v.path.display().to_string(),
    }
}

pub fn volume_from_pb(v: &pb::Volume) -> ApiResult<VolumeView> {
    Ok(VolumeView {
        name: v.name.clone(),
        node: v.node.clone(),
        pool: v.pool.clone(),
        vm: opt_str(&v.vm),
        format: v.format.parse()?,
        virtual_size: v.virtual_size,
        actual_size: v.actual_size,
        backing: opt_str(&v.backing),
        path: v.path.clone().into(),
    })
}

pub fn progress_to_pb(p: &ImportProgress) -> pb::ImportImageProgress {
    pb::ImportImageProgress {
        done_bytes: p.done_bytes,
        total_bytes: p.total_bytes.unwrap_or(0),
        image: p.image.as_ref().map(image_to_pb),
    }
}

pub fn progress_from_pb(p: &pb::ImportImageProgress) -> ApiResult<ImportProgress> {
    Ok(ImportProgress {
        done_bytes: p.done_bytes,
        total_bytes: (p.total_bytes != 0).then_some(p.total_bytes),
        image: p.image.as_ref().map(image_from_pb).transpose()?,
    })
}

/// A network's mode as the API gives it; unset is refused.
fn mode_from_pb(mode: i32) -> ApiResult<NetworkMode> {
    match pb::NetworkMode::try_from(mode).unwrap_or_default() {
        pb::NetworkMode::Nat => Ok(NetworkMode::Nat),
        pb::NetworkMode::Bridge => Ok(NetworkMode::Bridge),
        pb::NetworkMode::Unspecified => Err(ApiError::InvalidArgument(
            "mode is required: nat or bridge".into(),
        )),
    }
}

fn mode_to_pb(mode: NetworkMode) -> pb::NetworkMode {
    match mode {
        NetworkMode::Nat => pb::NetworkMode::Nat,
        NetworkMode::Bridge => pb::NetworkMode::Bridge,
    }
}

/// A network to create, checked as [`NetworkDef::new`] does (its name first).
pub fn network_request_from_pb(r: &pb::CreateNetworkRequest) -> ApiResult<NetworkDef> {
    NetworkName::parse(&r.name)?;
    NetworkDef::new(
        &r.name,
        mode_from_pb(r.mode)?,
        &r.subnet,
        &r.bridge,
        &r.uplink,
    )
}

/// A definition from the API object (validated again).
pub fn network_def_from_pb(n: &pb::Network) -> ApiResult<NetworkDef> {
    NetworkName::parse(&n.name)?;
    let mut def = NetworkDef::new(
        &n.name,
        mode_from_pb(n.mode)?,
        &n.subnet,
        &n.bridge,
        &n.uplink,
    )?;
    def.created_at = n.created_at.clone();
    Ok(def)
}

/// The API object of a definition (with its gateway; no nodes, no VM count).
pub fn network_def_to_pb(d: &NetworkDef) -> pb::Network {
    let subnet = d.cidr();
    pb::Network {
        name: d.name.clone(),
        mode: mode_to_pb(d.mode) as i32,
        subnet: subnet.map(|s| s.to_string()).unwrap_or_default(),
        gateway: subnet
            .and_then(|s| s.gateway().ok())
            .map(|g| g.to_string())
            .unwrap_or_default(),
        bridge: d.bridge.clone(),
        uplink: d.uplink.clone().unwrap_or_default(),
        created_at: d.created_at.clone(),
        ..Default::default()
    }
}

/// The definition a store row of older versions holds (the API object's JSON), as it
/// is: it was validated when it was created.
pub fn network_def_from_stored_proto_json(json: &str) -> Option<NetworkDef> {
    let n: pb::Network = serde_json::from_str(json).ok()?;
    let mode = mode_from_pb(n.mode).ok()?;
    Some(NetworkDef {
        name: n.name,
        mode,
        subnet: opt_str(&n.subnet),
        bridge: n.bridge,
        uplink: opt_str(&n.uplink),
        created_at: n.created_at,
    })
}

pub fn network_status_to_pb(s: &NetworkStatus) -> pb::NetworkOnNode {
    pb::NetworkOnNode {
        node: s.node.clone(),
        ready: s.ready,
        message: s.message.clone(),
        dnsmasq_pid: s.dnsmasq_pid.unwrap_or(0),
        leases: s.leases,
    }
}

pub fn network_status_from_pb(s: &pb::NetworkOnNode) -> NetworkStatus {
    NetworkStatus {
        node: s.node.clone(),
        ready: s.ready,
        message: s.message.clone(),
        dnsmasq_pid: (s.dnsmasq_pid != 0).then_some(s.dnsmasq_pid),
        leases: s.leases,
    }
}

pub fn network_view_to_pb(n: &NetworkView) -> pb::NodeNetwork {
    pb::NodeNetwork {
        network: Some(network_def_to_pb(&n.def)),
        status: Some(network_status_to_pb(&n.status)),
    }
}

/// A node's network; None when its definition does not check out (the controller then
/// treats it as missing there).
pub fn network_view_from_pb(n: &pb::NodeNetwork) -> Option<NetworkView> {
    Some(NetworkView {
        def: network_def_from_pb(n.network.as_ref()?).ok()?,
        status: network_status_from_pb(n.status.as_ref()?),
    })
}

pub fn cluster_network_to_pb(n: &ClusterNetwork) -> pb::Network {
    pb::Network {
        nodes: n.nodes.iter().map(network_status_to_pb).collect(),
        vm_count: n.vm_count,
        ..network_def_to_pb(&n.def)
    }
}

#[cfg(test)]
mod tests {
    use kcore_storage::VolumeFormat;

    use super::*;

    #[test]
    fn listings_read_back_as_they_were_sent() {
        let image = ImageView {
            name: "cirros".into(),
            node: "n1".into(),
            pool: "default".into(),
            format: VolumeFormat::Qcow2,
            virtual_size: 1 << 30,
            actual_size: 20 << 20,
            sha256: Some("ab".repeat(32)),
        };
        assert_eq!(image_from_pb(&image_to_pb(&image)).expect("image"), image);
        let volume = VolumeView {
            name: "v".into(),
            node: "n1".into(),
            pool: "default".into(),
            vm: None,
            format: VolumeFormat::Raw,
            virtual_size: 1 << 30,
            actual_size: 0,
            backing: Some("cirros".into()),
            path: "/var/lib/kcore/pools/default/volumes/v.raw".into(),
        };
        assert_eq!(volume_from_pb(&volume_to_pb(&volume)).expect("vol"), volume);
        let p = ImportProgress {
            done_bytes: 5,
            total_bytes: None,
            image: Some(image),
        };
        assert_eq!(progress_from_pb(&progress_to_pb(&p)).expect("progress"), p);
        let bad = pb::Image {
            format: "vmdk".into(),
            ..Default::default()
        };
        let e = image_from_pb(&bad).expect_err("vmdk").to_string();
        assert!(e.contains("vmdk"), "{e}");
    }

    #[test]
    fn networks_read_back_and_old_rows_still_read() {
        let def = network_request_from_pb(&pb::CreateNetworkRequest {
            name: "default".into(),
            mode: pb::NetworkMode::Nat as i32,
            subnet: "10.77.0.0/24".into(),
            ..Default::default()
        })
        .expect("valid");
        let msg = network_def_to_pb(&def);
        assert_eq!(msg.gateway, "10.77.0.1");
        assert_eq!(network_def_from_pb(&msg).expect("round trip"), def);
        let old = serde_json::to_string(&msg).expect("json");
        assert_eq!(network_def_from_stored_proto_json(&old), Some(def.clone()));
        let view = NetworkView {
            def,
            status: NetworkStatus {
                node: "n1".into(),
                ready: true,
                message: String::new(),
                dnsmasq_pid: Some(42),
                leases: 2,
            },
        };
        assert_eq!(
            network_view_from_pb(&network_view_to_pb(&view)),
            Some(view.clone())
        );
        let e = network_request_from_pb(&pb::CreateNetworkRequest {
            name: "lan".into(),
            ..Default::default()
        })
        .expect_err("no mode");
        assert_eq!(e.to_string(), "mode is required: nat or bridge");
        // The name is checked before the mode.
        let e = network_request_from_pb(&pb::CreateNetworkRequest {
            name: "Bad_Name".into(),
            ..Default::default()
        })
        .expect_err("bad name");
        assert!(e.to_string().contains("Bad_Name"), "{e}");
    }
}

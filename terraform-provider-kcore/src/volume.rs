//! `kcore_volume`: an empty volume no VM uses yet (CreateVolume / ListVolumes /
//! DeleteVolume), for VMs to take as disks. Any change replaces it.

use async_trait::async_trait;
use kcore_client::Client;
use kcore_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::diag;
use crate::provider::Shared;
use crate::schema::{block, changed, computed, optional_computed, required, s, u32_of};

pub struct VolumeResource(pub Shared);

const GIB: u64 = 1 << 30;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeState {
    pub id: Value<String>,
    pub name: Value<String>,
    pub pool: Value<String>,
    pub size_gb: Value<i64>,
    pub node: Value<String>,
    pub format: Value<String>,
    pub path: Value<String>,
    pub vm: Value<String>,
}

fn from_volume(v: &pb::Volume, prior: &VolumeState) -> VolumeState {
    let gb = v.virtual_size.div_ceil(GIB);
    VolumeState {
        id: Value::Value(format!("{}/{}/{}", v.node, v.pool, v.name)),
        name: Value::Value(v.name.clone()),
        pool: Value::Value(v.pool.clone()),
        size_gb: match prior.size_gb {
            Value::Value(p) if u64::try_from(p).ok() == Some(gb) => prior.size_gb,
            _ => Value::Value(i64::try_from(gb).unwrap_or(i64::MAX)),
        },
        node: Value::Value(v.node.clone()),
        format: Value::Value(v.format.clone()),
        path: Value::Value(v.path.clone()),
        vm: Value::Value(v.vm.clone()),
    }
}

async fn find(
    client: &Client,
    st: &VolumeState,
) -> Result<Option<pb::Volume>, kcore_client::ClientError> {
    let pool = match &st.pool {
        Value::Value(p) if !p.is_empty() => p.clone(),
        _ => "default".to_string(),
    };
    let volumes = client
        .api()
        .list_volumes(pb::ListVolumesRequest { node: s(&st.node) })
        .await
        .map_err(|e| client.error(e))?
        .into_inner()
        .volumes;
    Ok(volumes
        .into_iter()
        .find(|v| v.name == s(&st.name) && v.pool == pool))
}

#[async_trait]
impl Resource for VolumeResource {
    type State<'a> = VolumeState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let t = AttributeType::String;
        Some(Schema {
            version: 1,
            block: block(
                "An empty volume (qcow2 in a dir pool, raw in an lvm pool) for a VM to take as a disk",
                vec![
                    ("id", computed(t.clone(), "NODE/POOL/NAME")),
                    ("name", required(t.clone(), "[a-z0-9][a-z0-9-]{0,62}")),
                    (
                        "pool",
                        optional_computed(t.clone(), "Pool (default \"default\")"),
                    ),
                    ("size_gb", required(AttributeType::Number, "Size in GiB")),
                    (
                        "node",
                        optional_computed(t.clone(), "Node (default: the only node)"),
                    ),
                    ("format", computed(t.clone(), "qcow2 or raw")),
                    ("path", computed(t.clone(), "Where it is on the node")),
                    ("vm", computed(t, "The VM using it (empty: none)")),
                ],
                vec![],
            ),
        })
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.0.client(diags)?;
        match find(&client, &state).await {
            Ok(Some(v)) => Some((from_volume(&v, &state), private)),
            Ok(None) => None,
            Err(e) if diag::is_not_found(&e) => None,
            Err(e) => {
                diag::api(diags, format!("reading volume {}", s(&state.name)), &e);
                Some((state, private))
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        _diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let mut planned = proposed;
        planned.id = Value::Unknown;
        planned.format = Value::Unknown;
        planned.path = Value::Unknown;
        planned.vm = Value::Unknown;
        for v in [&mut planned.pool, &mut planned.node] {
            if v.is_null() {
                *v = Value::Unknown;
            }
        }
        Some((planned, ValueEmpty::default()))
    }

    async fn plan_update<'a>(
        &self,
        _diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        let mut replace = changed(&[("name", &prior.name, &config.name)], false);
        replace.extend(changed(
            &[
                ("pool", &prior.pool, &config.pool),
                ("node", &prior.node, &config.node),
            ],
            true,
        ));
        if prior.size_gb != config.size_gb {
            replace.push(AttributePath::new("size_gb"));
        }
        Some((proposed, private, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.0.client(diags)?;
        let name = s(&planned.name);
        let size_gb = match u32_of(&planned.size_gb, "size_gb") {
            Ok(n) => n,
            Err(e) => {
                diag::attr(diags, "size_gb", e);
                return None;
            }
        };
        let request = pb::CreateVolumeRequest {
            name: name.clone(),
            pool: s(&planned.pool),
            size_gb,
            node: s(&planned.node),
        };
        match client.api().create_volume(request).await {
            Ok(r) => Some((from_volume(&r.into_inner(), &planned), private)),
            Err(st) => {
                diag::api(diags, format!("creating volume {name}"), &client.error(st));
                None
            }
        }
    }

    async fn update<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        Some((planned, private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        let client = self.0.client(diags)?;
        let name = s(&state.name);
        let request = pb::DeleteVolumeRequest {
            name: name.clone(),
            pool: s(&state.pool),
            node: s(&state.node),
        };
        let result = client.api().delete_volume(request).await;
        diag::deleted(diags, &client, format!("deleting volume {name}"), result)
    }
}

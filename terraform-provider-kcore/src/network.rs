//! `kcore_network`: CreateNetwork / GetNetwork / DeleteNetwork. Every attribute but the
//! computed ones replaces the network when changed (the API has no update). Import by name.

use async_trait::async_trait;
use kcore_client::Client;
use kcore_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};

use crate::diag;
use crate::provider::Shared;
use crate::schema::{block, computed, optional, optional_computed, required, s, str_like};

pub struct NetworkResource(pub Shared);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkState {
    pub id: Value<String>,
    pub name: Value<String>,
    pub mode: Value<String>,
    pub subnet: Value<String>,
    pub bridge: Value<String>,
    pub uplink: Value<String>,
    pub gateway: Value<String>,
}

const MODES: &[(&str, pb::NetworkMode)] = &[
    ("nat", pb::NetworkMode::Nat),
    ("bridge", pb::NetworkMode::Bridge),
];

fn mode_name(mode: i32) -> &'static str {
    MODES
        .iter()
        .find(|(_, m)| *m as i32 == mode)
        .map_or("", |(n, _)| n)
}

pub fn from_network(n: &pb::Network, prior: &NetworkState) -> NetworkState {
    NetworkState {
        id: Value::Value(n.name.clone()),
        name: Value::Value(n.name.clone()),
        mode: Value::Value(mode_name(n.mode).to_string()),
        subnet: str_like(&n.subnet, &prior.subnet),
        bridge: Value::Value(n.bridge.clone()),
        uplink: str_like(&n.uplink, &prior.uplink),
        gateway: Value::Value(n.gateway.clone()),
    }
}

async fn get(client: &Client, name: &str) -> Result<pb::Network, kcore_client::ClientError> {
    client
        .api()
        .get_network(pb::GetNetworkRequest {
            name: name.to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|st| client.error(st))
}

#[async_trait]
impl Resource for NetworkResource {
    type State<'a> = NetworkState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let t = AttributeType::String;
        Some(Schema {
            version: 1,
            block: block(
                "A kcore network, present on every node",
                vec![
                    ("id", computed(t.clone(), "The network's name")),
                    ("name", required(t.clone(), "[a-z0-9][a-z0-9-]{0,62}")),
                    ("mode", required(t.clone(), "nat or bridge")),
                    ("subnet", optional(t.clone(), "nat: the IPv4 subnet (CIDR)")),
                    (
                        "bridge",
                        optional_computed(
                            t.clone(),
                            "bridge: the host bridge; nat: kcore's own (default kbr-NAME)",
                        ),
                    ),
                    (
                        "uplink",
                        optional(
                            t.clone(),
                            "bridge: a host interface kcore makes a port of the bridge it creates",
                        ),
                    ),
                    (
                        "gateway",
                        computed(t, "nat: the gateway address (the subnet's first host)"),
                    ),
                ],
                vec![],
            ),
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        if let Value::Value(m) = &config.mode
            && !MODES.iter().any(|(n, _)| n == m)
        {
            diag::attr(
                diags,
                "mode",
                format!("mode {m:?} is not one of nat, bridge"),
            );
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.0.client(diags)?;
        match get(&client, &s(&state.name)).await {
            Ok(n) => Some((from_network(&n, &state), private)),
            Err(e) if diag::is_not_found(&e) => None,
            Err(e) => {
                diag::api(diags, format!("reading network {}", s(&state.name)), &e);
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
        planned.gateway = Value::Unknown;
        if planned.bridge.is_null() {
            planned.bridge = Value::Unknown;
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
        let mut replace = Vec::new();
        for (name, p, c) in [
            ("name", &prior.name, &config.name),
            ("mode", &prior.mode, &config.mode),
            ("subnet", &prior.subnet, &config.subnet),
            ("uplink", &prior.uplink, &config.uplink),
        ] {
            if s(p) != s(c) || c.is_unknown() {
                replace.push(AttributePath::new(name));
            }
        }
        if config.bridge.is_value() && s(&prior.bridge) != s(&config.bridge) {
            replace.push(AttributePath::new("bridge"));
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
        let mode = MODES
            .iter()
            .find(|(n, _)| *n == s(&planned.mode))
            .map_or(pb::NetworkMode::Unspecified, |(_, m)| *m);
        let request = pb::CreateNetworkRequest {
            name: s(&planned.name),
            mode: mode as i32,
            subnet: s(&planned.subnet),
            bridge: s(&planned.bridge),
            uplink: s(&planned.uplink),
        };
        match client.api().create_network(request).await {
            Ok(r) => {
                let n = from_network(&r.into_inner(), &planned);
                let mut out = planned;
                out.id = n.id;
                out.gateway = n.gateway;
                if out.bridge.is_unknown() {
                    out.bridge = n.bridge;
                }
                Some((out, private))
            }
            Err(st) => {
                diag::api(
                    diags,
                    format!("creating network {}", s(&planned.name)),
                    &client.error(st),
                );
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
        // Every change replaces: nothing reaches here but no-ops.
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
        let result = client
            .api()
            .delete_network(pb::DeleteNetworkRequest { name: name.clone() })
            .await;
        diag::deleted(diags, &client, format!("deleting network {name}"), result)
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.0.client(diags)?;
        match get(&client, &id).await {
            Ok(n) => Some((
                from_network(&n, &NetworkState::default()),
                ValueEmpty::default(),
            )),
            Err(e) => {
                diag::api(diags, format!("importing network {id}"), &e);
                None
            }
        }
    }
}

//! Memory-snapshot templates (docs/templates.md), what a `kcore_vm` with `template`
//! starts from: the `kcore_template` data source (GetTemplate, by name) and the
//! `kcore_template` resource (CreateTemplate of a running, ready VM; any change replaces
//! it; DeleteTemplate, refused while clones exist).

use async_trait::async_trait;
use kcore_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tf_provider::schema::Attribute;
use tf_provider::schema::{AttributeType, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, DataSource, Diagnostics, Resource};

use crate::diag;
use crate::provider::Shared;
use crate::schema::{block, computed, optional, required, s};
use crate::vm::machine_name;

pub struct TemplateData(pub Shared);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TemplateState {
    pub name: Value<String>,
    pub id: Value<String>,
    pub node: Value<String>,
    pub source_vm: Value<String>,
    pub vcpu: Value<i64>,
    pub memory_mb: Value<i64>,
    pub machine: Value<String>,
    pub created_at: Value<String>,
    pub size_bytes: Value<i64>,
    pub disks: Value<i64>,
    pub clones: Value<Vec<Value<String>>>,
    pub clone_count: Value<i64>,
}

impl TemplateState {
    /// The state of template `t` as the API reports it.
    pub fn of(t: &pb::Template) -> TemplateState {
        TemplateState {
            name: Value::Value(t.name.clone()),
            id: Value::Value(t.name.clone()),
            node: Value::Value(t.node.clone()),
            source_vm: Value::Value(t.source_vm.clone()),
            vcpu: Value::Value(i64::from(t.vcpu)),
            memory_mb: Value::Value(i64::from(t.memory_mb)),
            machine: Value::Value(machine_name(t.machine).to_string()),
            created_at: Value::Value(t.created_at.clone()),
            size_bytes: Value::Value(i64::try_from(t.size_bytes).unwrap_or(i64::MAX)),
            disks: Value::Value(i64::from(t.disks)),
            clones: Value::Value(t.clones.iter().cloned().map(Value::Value).collect()),
            clone_count: Value::Value(i64::try_from(t.clones.len()).unwrap_or(i64::MAX)),
        }
    }
}

/// The attributes the API reports of a template (computed in both the data source and
/// the resource).
fn reported() -> Vec<(&'static str, Attribute)> {
    let (t, n) = (AttributeType::String, AttributeType::Number);
    vec![
        ("id", computed(t.clone(), "The template's name")),
        (
            "node",
            computed(t.clone(), "The node it is on (its clones run there)"),
        ),
        (
            "source_vm",
            computed(t.clone(), "The VM it was taken from (as named then)"),
        ),
        ("vcpu", computed(n.clone(), "The vCPUs its clones have")),
        (
            "memory_mb",
            computed(n.clone(), "The memory its clones have, in MiB"),
        ),
        (
            "machine",
            computed(t.clone(), "The machine its clones have (q35 or pc)"),
        ),
        (
            "created_at",
            computed(t.clone(), "When it was taken (RFC 3339)"),
        ),
        (
            "size_bytes",
            computed(n.clone(), "Bytes its files take on the node"),
        ),
        (
            "disks",
            computed(n.clone(), "How many disks its clones get"),
        ),
        (
            "clones",
            computed(
                AttributeType::List(Box::new(t)),
                "The VMs cloned from it, by name",
            ),
        ),
        (
            "clone_count",
            computed(n, "How many VMs were cloned from it"),
        ),
    ]
}

#[async_trait]
impl DataSource for TemplateData {
    type State<'a> = TemplateState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut attributes = vec![(
            "name",
            required(AttributeType::String, "The template's name"),
        )];
        attributes.extend(reported());
        Some(Schema {
            version: 1,
            block: block(
                "A memory-snapshot template, by name (its clones: kcore_vm with template)",
                attributes,
                vec![],
            ),
        })
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::State<'a>> {
        let client = self.0.client(diags)?;
        let name = s(&config.name);
        match get(&client, &name).await {
            Ok(t) => Some(TemplateState::of(&t)),
            Err(e) => {
                diag::api(diags, format!("reading template {name}"), &e);
                None
            }
        }
    }
}

// ---- the resource

pub struct TemplateResource(pub Shared);

/// `kcore_template` as a resource: what to take (`name`, `from_vm`, `stop_source`) and
/// what the API reports of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TemplateResourceState {
    pub name: Value<String>,
    pub from_vm: Value<String>,
    pub stop_source: Value<bool>,
    pub id: Value<String>,
    pub node: Value<String>,
    pub source_vm: Value<String>,
    pub vcpu: Value<i64>,
    pub memory_mb: Value<i64>,
    pub machine: Value<String>,
    pub created_at: Value<String>,
    pub size_bytes: Value<i64>,
    pub disks: Value<i64>,
    pub clones: Value<Vec<Value<String>>>,
    pub clone_count: Value<i64>,
}

impl TemplateResourceState {
    /// `t` as the API reports it, with what was asked (`from_vm`, `stop_source`) kept.
    fn of(t: &pb::Template, asked: &TemplateResourceState) -> TemplateResourceState {
        let r = TemplateState::of(t);
        TemplateResourceState {
            name: r.name,
            from_vm: asked.from_vm.clone(),
            stop_source: asked.stop_source,
            id: r.id,
            node: r.node,
            source_vm: r.source_vm,
            vcpu: r.vcpu,
            memory_mb: r.memory_mb,
            machine: r.machine,
            created_at: r.created_at,
            size_bytes: r.size_bytes,
            disks: r.disks,
            clones: r.clones,
            clone_count: r.clone_count,
        }
    }
}

async fn get(
    client: &kcore_client::Client,
    name: &str,
) -> Result<pb::Template, kcore_client::ClientError> {
    client
        .api()
        .get_template(pb::GetTemplateRequest {
            name: name.to_string(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|st| client.error(st))
}

/// The API changes nothing of a template: any change of what was asked replaces it.
fn replace_paths(
    prior: &TemplateResourceState,
    config: &TemplateResourceState,
) -> Vec<AttributePath> {
    let mut replace = crate::schema::changed(
        &[
            ("name", &prior.name, &config.name),
            ("from_vm", &prior.from_vm, &config.from_vm),
        ],
        false,
    );
    let stop = |v: &Value<bool>| matches!(v, Value::Value(true));
    if config.stop_source.is_unknown() || stop(&prior.stop_source) != stop(&config.stop_source) {
        replace.push(AttributePath::new("stop_source"));
    }
    replace
}

#[async_trait]
impl Resource for TemplateResource {
    type State<'a> = TemplateResourceState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let t = AttributeType::String;
        let mut attributes = vec![
            (
                "name",
                required(
                    t.clone(),
                    "[a-z0-9][a-z0-9-]{0,62}, unique in the cluster; replaces the template when changed",
                ),
            ),
            (
                "from_vm",
                required(
                    t,
                    "The VM to take it of (name or id): RUNNING, its guest ready, q35 or pc, no NICs; replaces the template when changed",
                ),
            ),
            (
                "stop_source",
                optional(
                    AttributeType::Bool,
                    "Stop the VM once its state is saved (default false: it runs on after a short pause); replaces the template when changed",
                ),
            ),
        ];
        attributes.extend(reported());
        Some(Schema {
            version: 1,
            block: block(
                "A memory-snapshot template taken of a running, ready VM (docs/templates.md); kcore_vm with template clones it",
                attributes,
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
        let name = s(&state.name);
        match get(&client, &name).await {
            Ok(t) => Some((TemplateResourceState::of(&t, &state), private)),
            Err(e) if diag::is_not_found(&e) => None,
            Err(e) => {
                diag::api(diags, format!("reading template {name}"), &e);
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
        let planned = TemplateResourceState {
            id: Value::Unknown,
            node: Value::Unknown,
            source_vm: Value::Unknown,
            vcpu: Value::Unknown,
            memory_mb: Value::Unknown,
            machine: Value::Unknown,
            created_at: Value::Unknown,
            size_bytes: Value::Unknown,
            disks: Value::Unknown,
            clones: Value::Unknown,
            clone_count: Value::Unknown,
            ..proposed
        };
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
        let replace = replace_paths(&prior, &config);
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
        let request = pb::CreateTemplateRequest {
            name: name.clone(),
            from_vm: s(&planned.from_vm),
            stop_source: matches!(planned.stop_source, Value::Value(true)),
        };
        match client.api().create_template(request).await {
            Ok(r) => Some((
                TemplateResourceState::of(&r.into_inner(), &planned),
                private,
            )),
            Err(st) => {
                // The server removes a template it could not finish: nothing to record.
                diag::api(
                    diags,
                    format!("creating template {name}"),
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
            .delete_template(pb::DeleteTemplateRequest { name: name.clone() })
            .await;
        diag::deleted(diags, &client, format!("deleting template {name}"), result)
    }

    async fn import<'a>(
        &self,
        diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.0.client(diags)?;
        match get(&client, &id).await {
            Ok(t) => {
                let asked = TemplateResourceState {
                    from_vm: Value::Value(t.source_vm.clone()),
                    ..Default::default()
                };
                Some((TemplateResourceState::of(&t, &asked), ValueEmpty::default()))
            }
            Err(e) => {
                diag::api(diags, format!("importing template {id}"), &e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Template as kcored answers GetTemplate (fields as controller/templates.rs fills
    /// them).
    #[test]
    fn the_state_is_the_servers_template() {
        let t = pb::Template {
            name: "tpl".into(),
            node: "node1".into(),
            source_vm: "gold".into(),
            vcpu: 1,
            memory_mb: 128,
            machine: pb::MachineType::Q35 as i32,
            created_at: "2026-11-29T09:30:00Z".into(),
            size_bytes: 3 << 20,
            disks: 1,
            clones: vec!["kid-1".into(), "kid-2".into()],
        };
        let st = TemplateState::of(&t);
        assert_eq!(st.id, Value::Value("tpl".to_string()));
        assert_eq!(st.machine, Value::Value("q35".to_string()));
        assert_eq!(st.memory_mb, Value::Value(128));
        assert_eq!(st.clone_count, Value::Value(2));
        assert_eq!(
            st.clones,
            Value::Value(vec![
                Value::Value("kid-1".to_string()),
                Value::Value("kid-2".to_string())
            ])
        );
    }

    #[test]
    fn the_resource_keeps_what_was_asked_and_any_change_replaces() {
        let t = pb::Template {
            name: "t2".into(),
            node: "node1".into(),
            source_vm: "src".into(),
            memory_mb: 96,
            vcpu: 1,
            ..Default::default()
        };
        let asked = TemplateResourceState {
            name: Value::Value("t2".into()),
            from_vm: Value::Value("src".into()),
            ..Default::default()
        };
        let st = TemplateResourceState::of(&t, &asked);
        assert_eq!(st.from_vm, asked.from_vm);
        assert_eq!(st.stop_source, Value::Null);
        assert_eq!(st.memory_mb, Value::Value(96));
        assert!(replace_paths(&st, &asked).is_empty());
        let mut other = asked.clone();
        other.stop_source = Value::Value(false);
        assert!(
            replace_paths(&st, &other).is_empty(),
            "false is the default"
        );
        other.stop_source = Value::Value(true);
        other.from_vm = Value::Value("gold".into());
        assert_eq!(
            replace_paths(&st, &other),
            [
                AttributePath::new("from_vm"),
                AttributePath::new("stop_source")
            ]
        );
    }
}

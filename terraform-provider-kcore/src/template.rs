//! The `kcore_template` data source: a memory-snapshot template by name (GetTemplate),
//! what a `kcore_vm` with `template` starts from (docs/templates.md).

use async_trait::async_trait;
use kcore_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{DataSource, Diagnostics};

use crate::diag;
use crate::provider::Shared;
use crate::schema::{block, computed, required, s};
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

#[async_trait]
impl DataSource for TemplateData {
    type State<'a> = TemplateState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let (t, n) = (AttributeType::String, AttributeType::Number);
        Some(Schema {
            version: 1,
            block: block(
                "A memory-snapshot template, by name (its clones: kcore_vm with template)",
                vec![
                    ("name", required(t.clone(), "The template's name")),
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
                ],
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
        match client
            .api()
            .get_template(pb::GetTemplateRequest { name: name.clone() })
            .await
        {
            Ok(r) => Some(TemplateState::of(&r.into_inner())),
            Err(st) => {
                diag::api(diags, format!("reading template {name}"), &client.error(st));
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
}

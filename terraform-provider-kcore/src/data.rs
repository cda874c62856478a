//! Data sources: `kcore_nodes` (ListNodes), `kcore_vm` (GetVM), `kcore_images`
//! (ListImages).

use async_trait::async_trait;
use kcore_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{DataSource, Diagnostics};

use crate::diag;
use crate::provider::Shared;
use crate::schema::{block, computed, object, optional, required, s};
use crate::vm::{machine_name, profile_name, status_name};

fn v<T>(x: T) -> Value<T> {
    Value::Value(x)
}

fn n(x: u32) -> Value<i64> {
    Value::Value(i64::from(x))
}

fn big(x: u64) -> Value<i64> {
    Value::Value(i64::try_from(x).unwrap_or(i64::MAX))
}

fn list_of(t: AttributeType) -> AttributeType {
    AttributeType::List(Box::new(t))
}

// ---- kcore_nodes

pub struct NodesData(pub Shared);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Allocation {
    pub vcpu: Value<i64>,
    pub memory_mb: Value<i64>,
    pub vms: Value<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeItem {
    pub name: Value<String>,
    pub state: Value<String>,
    pub cpus: Value<i64>,
    pub memory_mb: Value<i64>,
    pub cordoned: Value<bool>,
    pub allocation: Value<Allocation>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodesState {
    pub id: Value<String>,
    pub nodes: Value<Vec<NodeItem>>,
}

fn node_state(state: i32) -> String {
    pb::NodeState::try_from(state)
        .unwrap_or(pb::NodeState::Unspecified)
        .as_str_name()
        .trim_start_matches("NODE_STATE_")
        .to_string()
}

#[async_trait]
impl DataSource for NodesData {
    type State<'a> = NodesState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let (t, num) = (AttributeType::String, AttributeType::Number);
        let allocation = object(&[
            ("vcpu", num.clone()),
            ("memory_mb", num.clone()),
            ("vms", num.clone()),
        ]);
        let node = object(&[
            ("name", t.clone()),
            ("state", t.clone()),
            ("cpus", num.clone()),
            ("memory_mb", num),
            ("cordoned", AttributeType::Bool),
            ("allocation", allocation),
        ]);
        Some(Schema {
            version: 1,
            block: block(
                "The cluster's nodes",
                vec![
                    ("id", computed(t, "Always \"nodes\"")),
                    (
                        "nodes",
                        computed(
                            list_of(node),
                            "name, state (READY, NOT_READY), cpus, memory_mb, cordoned, allocation { vcpu, memory_mb, vms }",
                        ),
                    ),
                ],
                vec![],
            ),
        })
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        _config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::State<'a>> {
        let client = self.0.client(diags)?;
        let nodes = match client.api().list_nodes(pb::ListNodesRequest {}).await {
            Ok(r) => r.into_inner().nodes,
            Err(st) => {
                diag::api(diags, "listing nodes", &client.error(st));
                return None;
            }
        };
        let nodes = nodes
            .iter()
            .map(|node| NodeItem {
                name: v(node.name.clone()),
                state: v(node_state(node.state)),
                cpus: n(node.cpus),
                memory_mb: n(node.memory_mb),
                cordoned: v(node.cordoned),
                allocation: v(Allocation {
                    vcpu: n(node.allocated_vcpu),
                    memory_mb: n(node.allocated_memory_mb),
                    vms: n(node.vm_count),
                }),
            })
            .collect();
        Some(NodesState {
            id: v("nodes".to_string()),
            nodes: v(nodes),
        })
    }
}

// ---- kcore_vm

pub struct VmData(pub Shared);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NicItem {
    pub network: Value<String>,
    pub mac: Value<String>,
    pub model: Value<String>,
    pub ipv4: Value<String>,
    pub tap: Value<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct VmDataState {
    pub name: Value<String>,
    pub id: Value<String>,
    pub node: Value<String>,
    pub status: Value<String>,
    pub vcpu: Value<i64>,
    pub memory_mb: Value<i64>,
    pub pid: Value<i64>,
    pub ipv4: Value<String>,
    pub ready: Value<bool>,
    pub profile: Value<String>,
    pub machine: Value<String>,
    pub template: Value<String>,
    pub nics: Value<Vec<NicItem>>,
}

#[async_trait]
impl DataSource for VmData {
    type State<'a> = VmDataState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let (t, num) = (AttributeType::String, AttributeType::Number);
        let nic = object(&[
            ("network", t.clone()),
            ("mac", t.clone()),
            ("model", t.clone()),
            ("ipv4", t.clone()),
            ("tap", t.clone()),
        ]);
        Some(Schema {
            version: 1,
            block: block(
                "A VM, by name or id",
                vec![
                    ("name", required(t.clone(), "Name or id")),
                    ("id", computed(t.clone(), "The VM's id")),
                    ("node", computed(t.clone(), "Its node")),
                    ("status", computed(t.clone(), "RUNNING, STOPPED, ...")),
                    ("vcpu", computed(num.clone(), "vCPUs")),
                    ("memory_mb", computed(num.clone(), "Memory in MiB")),
                    ("pid", computed(num, "QEMU's pid (0 when not running)")),
                    (
                        "ipv4",
                        computed(t.clone(), "The first NIC's leased address"),
                    ),
                    (
                        "ready",
                        computed(AttributeType::Bool, "The last start reached guest_ready"),
                    ),
                    ("profile", computed(t.clone(), "standard or fast")),
                    ("machine", computed(t.clone(), "q35, pc or microvm")),
                    (
                        "template",
                        computed(t, "The template it was cloned from (empty: none)"),
                    ),
                    (
                        "nics",
                        computed(list_of(nic), "network, mac, model, ipv4, tap"),
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
        let vm = match client
            .api()
            .get_vm(pb::GetVmRequest { name: name.clone() })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(st) => {
                diag::api(diags, format!("reading VM {name}"), &client.error(st));
                return None;
            }
        };
        let ready = vm
            .timeline
            .as_ref()
            .is_some_and(|t| t.phases.iter().any(|p| p.name == "guest_ready"));
        let spec = vm.spec.clone().unwrap_or_default();
        Some(VmDataState {
            name: config.name,
            profile: v(profile_name(spec.profile).to_string()),
            machine: v(machine_name(spec.machine).to_string()),
            template: v(spec.template),
            id: v(vm.id.clone()),
            node: v(vm.node.clone()),
            status: v(status_name(vm.status)),
            vcpu: n(vm.vcpu),
            memory_mb: n(vm.memory_mb),
            pid: v(i64::from(vm.pid)),
            ipv4: v(vm.nics.first().map(|n| n.ip.clone()).unwrap_or_default()),
            ready: v(ready),
            nics: v(vm
                .nics
                .iter()
                .map(|nic| NicItem {
                    network: v(nic.network.clone()),
                    mac: v(nic.mac.clone()),
                    model: v(nic.model.clone()),
                    ipv4: v(nic.ip.clone()),
                    tap: v(nic.tap.clone()),
                })
                .collect()),
        })
    }
}

// ---- kcore_images

pub struct ImagesData(pub Shared);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageItem {
    pub name: Value<String>,
    pub node: Value<String>,
    pub pool: Value<String>,
    pub format: Value<String>,
    pub virtual_size: Value<i64>,
    pub sha256: Value<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImagesState {
    pub id: Value<String>,
    pub node: Value<String>,
    pub images: Value<Vec<ImageItem>>,
}

#[async_trait]
impl DataSource for ImagesData {
    type State<'a> = ImagesState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let t = AttributeType::String;
        let image = object(&[
            ("name", t.clone()),
            ("node", t.clone()),
            ("pool", t.clone()),
            ("format", t.clone()),
            ("virtual_size", AttributeType::Number),
            ("sha256", t.clone()),
        ]);
        Some(Schema {
            version: 1,
            block: block(
                "The images nodes can clone boot disks from",
                vec![
                    ("id", computed(t.clone(), "The node, or \"all\"")),
                    ("node", optional(t, "Only this node's images")),
                    (
                        "images",
                        computed(
                            list_of(image),
                            "name, node, pool, format, virtual_size, sha256",
                        ),
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
        let node = s(&config.node);
        let images = match client
            .api()
            .list_images(pb::ListImagesRequest { node: node.clone() })
            .await
        {
            Ok(r) => r.into_inner().images,
            Err(st) => {
                diag::api(diags, "listing images", &client.error(st));
                return None;
            }
        };
        Some(ImagesState {
            id: v(if node.is_empty() {
                "all".to_string()
            } else {
                node
            }),
            node: config.node,
            images: v(images
                .iter()
                .map(|i| ImageItem {
                    name: v(i.name.clone()),
                    node: v(i.node.clone()),
                    pool: v(i.pool.clone()),
                    format: v(i.format.clone()),
                    virtual_size: big(i.virtual_size),
                    sha256: v(i.sha256.clone()),
                })
                .collect()),
        })
    }
}

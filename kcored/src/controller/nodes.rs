//! The controller's links to node agents: a `NodeAgent` client per node, the node's info,
//! whether it is reachable, and the task that follows its stream of VM changes.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use kcore_proto::v1 as pb;
use kcore_proto::v1::node_agent_client::NodeAgentClient;
use tonic::transport::Channel;

use super::{Controller, store};
use crate::convert::now_rfc3339;
use crate::error::{ApiError, ApiResult};

/// One node as the controller sees it.
#[derive(Debug, Clone)]
pub struct NodeLink {
    pub name: String,
    pub address: String,
    pub client: NodeAgentClient<Channel>,
    pub info: pb::NodeInfo,
    pub ready: bool,
    pub last_heartbeat: String,
}

/// All nodes, by name.
#[derive(Debug, Default)]
pub struct Nodes {
    links: RwLock<HashMap<String, NodeLink>>,
}

impl Nodes {
    pub fn get(&self, name: &str) -> ApiResult<NodeLink> {
        self.links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("no node named {name:?}")))
    }

    /// A ready node's client, or UNAVAILABLE.
    pub fn client(&self, name: &str) -> ApiResult<NodeAgentClient<Channel>> {
        let link = self.get(name)?;
        if !link.ready {
            return Err(ApiError::Unavailable(format!("node {name} is not ready")));
        }
        Ok(link.client)
    }

    pub fn all(&self) -> Vec<NodeLink> {
        let mut v: Vec<NodeLink> = self
            .links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut NodeLink)) {
        if let Some(l) = self
            .links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(name)
        {
            f(l);
        }
    }

    fn insert(&self, link: NodeLink) {
        self.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(link.name.clone(), link);
    }
}

impl Controller {
    /// Dial a registered node's NodeAgent at `address` (host:port) over mutual TLS,
    /// verifying its certificate by the node `name`.
    async fn dial_remote(&self, name: &str, address: &str) -> anyhow::Result<Channel> {
        let tls = self
            .node_tls
            .get()
            .ok_or_else(|| anyhow::anyhow!("the controller has no TLS configuration yet"))?
            .clone()
            .domain_name(name);
        let ch = tonic::transport::Endpoint::from_shared(format!("https://{address}"))?
            .tls_config(tls)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        Ok(ch)
    }

    /// A node registered: remember it and follow it (unless already followed there).
    pub async fn register_node(self: &Arc<Self>, name: &str, address: &str) -> ApiResult<()> {
        super::vms::validate_name(name)?;
        if address.parse::<std::net::SocketAddr>().is_err()
            && address
                .rsplit_once(':')
                .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(ApiError::InvalidArgument(format!(
                "address {address:?}: expected host:port"
            )));
        }
        if let Ok(link) = self.nodes.get(name) {
            if link.address == address {
                return Ok(());
            }
            if link.address.starts_with("unix://") {
                return Err(ApiError::AlreadyExists(format!(
                    "node {name} is a local node of this controller"
                )));
            }
        }
        self.store.upsert_node(name, address)?;
        let ch = self.dial_remote(name, address).await.map_err(|e| {
            ApiError::Unavailable(format!("cannot reach node {name} at {address}: {e:#}"))
        })?;
        let got = self
            .add_node(address.to_string(), ch)
            .await
            .map_err(|e| ApiError::Unavailable(format!("node {name} at {address}: {e:#}")))?;
        if got != name {
            return Err(ApiError::InvalidArgument(format!(
                "the node at {address} calls itself {got:?}, not {name:?}"
            )));
        }
        tracing::info!(node = name, address, "node registered");
        Ok(())
    }

    /// Follow the nodes registered before this start, each retried until it answers.
    pub fn follow_registered_nodes(self: &Arc<Self>) -> ApiResult<()> {
        for (name, address) in self.store.list_nodes()? {
            let me = self.clone();
            tokio::spawn(async move {
                loop {
                    if me.nodes.get(&name).is_ok() {
                        return;
                    }
                    match me.dial_remote(&name, &address).await {
                        Ok(ch) => match me.add_node(address.clone(), ch).await {
                            Ok(_) => return,
                            Err(e) => tracing::info!(node = %name, error = %e, "node not ready"),
                        },
                        Err(e) => tracing::info!(node = %name, error = %e, "cannot reach node"),
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            });
        }
        Ok(())
    }

    /// Connect to a node agent, learn what it is, and follow its VMs from now on.
    pub async fn add_node(
        self: &Arc<Self>,
        address: String,
        channel: Channel,
    ) -> anyhow::Result<String> {
        let mut client = NodeAgentClient::new(channel);
        let info = client
            .get_node_info(pb::GetNodeInfoRequest {})
            .await?
            .into_inner();
        let name = info.name.clone();
        let address_of_link = address.clone();
        self.nodes.insert(NodeLink {
            name: name.clone(),
            address,
            client: client.clone(),
            info,
            ready: false,
            last_heartbeat: String::new(),
        });
        // Take in the node's current view before serving anything.
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(self.clone().follow_node(
            name.clone(),
            address_of_link,
            client,
            Some(first_tx),
        ));
        let _ = tokio::time::timeout(Duration::from_secs(10), first_rx).await;
        Ok(name)
    }

    async fn follow_node(
        self: Arc<Self>,
        name: String,
        address: String,
        mut client: NodeAgentClient<Channel>,
        mut first: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        // Stop once the node was re-added at another address (a new follower has it).
        let current = |me: &Self| me.nodes.get(&name).is_ok_and(|l| l.address == address);
        loop {
            if !current(&self) {
                return;
            }
            match client.watch_node_v_ms(pb::WatchNodeVMsRequest {}).await {
                Ok(resp) => {
                    let mut stream = resp.into_inner();
                    self.nodes.update(&name, |l| {
                        l.ready = true;
                        l.last_heartbeat = now_rfc3339();
                    });
                    // Networks created or deleted while the node was away.
                    let (me, node, c) = (self.clone(), name.clone(), client.clone());
                    tokio::spawn(async move { me.sync_networks(&node, c).await });
                    loop {
                        match stream.message().await {
                            Ok(Some(ev)) if ev.kind == "synced" => {
                                // The snapshot is in: serve requests from now on.
                                if let Some(tx) = first.take() {
                                    let _ = tx.send(());
                                }
                            }
                            Ok(Some(ev)) => {
                                self.nodes
                                    .update(&name, |l| l.last_heartbeat = now_rfc3339());
                                self.take_event(&ev);
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(node = %name, error = %e, "node stream failed");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(node = %name, error = %e, "cannot watch node"),
            }
            if !current(&self) {
                return;
            }
            self.nodes.update(&name, |l| l.ready = false);
            self.mark_unknown(&name);
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// A node we cannot hear from: its VMs' state is unknown until it comes back.
    fn mark_unknown(&self, node: &str) {
        let Ok(vms) = self.store.list_vms(Some(node)) else {
            return;
        };
        for vm in vms {
            if vm.status != pb::VmStatus::Unknown {
                let reason = format!("node {node} is not reachable");
                if self
                    .store
                    .set_status(&vm.id, pb::VmStatus::Unknown, &reason)
                    .is_ok()
                {
                    let row = store::VmRow {
                        status: pb::VmStatus::Unknown,
                        ..vm
                    };
                    self.emit("vm.status", Some(&row), reason);
                }
            }
        }
    }

    fn take_event(&self, ev: &pb::NodeVmEvent) {
        let Some(vm) = &ev.vm else { return };
        if ev.kind == "undefined" {
            return;
        }
        if let Err(e) = self.apply_node_vm(vm) {
            tracing::warn!(vm = %vm.name, error = %e, "cannot apply node update");
        }
    }

    /// Allocation on a node: (vm count, vcpus, memory MiB) of its VMs that run.
    pub fn allocation(&self, node: &str) -> ApiResult<(u32, u32, u32)> {
        self.store.allocation(node)
    }

    pub fn node_to_pb(&self, l: &NodeLink) -> ApiResult<pb::Node> {
        let (count, cpu, mem) = self.allocation(&l.name)?;
        Ok(pb::Node {
            name: l.name.clone(),
            address: l.address.clone(),
            state: if l.ready {
                pb::NodeState::Ready
            } else {
                pb::NodeState::NotReady
            } as i32,
            cpus: l.info.cpus,
            memory_mb: l.info.memory_mb,
            vm_count: count,
            allocated_vcpu: cpu,
            allocated_memory_mb: mem,
            version: l.info.version.clone(),
            last_heartbeat: l.last_heartbeat.clone(),
            qemu_version: l.info.qemu_version.clone(),
            accel: l.info.accel.clone(),
            hostname: l.info.hostname.clone(),
            cordoned: self.store.is_cordoned(&l.name)?,
        })
    }

    /// Pick a node for a new VM: the asked one, or the ready node with the most free memory.
    pub fn schedule(&self, wanted: &str, spec: &pb::VmSpec) -> ApiResult<String> {
        if !wanted.is_empty() {
            let l = self.nodes.get(wanted)?;
            if !l.ready {
                return Err(ApiError::Unavailable(format!("node {wanted} is not ready")));
            }
            if self.store.is_cordoned(wanted)? {
                return Err(ApiError::FailedPrecondition(format!(
                    "node {wanted} is cordoned (kctl node uncordon {wanted})"
                )));
            }
            return Ok(l.name);
        }
        let all = self.nodes.all();
        let max_mem = all.iter().map(|l| l.info.memory_mb).max().unwrap_or(0);
        let max_cpus = all.iter().map(|l| l.info.cpus).max().unwrap_or(0);
        if !all.is_empty() && spec.memory_mb > max_mem {
            return Err(ApiError::InvalidArgument(format!(
                "memory {} MiB is more than any node has (largest: {max_mem} MiB)",
                spec.memory_mb
            )));
        }
        if !all.is_empty() && spec.vcpu > max_cpus {
            return Err(ApiError::InvalidArgument(format!(
                "vcpu {} is more than any node has (largest: {max_cpus})",
                spec.vcpu
            )));
        }
        let mut best: Option<(i64, String)> = None;
        let mut reasons = Vec::new();
        for l in all {
            if !l.ready {
                reasons.push(format!("{}: not ready", l.name));
                continue;
            }
            if self.store.is_cordoned(&l.name)? {
                reasons.push(format!("{}: cordoned", l.name));
                continue;
            }
            let (_, _, mem) = self.allocation(&l.name)?;
            let free = l.info.memory_mb as i64 - mem as i64;
            if spec.memory_mb as i64 > free {
                reasons.push(format!("{}: {free} MiB free", l.name));
                continue;
            }
            if best.as_ref().is_none_or(|(f, _)| free > *f) {
                best = Some((free, l.name.clone()));
            }
        }
        match best {
            Some((_, n)) => Ok(n),
            None if reasons.is_empty() => Err(ApiError::Unavailable("no nodes".into())),
            None => Err(ApiError::ResourceExhausted(format!(
                "no node fits {} MiB: {}",
                spec.memory_mb,
                reasons.join(", ")
            ))),
        }
    }
}

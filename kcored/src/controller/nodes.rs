//! The controller's links to node agents: a `NodeAgent` client per node, the node's info,
//! whether it is reachable, and the task that follows its stream of VM changes.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tonic::transport::Channel;

use super::node_client::{NodeClient, NodeNews};
use super::{Controller, store};
use crate::convert::now_rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::model::{NodeFacts, NodeInfo, NodeView, PoolView, VmStatus};

/// One node as the controller sees it.
#[derive(Debug, Clone)]
pub struct NodeLink {
    pub name: String,
    pub address: String,
    pub client: NodeClient,
    pub info: NodeInfo,
    pub ready: bool,
    pub last_heartbeat: String,
    /// From the last heartbeat: pools with free space, networks in place, images.
    pub pools: Vec<PoolView>,
    pub networks: Vec<String>,
    pub images: Vec<String>,
    /// Unique per link made: the follower of an older link of the same node stops.
    generation: u64,
}

impl NodeLink {
    fn new(name: String, address: String, client: NodeClient) -> NodeLink {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        NodeLink {
            generation: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            info: NodeInfo {
                name: name.clone(),
                ..Default::default()
            },
            name,
            address,
            client,
            ready: false,
            last_heartbeat: String::new(),
            pools: Vec::new(),
            networks: Vec::new(),
            images: Vec::new(),
        }
    }

    fn take_facts(&mut self, facts: &NodeFacts) {
        if let Some(info) = &facts.info {
            self.info = info.clone();
        }
        self.pools = facts.pools.clone();
        self.networks = facts.networks.clone();
        self.images = facts.images.clone();
    }
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
    pub fn client(&self, name: &str) -> ApiResult<NodeClient> {
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

    /// Forget a node; its follower stops at its next message.
    pub fn remove(&self, name: &str) {
        self.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
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
        Ok(self.endpoint(name, address)?.connect().await?)
    }

    fn endpoint(&self, name: &str, address: &str) -> anyhow::Result<tonic::transport::Endpoint> {
        let tls = self
            .node_tls
            .get()
            .ok_or_else(|| anyhow::anyhow!("the controller has no TLS configuration yet"))?
            .clone()
            .domain_name(name);
        Ok(
            tonic::transport::Endpoint::from_shared(format!("https://{address}"))?
                .tls_config(tls)?
                .connect_timeout(Duration::from_secs(5))
                .tcp_keepalive(Some(Duration::from_secs(10))),
        )
    }

    /// A node registered: remember it and follow it (unless already followed there).
    pub async fn register_node(self: &Arc<Self>, name: &str, address: &str) -> ApiResult<()> {
        kcore_types::NodeName::parse(name)?;
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

    /// Follow the nodes registered before this start. Each is listed (NotReady) at once
    /// and followed from when it answers.
    pub fn follow_registered_nodes(self: &Arc<Self>) -> ApiResult<()> {
        for (name, address) in self.store.list_nodes()? {
            if self.nodes.get(&name).is_ok() {
                continue;
            }
            let ch = match self.endpoint(&name, &address) {
                Ok(e) => e.connect_lazy(),
                Err(e) => {
                    tracing::warn!(node = %name, error = %e, "cannot follow node");
                    continue;
                }
            };
            let client = NodeClient::over(ch);
            let mut link = NodeLink::new(name.clone(), address.clone(), client.clone());
            // What it had when last heard from, until it is heard from again.
            if let Some((facts, at)) = self.store.node_facts(&name)? {
                link.take_facts(&facts);
                link.last_heartbeat = at;
            }
            let generation = link.generation;
            self.nodes.insert(link);
            tokio::spawn(self.clone().follow_node(name, generation, client, None));
        }
        Ok(())
    }

    /// Connect to a node agent, learn what it is, and follow its VMs from now on.
    pub async fn add_node(
        self: &Arc<Self>,
        address: String,
        channel: Channel,
    ) -> anyhow::Result<String> {
        let mut client = NodeClient::over(channel);
        let info = client.info().await?;
        let name = info.name.clone();
        let link = NodeLink {
            info,
            ..NodeLink::new(name.clone(), address, client.clone())
        };
        let generation = link.generation;
        self.nodes.insert(link);
        // Take in the node's current view before serving anything.
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(
            self.clone()
                .follow_node(name.clone(), generation, client, Some(first_tx)),
        );
        let _ = tokio::time::timeout(Duration::from_secs(10), first_rx).await;
        Ok(name)
    }

    async fn follow_node(
        self: Arc<Self>,
        name: String,
        generation: u64,
        mut client: NodeClient,
        mut first: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        // Stop once the node was removed or added again (a new follower has it).
        let current = |me: &Self| {
            me.nodes
                .get(&name)
                .is_ok_and(|l| l.generation == generation)
        };
        let heartbeat_ms = u32::try_from(self.tuning.heartbeat.as_millis()).unwrap_or(u32::MAX);
        let mut was_ready = false;
        // Redial quickly at first (a restarted node is back within ~100 ms), then every 1 s.
        let mut delay = Duration::from_millis(100);
        loop {
            if !current(&self) {
                return;
            }
            let why: String;
            match client.watch(heartbeat_ms).await {
                Ok(mut stream) => {
                    delay = Duration::from_millis(100);
                    // Networks created or deleted while the node was away.
                    let (me, node, c) = (self.clone(), name.clone(), client.clone());
                    tokio::spawn(async move { me.sync_networks(&node, c).await });
                    loop {
                        let got =
                            tokio::time::timeout(self.tuning.node_timeout, stream.next()).await;
                        if !current(&self) {
                            // Removed, or followed at another address now.
                            return;
                        }
                        match got {
                            Ok(Ok(Some(NodeNews::Heartbeat(hb)))) => {
                                self.metrics.heartbeat(&name);
                                if let Some(hb) = hb {
                                    let (facts, vms) = *hb;
                                    let at = now_rfc3339();
                                    self.nodes.update(&name, |l| {
                                        l.take_facts(&facts);
                                        l.last_heartbeat = at.clone();
                                        l.ready = true;
                                    });
                                    if let Err(e) = self.store.save_node_facts(&name, &facts, &at) {
                                        tracing::warn!(node = %name, error = %e, "cannot keep heartbeat");
                                    }
                                    if !was_ready {
                                        was_ready = true;
                                        self.emit_node("node.ready", &name, "heartbeat received");
                                    }
                                    self.reconcile(&name, &client, &vms);
                                }
                                // The snapshot is in: serve requests from now on.
                                if let Some(tx) = first.take() {
                                    let _ = tx.send(());
                                }
                            }
                            Ok(Ok(Some(NodeNews::Vm(vm)))) => {
                                // The other end of a live migration (or its leftover)
                                // is not where the store has the VM: not its news.
                                let elsewhere = self
                                    .store
                                    .get_vm(&vm.id)
                                    .ok()
                                    .flatten()
                                    .is_some_and(|r| r.node != name);
                                if elsewhere {
                                    continue;
                                }
                                if let Err(e) = self.apply_node_vm(&vm) {
                                    tracing::warn!(vm = %vm.name, error = %e, "cannot apply node update");
                                }
                            }
                            Ok(Ok(Some(NodeNews::Undefined))) => {}
                            Ok(Ok(None)) => {
                                why = "the node closed its stream".into();
                                break;
                            }
                            Ok(Err(e)) => {
                                why = format!("stream failed: {e}");
                                break;
                            }
                            Err(_) => {
                                why = format!(
                                    "no heartbeat for {:.1} s",
                                    self.tuning.node_timeout.as_secs_f64()
                                );
                                break;
                            }
                        }
                    }
                }
                Err(e) => why = format!("cannot watch: {e}"),
            }
            if !current(&self) {
                return;
            }
            self.nodes.update(&name, |l| l.ready = false);
            if was_ready {
                was_ready = false;
                self.metrics.not_ready(&name);
                tracing::warn!(node = %name, reason = %why, "node not ready");
                self.emit_node("node.not_ready", &name, why.clone());
            }
            self.mark_unknown(&name);
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Ask every ready node for its networks and images now, instead of waiting for its
    /// next heartbeat.
    pub async fn refresh_node_facts(&self) {
        // Called with the placement lock held: a node that does not answer at once is left
        // with what its last heartbeat said.
        const WAIT: Duration = Duration::from_secs(2);
        let asks = self
            .nodes
            .all()
            .into_iter()
            .filter(|l| l.ready)
            .map(|mut l| async move {
                let nets = tokio::time::timeout(WAIT, l.client.list_networks()).await;
                let images = tokio::time::timeout(WAIT, l.client.list_images()).await;
                (l.name, nets, images)
            });
        for (name, nets, images) in futures::future::join_all(asks).await {
            self.nodes.update(&name, |link| {
                if let Ok(Ok(n)) = nets {
                    link.networks = n
                        .into_iter()
                        .filter(|n| n.status.ready)
                        .map(|n| n.def.name)
                        .collect();
                }
                if let Ok(Ok(i)) = images {
                    link.images = i.into_iter().map(|i| i.name).collect();
                }
            });
        }
    }

    /// A node we cannot hear from: its VMs' state is unknown until it comes back.
    fn mark_unknown(&self, node: &str) {
        let Ok(vms) = self.store.list_vms(Some(node)) else {
            return;
        };
        for vm in vms {
            if vm.status != VmStatus::Unknown {
                let reason = format!("node {node} is not reachable");
                if self
                    .store
                    .set_status(&vm.id, VmStatus::Unknown, &reason)
                    .is_ok()
                {
                    let row = store::VmRow {
                        status: VmStatus::Unknown,
                        ..vm
                    };
                    self.emit("vm.status", Some(&row), reason);
                }
            }
        }
    }

    /// Allocation on a node: (vm count, vcpus, memory MiB) of its VMs that run.
    pub fn allocation(&self, node: &str) -> ApiResult<(u32, u32, u32)> {
        self.store.allocation(node)
    }

    /// A node as the API shows it: its link's facts, its allocation and cordon.
    pub fn node_view(&self, l: &NodeLink) -> ApiResult<NodeView> {
        let (vm_count, allocated_vcpu, allocated_memory_mb) = self.allocation(&l.name)?;
        Ok(NodeView {
            name: l.name.clone(),
            address: l.address.clone(),
            ready: l.ready,
            info: l.info.clone(),
            vm_count,
            allocated_vcpu,
            allocated_memory_mb,
            last_heartbeat: l.last_heartbeat.clone(),
            cordoned: self.store.is_cordoned(&l.name)?,
            pools: l.pools.clone(),
            networks: l.networks.clone(),
        })
    }
}

//! Networks and NICs in the public API. A network is the controller's (the `networks`
//! table) and every node's: the controller pushes it to each node (`EnsureNetwork`), and
//! again to a node that (re)connects, which also drops networks deleted meanwhile. MACs are
//! picked here, unique across the cluster.

use std::collections::HashMap;

use kcore_netstack::MacAddr;

use super::Controller;
use super::node_client::NodeClient;
use super::store::VmRow;
use crate::caller::Requester;
use crate::convert::now_rfc3339;
use crate::error::{ApiError, ApiResult};
use crate::model::{ClusterNetwork, NetworkDef, NetworkMode, NetworkStatus, NicRequest};

fn mode_name(mode: NetworkMode) -> &'static str {
    match mode {
        NetworkMode::Nat => "nat",
        NetworkMode::Bridge => "bridge",
    }
}

/// One error out of several nodes' failures.
fn combine(mut errors: Vec<(String, ApiError)>) -> ApiError {
    if errors.len() == 1
        && let Some((_, e)) = errors.pop()
    {
        return e;
    }
    ApiError::Nodes(errors)
}

impl Controller {
    /// Create a network (checked by [`NetworkDef::new`]) on every ready node, for `by`; it
    /// is kept unless every node failed (each undid its own attempt).
    pub async fn create_network(
        &self,
        by: &Requester,
        mut def: NetworkDef,
    ) -> ApiResult<ClusterNetwork> {
        def.created_at = now_rfc3339();
        let _g = self.net_lock.lock().await;
        if self.store.get_network(&def.name)?.is_some() {
            return Err(ApiError::AlreadyExists(format!(
                "a network named {:?} already exists",
                def.name
            )));
        }
        for other in self.store.list_networks()? {
            if other.bridge == def.bridge {
                return Err(ApiError::InvalidArgument(format!(
                    "bridge {} is network {}'s already",
                    def.bridge, other.name
                )));
            }
            if let (Some(ours), Some(theirs)) = (def.cidr(), other.cidr())
                && ours.overlaps(&theirs)
            {
                return Err(ApiError::InvalidArgument(format!(
                    "subnet {ours} overlaps network {} ({theirs})",
                    other.name
                )));
            }
        }
        self.store.insert_network(&def)?;
        let mut net = ClusterNetwork {
            def,
            nodes: Vec::new(),
            vm_count: 0,
        };
        let mut errors = Vec::new();
        for mut l in self.nodes.all().into_iter().filter(|l| l.ready) {
            match l.client.ensure_network(&net.def).await {
                Ok(st) => net.nodes.push(st),
                Err(e) => {
                    net.nodes
                        .push(NetworkStatus::missing(&l.name, &e.to_string()));
                    errors.push((l.name, e));
                }
            }
        }
        if !errors.is_empty() && net.nodes.iter().all(|n| !n.ready) {
            // Each node undid its own failed first attempt: nothing is left anywhere.
            self.store.delete_network(&net.def.name)?;
            return Err(combine(errors));
        }
        self.emit(
            "network.created",
            None,
            format!(
                "{} ({}) on {} node(s){} by {by}",
                net.def.name,
                mode_name(net.def.mode),
                net.nodes.iter().filter(|n| n.ready).count(),
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(", failed on {}", errors.len())
                }
            ),
        );
        Ok(net)
    }

    /// Every network with how each node has it, and how many VMs use it.
    pub async fn list_networks(&self) -> ApiResult<Vec<ClusterNetwork>> {
        let vms = self.store.list_vms(None)?;
        let mut nets: Vec<ClusterNetwork> = self
            .store
            .list_networks()?
            .into_iter()
            .map(|def| ClusterNetwork {
                vm_count: vms
                    .iter()
                    .filter(|v| v.networks().any(|x| x == def.name))
                    .count() as u32,
                def,
                nodes: Vec::new(),
            })
            .collect();
        for mut l in self.nodes.all() {
            let missing = |message: &str| NetworkStatus::missing(&l.name, message);
            let statuses: Vec<NetworkStatus> = if !l.ready {
                nets.iter().map(|_| missing("node not ready")).collect()
            } else {
                match l.client.list_networks().await {
                    Ok(have) => nets
                        .iter()
                        .map(|n| {
                            have.iter()
                                .find(|h| h.def.name == n.def.name)
                                .map(|h| h.status.clone())
                                .unwrap_or_else(|| missing("not on this node"))
                        })
                        .collect(),
                    Err(e) => nets.iter().map(|_| missing(&e.to_string())).collect(),
                }
            };
            for (n, st) in nets.iter_mut().zip(statuses) {
                n.nodes.push(st);
            }
        }
        Ok(nets)
    }

    pub async fn get_network(&self, name: &str) -> ApiResult<ClusterNetwork> {
        if self.store.get_network(name)?.is_none() {
            return Err(ApiError::NotFound(format!("no network named {name:?}")));
        }
        self.list_networks()
            .await?
            .into_iter()
            .find(|n| n.def.name == name)
            .ok_or_else(|| ApiError::NotFound(format!("no network named {name:?}")))
    }

    /// Delete a network no VM uses, for `by`, from every node it is on, then from the
    /// store. A node that is not ready drops it when it comes back.
    pub async fn delete_network(&self, by: &Requester, name: &str) -> ApiResult<()> {
        let _g = self.net_lock.lock().await;
        if self.store.get_network(name)?.is_none() {
            return Err(ApiError::NotFound(format!("no network named {name:?}")));
        }
        let users: Vec<String> = self
            .store
            .list_vms(None)?
            .into_iter()
            .filter(|v| v.networks().any(|n| n == name))
            .map(|v| v.name)
            .collect();
        if !users.is_empty() {
            return Err(ApiError::FailedPrecondition(format!(
                "network {name} is in use by VM(s) {}: delete them or detach their NICs first",
                users.join(", ")
            )));
        }
        let mut errors = Vec::new();
        for mut l in self.nodes.all().into_iter().filter(|l| l.ready) {
            match l.client.delete_network(name).await {
                Ok(()) => {}
                Err(e) if e.code() == tonic::Code::NotFound => {}
                Err(e) => errors.push((l.name, e)),
            }
        }
        if !errors.is_empty() {
            return Err(combine(errors));
        }
        self.store.delete_network(name)?;
        self.emit("network.deleted", None, format!("{name} by {by}"));
        Ok(())
    }

    /// A node (re)connected: give it every network it lacks (or has not ready), and take
    /// away the ones deleted while it was away.
    pub async fn sync_networks(&self, node: &str, mut client: NodeClient) {
        let _g = self.net_lock.lock().await;
        let (want, have) = match (self.store.list_networks(), client.list_networks().await) {
            (Ok(w), Ok(h)) => (w, h),
            (Err(e), _) | (_, Err(e)) => return tracing::warn!(node, error = %e, "network sync"),
        };
        for n in &want {
            let fine = have.iter().any(|h| h.status.ready && h.def.same_as(n));
            if !fine && let Err(e) = client.ensure_network(n).await {
                tracing::warn!(node, network = %n.name, error = %e, "cannot ensure network");
            }
        }
        for h in &have {
            let name = &h.def.name;
            if want.iter().any(|n| &n.name == name) {
                continue;
            }
            match client.delete_network(name).await {
                Ok(()) => tracing::info!(node, network = %name, "removed a deleted network"),
                Err(e) => {
                    tracing::warn!(node, network = %name, error = %e, "cannot remove network")
                }
            }
        }
    }

    /// Check a VM's NIC requests (`vm` names it in messages): each network exists, each
    /// model is known, each MAC is valid and not used by any VM (or is generated so).
    pub(super) fn assign_macs(&self, vm: &str, nics: &mut [NicRequest]) -> ApiResult<()> {
        if nics.is_empty() {
            return Ok(());
        }
        let mut used: HashMap<MacAddr, String> = HashMap::new();
        for row in self.store.list_vms(None)? {
            for m in row.macs() {
                used.insert(m, row.name.clone());
            }
        }
        for n in nics.iter_mut() {
            if self.store.get_network(&n.network)?.is_none() {
                return Err(ApiError::NotFound(format!(
                    "no network named {:?} (see kctl network list)",
                    n.network.as_str()
                )));
            }
            let mac = match n.mac {
                None => loop {
                    let m = MacAddr::generate()?;
                    if !used.contains_key(&m) {
                        break m;
                    }
                },
                Some(m) => {
                    if let Some(owner) = used.get(&m) {
                        return Err(ApiError::AlreadyExists(format!(
                            "MAC {m} is already used by VM {owner}"
                        )));
                    }
                    m
                }
            };
            n.mac = Some(mac);
            used.insert(mac, vm.to_string());
        }
        Ok(())
    }

    /// Add a NIC to a VM (hot-plugged when it runs), for `by`.
    pub async fn attach_nic(&self, by: &Requester, vm: &str, nic: NicRequest) -> ApiResult<VmRow> {
        let row = self.get_row(vm)?;
        let mut client = self.nodes.client(&row.node)?;
        let _g = self.place_lock.lock().await;
        let mut nic = [nic];
        self.assign_macs(&row.name, &mut nic)?;
        let [nic] = nic;
        let nv = client.attach_nic(&row.id, &nic).await?;
        self.apply_node_vm(&nv)?;
        let row = self.get_row(&row.id)?;
        let mac = nic.mac.map(|m| m.to_string()).unwrap_or_default();
        self.emit(
            "vm.nic",
            Some(&row),
            format!("attached a NIC {mac} on network {} by {by}", nic.network),
        );
        Ok(row)
    }

    /// Remove a NIC from a VM (unplugged when it runs), for `by`.
    pub async fn detach_nic(&self, by: &Requester, vm: &str, nic: &str) -> ApiResult<VmRow> {
        let row = self.get_row(vm)?;
        let nv = self
            .nodes
            .client(&row.node)?
            .detach_nic(&row.id, nic)
            .await?;
        self.apply_node_vm(&nv)?;
        let row = self.get_row(&row.id)?;
        self.emit("vm.nic", Some(&row), format!("detached NIC {nic} by {by}"));
        Ok(row)
    }
}

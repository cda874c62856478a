//! The networks of this node. The controller pushes each network here (`EnsureNetwork`);
//! the node makes it real and keeps the definition in `<data-dir>/networks/<name>.json`, so
//! it ensures it again after a restart:
//!
//! - nat: kcore's bridge (`kbr-<name>`, a fixed MAC, marked as kcore's) with the gateway
//!   address, IPv4 forwarding on, an nftables table `kcore_<name>` that masquerades the
//!   subnet, and a supervised dnsmasq for DHCP and DNS;
//! - bridge with an uplink: kcore's bridge with the uplink as a port;
//! - bridge without one: the host's bridge, checked and joined, never changed.
//!
//! Ensuring is idempotent (an existing bridge is brought back to the spec, a running dnsmasq
//! is adopted). A first ensure that fails removes what it made: no link, process or rule is
//! left behind. Deleting removes everything kcore made for the network and nothing else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use kcore_netstack::dnsmasq::{DnsmasqConfig, Lease, read_leases};
use kcore_netstack::nft::{self, NatSpec};
use kcore_netstack::subnet::{conflicting_routes, host_routes};
use kcore_netstack::{BridgeSpec, MacAddr, Mark, NetError, Netlink};

use super::dnsmasq::Supervisor;
use super::view::{NetworkStatus, NetworkView};
use crate::error::{ApiError, ApiResult};
use crate::netdef::{Mode, NetworkDef};

/// How often networks that are not ready are ensured again.
const REPAIR_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

struct NetState {
    def: NetworkDef,
    ready: bool,
    message: String,
    dnsmasq: Option<Supervisor>,
    /// The lease file's mtime when last looked at.
    leases_seen: Option<SystemTime>,
}

/// This node's networks.
pub struct NodeNetworks {
    pub(super) node: String,
    /// Who made a tap, in its mark: the node's name and a tag of its data dir. Nodes that
    /// share a host (tests, two clusters' nodes of one name, a migration's two ends) never
    /// take each other's taps for leftovers; one daemon per data dir makes the pair unique.
    pub(super) tap_owner: String,
    defs_dir: PathBuf,
    state_root: PathBuf,
    pub(super) nl: Netlink,
    nets: Mutex<BTreeMap<String, NetState>>,
    /// Serializes ensure and delete.
    ops: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for NodeNetworks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeNetworks")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// A fixed bridge MAC for a network (a bridge without one changes address as ports come
/// and go): `52:54:00` and three bytes of a hash of the name.
fn bridge_mac(name: &str) -> MacAddr {
    let mut hash: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    let [a, b, c, _] = hash.to_be_bytes();
    MacAddr::with_tail([a, b, c])
}

fn enable_ip_forward() -> ApiResult<()> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    let now = std::fs::read_to_string(path).unwrap_or_default();
    if now.trim() != "1" {
        std::fs::write(path, "1\n")
            .map_err(|e| ApiError::Internal(format!("enable IPv4 forwarding ({path}): {e}")))?;
        tracing::info!("enabled IPv4 forwarding");
    }
    Ok(())
}

fn write_def(dir: &Path, def: &NetworkDef) -> std::io::Result<()> {
    let data = serde_json::to_vec_pretty(def).map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    crate::atomic_file::atomic_write(&dir.join(format!("{}.json", def.name)), &data, 0o600)
}

/// `node~xxxxxxxx`: the node's name and a hash (FNV-1a, stable across versions) of its
/// data dir's path.
fn tap_owner(node: &str, data_dir: &Path) -> String {
    let path = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let hash = path
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        });
    format!("{node}~{hash:08x}")
}

impl NodeNetworks {
    pub fn open(node: &str, data_dir: &Path, run_dir: &Path) -> anyhow::Result<Self> {
        let defs_dir = data_dir.join("networks");
        let state_root = run_dir.join("networks");
        std::fs::create_dir_all(&defs_dir)?;
        std::fs::create_dir_all(&state_root)?;
        Ok(NodeNetworks {
            node: node.to_string(),
            tap_owner: tap_owner(node, data_dir),
            defs_dir,
            state_root,
            nl: Netlink::new()?,
            nets: Mutex::new(BTreeMap::new()),
            ops: tokio::sync::Mutex::new(()),
        })
    }

    fn nets(&self) -> MutexGuard<'_, BTreeMap<String, NetState>> {
        self.nets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After a restart: ensure every stored network again. One that fails stays known (VMs
    /// refer to it) but not ready, with the reason.
    pub async fn load(&self) {
        let Ok(entries) = std::fs::read_dir(&self.defs_dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let def = match std::fs::read(&path).map(|b| serde_json::from_slice::<NetworkDef>(&b)) {
                Ok(Ok(d)) => d,
                Ok(Err(err)) => {
                    tracing::error!(path = %path.display(), error = %err, "bad network definition");
                    continue;
                }
                Err(err) => {
                    tracing::error!(path = %path.display(), error = %err, "cannot read network");
                    continue;
                }
            };
            let name = def.name.clone();
            // Known before ensuring: a failure then marks it not ready and never tears
            // down a bridge that running VMs' taps are on.
            self.nets().insert(
                name.clone(),
                NetState {
                    def: def.clone(),
                    ready: false,
                    message: "starting".into(),
                    dnsmasq: None,
                    leases_seen: None,
                },
            );
            if let Err(e) = self.ensure(def).await {
                tracing::error!(network = %name, error = %e, "cannot ensure network");
            }
        }
    }

    /// Keep trying to ensure the networks that are not ready (a missing host bridge or
    /// uplink that appears later, a route that went away, dnsmasq that could not start).
    pub fn spawn_repair(self: &std::sync::Arc<Self>) {
        let me = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REPAIR_EVERY).await;
                let Some(me) = me.upgrade() else { return };
                let broken: Vec<(NetworkDef, String)> = me
                    .nets()
                    .values()
                    .filter(|n| !n.ready)
                    .map(|n| (n.def.clone(), n.message.clone()))
                    .collect();
                for (def, before) in broken {
                    match me.ensure(def.clone()).await {
                        Ok(_) => tracing::info!(network = %def.name, "network repaired"),
                        Err(e) if e.to_string() != before => {
                            tracing::warn!(network = %def.name, error = %e, "network still not ready")
                        }
                        Err(_) => {}
                    }
                }
            }
        });
    }

    /// The definition of a network this node has.
    pub fn get(&self, name: &str) -> Option<NetworkDef> {
        self.nets().get(name).map(|n| n.def.clone())
    }

    fn state_dir(&self, name: &str) -> PathBuf {
        self.state_root.join(name)
    }

    fn lease_file(&self, name: &str) -> PathBuf {
        self.state_dir(name).join("dnsmasq.leases")
    }

    /// The DHCP leases of a nat network (none for a bridge network).
    pub fn leases(&self, name: &str) -> Vec<Lease> {
        if self.get(name).is_none_or(|d| d.mode != Mode::Nat) {
            return Vec::new();
        }
        read_leases(&self.lease_file(name)).unwrap_or_default()
    }

    /// The nat networks whose lease file changed since the last call.
    pub fn changed_leases(&self) -> Vec<String> {
        let files: Vec<(String, PathBuf)> = self
            .nets()
            .iter()
            .filter(|(_, n)| n.def.mode == Mode::Nat)
            .map(|(name, _)| (name.clone(), self.lease_file(name)))
            .collect();
        let mut changed = Vec::new();
        for (name, file) in files {
            let mtime = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
            if let Some(n) = self.nets().get_mut(&name)
                && n.leases_seen != mtime
            {
                n.leases_seen = mtime;
                changed.push(name);
            }
        }
        changed
    }

    fn status(&self, name: &str, n: &NetState) -> NetworkStatus {
        NetworkStatus {
            node: self.node.clone(),
            ready: n.ready,
            message: n.message.clone(),
            dnsmasq_pid: n.dnsmasq.as_ref().map(Supervisor::pid),
            leases: if n.def.mode == Mode::Nat {
                read_leases(&self.lease_file(name)).map_or(0, |l| l.len() as u32)
            } else {
                0
            },
        }
    }

    pub fn list(&self) -> Vec<NetworkView> {
        self.nets()
            .iter()
            .map(|(name, n)| NetworkView {
                def: n.def.clone(),
                status: self.status(name, n),
            })
            .collect()
    }

    /// Create the network, or check and repair it if this node has it already. A network
    /// of the same name with another definition is refused.
    pub async fn ensure(&self, def: NetworkDef) -> ApiResult<NetworkStatus> {
        let _ops = self.ops.lock().await;
        let existing = self.get(&def.name);
        if let Some(old) = &existing
            && !old.same_as(&def)
        {
            return Err(ApiError::AlreadyExists(format!(
                "node {} has a different network named {} (bridge {})",
                self.node, def.name, old.bridge
            )));
        }
        let first = existing.is_none();
        let has_dnsmasq = self
            .nets()
            .get(&def.name)
            .is_some_and(|n| n.dnsmasq.is_some());
        let started = match self.make(&def, has_dnsmasq).await {
            Ok(d) => d,
            Err(e) => {
                if first {
                    self.teardown(&def).await;
                } else if let Some(n) = self.nets().get_mut(&def.name) {
                    n.ready = false;
                    n.message = e.to_string();
                }
                return Err(e);
            }
        };
        if let Err(e) = write_def(&self.defs_dir, &def) {
            if let Some(d) = started {
                d.stop().await;
            }
            if first {
                self.teardown(&def).await;
            }
            return Err(ApiError::Internal(format!(
                "cannot store network {} in {}: {e}",
                def.name,
                self.defs_dir.display()
            )));
        }
        let status = {
            let mut nets = self.nets();
            let old = nets.remove(&def.name).and_then(|n| n.dnsmasq);
            let state = NetState {
                def: def.clone(),
                ready: true,
                message: String::new(),
                dnsmasq: started.or(old),
                leases_seen: None,
            };
            let status = self.status(&def.name, &state);
            nets.insert(def.name.clone(), state);
            status
        };
        tracing::info!(network = %def.name, bridge = %def.bridge, first, "network ready");
        Ok(status)
    }

    /// Bring the host to the definition; returns the nat network's dnsmasq if it started
    /// one (none when `has_dnsmasq`: the supervised one keeps serving).
    async fn make(&self, def: &NetworkDef, has_dnsmasq: bool) -> ApiResult<Option<Supervisor>> {
        let mark = Mark::new("bridge", &def.name)?;
        match def.mode {
            Mode::Bridge => {
                if let Some(uplink) = &def.uplink {
                    let up = self.nl.get(uplink).await?.ok_or_else(|| {
                        ApiError::NotFound(format!(
                            "uplink {uplink:?} does not exist on node {}",
                            self.node
                        ))
                    })?;
                    // A port's own addresses stop working: never cut the host off.
                    let routes = host_routes()?;
                    if let Some(r) = routes.iter().find(|r| &r.iface == uplink) {
                        return Err(ApiError::FailedPrecondition(format!(
                            "uplink {uplink} on node {} carries the host's traffic (route to \
                             {}): as a bridge port it would cut the host off. Move its \
                             addresses to a bridge in the host's network config and create \
                             the network with --bridge only",
                            self.node, r.destination
                        )));
                    }
                    self.ensure_bridge(def, mark, up.mac).await?;
                    self.nl.enslave(uplink, &def.bridge).await?;
                } else {
                    let br = self.nl.get(&def.bridge).await?.ok_or_else(|| {
                        ApiError::FailedPrecondition(format!(
                            "bridge {} does not exist on node {}: create it on the host, or \
                             give an uplink and kcore creates it",
                            def.bridge, self.node
                        ))
                    })?;
                    if br.kind.as_deref() != Some("bridge") {
                        return Err(ApiError::InvalidArgument(format!(
                            "{} on node {} is not a bridge (it is a {} link)",
                            def.bridge,
                            self.node,
                            br.kind.as_deref().unwrap_or("physical")
                        )));
                    }
                }
                Ok(None)
            }
            Mode::Nat => {
                let subnet = def.cidr().ok_or_else(|| {
                    ApiError::InvalidArgument(format!("network {} has no subnet", def.name))
                })?;
                // The node defends itself: a definition from an older controller, or edited
                // on disk, with a loopback/multicast/... subnet builds nothing.
                subnet.check_nat()?;
                let routes = host_routes()?;
                if let Some(r) = conflicting_routes(&subnet, &routes, Some(&def.bridge)).first() {
                    return Err(ApiError::InvalidArgument(format!(
                        "subnet {subnet} overlaps the route to {} on {} of node {}",
                        r.destination, r.iface, self.node
                    )));
                }
                self.ensure_bridge(def, mark, None).await?;
                self.nl
                    .add_address(&def.bridge, subnet.gateway()?, subnet.prefix())
                    .await?;
                enable_ip_forward()?;
                nft::apply_nat(&NatSpec {
                    network: def.name.clone(),
                    subnet,
                    bridge: def.bridge.clone(),
                })
                .await?;
                if has_dnsmasq {
                    return Ok(None);
                }
                let dir = self.state_dir(&def.name);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| ApiError::Internal(format!("create {}: {e}", dir.display())))?;
                let mut cfg = DnsmasqConfig::new(&def.bridge, subnet, &dir);
                cfg.lease_file = self.lease_file(&def.name);
                cfg.pid_file = dir.join("dnsmasq.pid");
                let d = Supervisor::start(&def.name, cfg, dir.join("dnsmasq.log")).await?;
                Ok(Some(d))
            }
        }
    }

    async fn ensure_bridge(
        &self,
        def: &NetworkDef,
        mark: Mark,
        mac: Option<MacAddr>,
    ) -> ApiResult<()> {
        let spec = BridgeSpec {
            name: def.bridge.clone(),
            mac: mac.unwrap_or_else(|| bridge_mac(&def.name)),
            mtu: None,
            mark,
        };
        match self.nl.ensure_bridge(&spec).await {
            Ok(_) => Ok(()),
            Err(NetError::NotKcore { name, .. }) => Err(ApiError::FailedPrecondition(format!(
                "a link named {name} exists on node {} and is not this network's bridge{}",
                self.node,
                if def.mode == Mode::Bridge {
                    ": to join an existing bridge, leave out the uplink"
                } else {
                    ""
                }
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Remove what kcore made for `def` (best effort, each step logged).
    async fn teardown(&self, def: &NetworkDef) {
        if def.mode == Mode::Nat
            && let Err(e) = nft::delete_nat(&def.name).await
        {
            tracing::warn!(network = %def.name, error = %e, "cannot delete the NAT table");
        }
        if def.managed_bridge() {
            if let Some(uplink) = &def.uplink
                && let Err(e) = self.nl.release(uplink).await
            {
                tracing::debug!(network = %def.name, error = %e, "uplink not released");
            }
            // Only a link carrying this network's mark is deleted.
            match self.nl.get(&def.bridge).await {
                Ok(Some(l)) if l.mark().is_some_and(|m| m.owner() == def.name) => {
                    if let Err(e) = self.nl.delete(&def.bridge).await {
                        tracing::warn!(network = %def.name, error = %e, "cannot delete the bridge");
                    }
                }
                _ => {}
            }
        }
        let dir = self.state_dir(&def.name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove"),
        }
    }

    /// Remove the network from this node: dnsmasq, the NAT table, kcore's bridge, the
    /// definition. The caller has checked that no VM uses it.
    pub async fn delete(&self, name: &str) -> ApiResult<()> {
        let _ops = self.ops.lock().await;
        let Some(state) = self.nets().remove(name) else {
            return Err(ApiError::NotFound(format!(
                "node {} has no network named {name:?}",
                self.node
            )));
        };
        if let Some(d) = state.dnsmasq {
            d.stop().await;
        }
        self.teardown(&state.def).await;
        let path = self.defs_dir.join(format!("{name}.json"));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ApiError::Internal(format!(
                    "remove {}: {e}",
                    path.display()
                )));
            }
        }
        tracing::info!(network = %name, "network deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_nodes_of_one_name_on_a_host_own_different_taps() {
        let a = tap_owner("n1", Path::new("/nonexistent/a"));
        assert_eq!(a, tap_owner("n1", Path::new("/nonexistent/a")), "stable");
        assert_ne!(a, tap_owner("n1", Path::new("/nonexistent/b")));
        // A fixed value: the tag is kept in taps' marks across daemon upgrades.
        assert_eq!(
            tap_owner("n1", Path::new("/nonexistent/kcore")),
            "n1~00a8e47c"
        );
    }

    #[test]
    fn bridge_macs_are_stable_and_local() {
        let a = bridge_mac("default");
        assert_eq!(a, bridge_mac("default"));
        assert_ne!(a, bridge_mac("other"));
        assert!(a.to_string().starts_with("52:54:00:"));
    }
}

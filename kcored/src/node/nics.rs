//! VMs' NICs on this node. Each NIC has a fixed tap name (`ktap-` + a hash of the VM id and
//! the NIC id) and gets its tap at every launch: the node opens it through the tun driver
//! (not persistent, with a virtio-net header), marks it as kcore's, makes it a port of the
//! network's bridge and hands the descriptor to QEMU, which from then on is the only holder.
//! So the tap lives exactly as long as QEMU (or, hot-plugged, as its netdev): it survives a
//! daemon restart with the VM, and disappears when QEMU exits, crashed or stopped. Taps of
//! VMs that are gone are removed when the node starts.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use kcore_netstack::link::{TAP_PREFIX, derive_name};
use kcore_netstack::tap::{TapSpec, open_tap};
use kcore_netstack::{MacAddr, Mark, NetError};
use kcore_vmm::VmmError;
use kcore_vmm::spec::{Nic, VmSpec};
use kcore_vmm::vm::NicOpener;

use super::Node;
use super::disks::live;
use super::network::NodeNetworks;
use super::view::{NicView, VmView};
use crate::error::{ApiError, ApiResult};
use crate::model::NicRequest;

/// How often the lease files are checked for changes (a new lease updates the VM's NICs).
const LEASE_POLL: Duration = Duration::from_secs(2);

/// The host side of a tap gets the guest's MAC with `fe` in front (as libvirt does): a high
/// address never becomes the MAC of a bridge that takes its lowest port's.
fn host_side_mac(guest: &MacAddr) -> Option<MacAddr> {
    let mut o = guest.octets();
    o[0] = 0xfe;
    MacAddr::from_bytes(o).ok()
}

/// A tap's mark: the VM and NIC it is for, and the node that made it (its `tap_owner`, so
/// nodes sharing a host, as in tests, or a VM's source and destination during a migration
/// on one host, never take each other's taps for leftovers).
fn tap_mark(vm_id: &str, nic: &Nic, node: &str) -> Result<Mark, NetError> {
    Mark::new("tap", format!("{vm_id}/{}@{node}", nic.id))
}

/// The VM id of a tap mark's owner, if the tap is `node`'s (marks from before node names
/// were in them count as this node's).
fn mark_vm<'a>(owner: &'a str, node: &str) -> Option<&'a str> {
    let (vm_nic, made_by) = match owner.rsplit_once('@') {
        Some((v, n)) => (v, Some(n)),
        None => (owner, None),
    };
    if made_by.is_some_and(|n| n != node) {
        return None;
    }
    Some(vm_nic.split('/').next().unwrap_or_default())
}

/// The tap name of a NIC a migration brings here: not the name the source uses, in case
/// both nodes share a host.
pub(super) fn migrated_tap_name(vm_id: &str, nic_id: &str, node: &str) -> ApiResult<String> {
    Ok(derive_name(
        TAP_PREFIX,
        &format!("{vm_id}/{nic_id}@{node}"),
    )?)
}

impl NodeNetworks {
    /// Create `nic`'s tap on its network's bridge; the descriptor is QEMU's to hold.
    pub async fn open_tap(&self, vm_id: &str, nic: &Nic) -> ApiResult<OwnedFd> {
        let def = self.get(&nic.network).ok_or_else(|| {
            ApiError::FailedPrecondition(format!(
                "network {} does not exist on node {}",
                nic.network, self.node
            ))
        })?;
        let br = self.nl.get(&def.bridge).await?.ok_or_else(|| {
            ApiError::FailedPrecondition(format!(
                "the bridge {} of network {} is missing on node {}",
                def.bridge, def.name, self.node
            ))
        })?;
        // A tap of that name can only be a leftover here (QEMU is not running): remove it.
        if let Some(old) = self.nl.get(&nic.tap).await? {
            let ours = old.mark().is_some_and(|m| {
                m.purpose() == "tap" && mark_vm(m.owner(), &self.tap_owner) == Some(vm_id)
            });
            if !ours {
                return Err(ApiError::FailedPrecondition(format!(
                    "a link named {} exists on node {} and is not this NIC's tap",
                    nic.tap, self.node
                )));
            }
            self.nl.delete_tap(&nic.tap).await?;
        }
        let fd = open_tap(&TapSpec::new(nic.tap.clone()))?;
        // From here on, dropping `fd` removes the tap again.
        self.nl
            .attach_tap(
                &nic.tap,
                &br,
                &tap_mark(vm_id, nic, &self.tap_owner)?,
                host_side_mac(&nic.mac),
            )
            .await?;
        tracing::info!(tap = %nic.tap, bridge = %def.bridge, vm = vm_id, nic = %nic.id, "tap ready");
        Ok(fd)
    }

    /// The taps of every NIC of `spec`, in order.
    pub async fn open_taps(&self, spec: &VmSpec) -> ApiResult<Vec<OwnedFd>> {
        let mut fds = Vec::with_capacity(spec.nics.len());
        for nic in &spec.nics {
            fds.push(self.open_tap(&spec.id, nic).await?);
        }
        Ok(fds)
    }

    /// Delete the taps of one VM (after its QEMU is gone they normally are already).
    pub async fn remove_taps_of(&self, vm_id: &str) {
        self.sweep_taps(|vm| vm != vm_id).await;
    }

    /// Delete kcore's taps whose VM `keep` says no to.
    pub async fn sweep_taps(&self, keep: impl Fn(&str) -> bool) {
        let links = match self.nl.list_kcore_links().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list links");
                return;
            }
        };
        for l in links {
            let Some(mark) = l.mark().filter(|m| m.purpose() == "tap") else {
                continue;
            };
            let Some(vm) = mark_vm(mark.owner(), &self.tap_owner) else {
                continue;
            };
            if keep(vm) {
                continue;
            }
            match self.nl.delete_tap(&l.name).await {
                Ok(_) => {
                    tracing::info!(tap = %l.name, vm, "removed a tap of a VM that is not running")
                }
                Err(e) => tracing::warn!(tap = %l.name, error = %e, "cannot remove tap"),
            }
        }
    }

    /// A running VM's tap back on its bridge (after the bridge was made again).
    async fn reattach_tap(&self, nic: &Nic) -> ApiResult<()> {
        let Some(def) = self.get(&nic.network) else {
            return Ok(());
        };
        let (Some(br), Some(tap)) = (
            self.nl.get(&def.bridge).await?,
            self.nl.get(&nic.tap).await?,
        ) else {
            tracing::warn!(tap = %nic.tap, "tap or bridge missing: the NIC has no network until the VM restarts");
            return Ok(());
        };
        if self.nl.reattach_tap(&tap, &br).await? {
            tracing::info!(tap = %nic.tap, bridge = %def.bridge, "tap attached again");
        }
        Ok(())
    }
}

/// The [`NicOpener`] the node gives each VM.
pub fn nic_opener(net: Arc<NodeNetworks>) -> NicOpener {
    Arc::new(move |spec: VmSpec| {
        let net = net.clone();
        Box::pin(async move {
            net.open_taps(&spec)
                .await
                .map_err(|e| VmmError::NicOpen(Box::new(e)))
        })
    })
}

/// Find a NIC by id (net1), MAC, tap name or index.
fn find_nic(nics: &[Nic], which: &str) -> ApiResult<Nic> {
    let index = which.parse::<usize>().ok();
    nics.iter()
        .enumerate()
        .find(|(i, n)| {
            n.id == which
                || which.parse::<MacAddr>().is_ok_and(|m| m == n.mac)
                || n.tap == which
                || index == Some(*i)
        })
        .map(|(_, n)| n.clone())
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no NIC {which:?} on this VM (NICs: {})",
                nics.iter()
                    .map(|n| format!("{} {} on {}", n.id, n.mac, n.network))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

impl Node {
    /// A NIC for `req` with id `id`: the network must be on this node; the MAC is taken
    /// as given (the controller checked it is unique) or generated.
    fn make_nic(&self, vm_id: &str, id: String, req: &NicRequest) -> ApiResult<Nic> {
        if self.net.get(&req.network).is_none() {
            return Err(ApiError::FailedPrecondition(format!(
                "network {:?} does not exist on node {}",
                req.network.as_str(),
                self.cfg.name
            )));
        }
        let mac = match req.mac {
            Some(m) => m,
            None => MacAddr::generate()?,
        };
        Ok(Nic {
            tap: derive_name(TAP_PREFIX, &format!("{vm_id}/{id}"))?,
            id,
            network: req.network.to_string(),
            mac,
            model: req.model.unwrap_or_default(),
            port: None,
        })
    }

    /// The NICs of a new VM: `net0`, `net1`, ... in request order.
    pub(super) fn nics_of(&self, vm_id: &str, reqs: &[NicRequest]) -> ApiResult<Vec<Nic>> {
        reqs.iter()
            .enumerate()
            .map(|(i, r)| self.make_nic(vm_id, format!("net{i}"), r))
            .collect()
    }

    /// The views of a VM's NICs, with the leased address on nat networks.
    pub(super) fn nic_views(&self, spec: &VmSpec) -> Vec<NicView> {
        spec.nics
            .iter()
            .map(|n| {
                let ip = self
                    .net
                    .leases(&n.network)
                    .into_iter()
                    .filter(|l| l.mac == n.mac)
                    .max_by_key(|l| l.expiry)
                    .map(|l| l.ip);
                NicView {
                    id: n.id.clone(),
                    network: n.network.clone(),
                    mac: n.mac,
                    model: n.model,
                    tap: n.tap.clone(),
                    ip,
                }
            })
            .collect()
    }

    /// A new NIC for VM `id`: hot-plugged when the VM runs, in the spec either way.
    pub async fn attach_nic(&self, id: &str, req: NicRequest) -> ApiResult<VmView> {
        let vm = self.vm(id)?;
        let state = vm.status().state;
        if state.is_active() && !live(&vm) {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {} is {state}: wait for it to settle",
                vm.name()
            )));
        }
        let spec = vm.spec();
        let nic_id = (0..)
            .map(|i| format!("net{i}"))
            .find(|id| !spec.nics.iter().any(|n| &n.id == id))
            .unwrap_or_else(|| "net-x".into());
        let mut nic = self.make_nic(&spec.id, nic_id, &req)?;
        if let Some(other) = spec.nics.iter().find(|n| n.mac == nic.mac) {
            return Err(ApiError::AlreadyExists(format!(
                "NIC {} of this VM has MAC {} already",
                other.id, nic.mac
            )));
        }
        if live(&vm) {
            nic.port = vm.free_hotplug_port()?;
            let fd = self.net.open_tap(&spec.id, &nic).await?;
            vm.attach_nic(&nic, fd).await?;
        }
        vm.update_spec(|s| s.nics.push(nic));
        self.save_spec(&vm)?;
        Ok(self.snapshot(&vm))
    }

    /// Unplug NIC `which` (its id, MAC, tap or index) of VM `id` (waiting for the guest)
    /// when the VM runs; out of the spec either way.
    pub async fn detach_nic(&self, id: &str, which: &str) -> ApiResult<VmView> {
        let vm = self.vm(id)?;
        let nic = find_nic(&vm.spec().nics, which)?;
        if live(&vm) {
            vm.detach_nic(&nic).await?;
        } else if vm.status().state.is_active() {
            return Err(ApiError::FailedPrecondition(format!(
                "VM {} is {}: wait for it to settle",
                vm.name(),
                vm.status().state
            )));
        }
        vm.update_spec(|s| s.nics.retain(|n| n.id != nic.id));
        self.save_spec(&vm)?;
        // netdev_del closed QEMU's descriptor, which removed the tap; make sure.
        if let Err(e) = self.net.nl.delete_tap(&nic.tap).await {
            tracing::debug!(tap = %nic.tap, error = %e, "tap not removed");
        }
        Ok(self.snapshot(&vm))
    }

    /// Remove a network from this node, unless a VM here has a NIC on it.
    pub async fn delete_network(&self, name: &str) -> ApiResult<()> {
        let users: Vec<String> = self
            .read_vms()
            .values()
            .filter(|vm| vm.spec().nics.iter().any(|n| n.network == name))
            .map(|vm| vm.name().to_string())
            .collect();
        if !users.is_empty() {
            return Err(ApiError::FailedPrecondition(format!(
                "network {name} is in use on node {} by VM(s) {}: delete them or detach their \
                 NICs first",
                self.cfg.name,
                users.join(", ")
            )));
        }
        self.net.delete(name).await
    }

    /// After the VMs were recovered: remove the taps of VMs that do not run, put running
    /// VMs' taps back on their bridges if a bridge was made again.
    pub(super) async fn reconcile_taps(&self) {
        let vms: Vec<_> = self.read_vms().values().cloned().collect();
        let running: HashSet<String> = vms
            .iter()
            .filter(|vm| vm.status().state.is_active())
            .map(|vm| vm.id().to_string())
            .collect();
        self.net.sweep_taps(|vm| running.contains(vm)).await;
        for vm in vms.iter().filter(|vm| running.contains(vm.id())) {
            for nic in &vm.spec().nics {
                if let Err(e) = self.net.reattach_tap(nic).await {
                    tracing::warn!(vm = %vm.name(), nic = %nic.id, error = %e, "cannot reattach tap");
                }
            }
        }
    }

    /// Publish a VM again when a lease on one of its networks changed, so its NICs show
    /// the address.
    pub(super) fn spawn_lease_watch(self: &Arc<Self>) {
        let node = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_POLL).await;
                let Some(node) = node.upgrade() else { return };
                let changed = node.net.changed_leases();
                if changed.is_empty() {
                    continue;
                }
                let notify = node.notifier();
                for vm in node.read_vms().values() {
                    if vm.spec().nics.iter().any(|n| changed.contains(&n.network)) {
                        notify(vm.id());
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_marks_name_the_node_that_made_them() {
        let owner = "0b1e3c9e/net0@n1";
        assert_eq!(mark_vm(owner, "n1"), Some("0b1e3c9e"));
        // Another node's tap on a shared host is not ours to sweep.
        assert_eq!(mark_vm(owner, "n2"), None);
        // Marks from before the node was in them are this node's.
        assert_eq!(mark_vm("0b1e3c9e/net0", "n2"), Some("0b1e3c9e"));
        let nic = nic("net0", "52:54:00:12:34:56");
        let mark = tap_mark("0b1e3c9e", &nic, "n1").expect("a mark");
        assert_eq!(mark.owner(), owner);
        assert_ne!(
            migrated_tap_name("0b1e3c9e", "net0", "n2").expect("a name"),
            derive_name(TAP_PREFIX, "0b1e3c9e/net0").expect("a name")
        );
    }

    fn nic(id: &str, mac: &str) -> Nic {
        Nic {
            id: id.into(),
            network: "n".into(),
            mac: mac.parse().expect("a MAC"),
            model: kcore_vmm::spec::NicModel::Virtio,
            tap: format!("ktap-{id}"),
            port: None,
        }
    }

    #[test]
    fn nics_are_found_by_id_mac_tap_or_index() {
        let nics = [
            nic("net0", "52:54:00:00:00:01"),
            nic("net1", "52:54:00:00:00:02"),
        ];
        for which in [
            "net1",
            "52:54:00:00:00:02",
            "52:54:00:00:00:02".to_uppercase().as_str(),
            "ktap-net1",
            "1",
        ] {
            assert_eq!(find_nic(&nics, which).expect(which).id, "net1");
        }
        let e = find_nic(&nics, "net7").expect_err("missing").to_string();
        assert!(e.contains("net0 52:54:00:00:00:01 on n"), "{e}");
        assert_eq!(
            host_side_mac(&"52:54:00:ab:cd:ef".parse().expect("a MAC")).map(|m| m.octets()),
            Some([0xfe, 0x54, 0, 0xab, 0xcd, 0xef])
        );
    }
}

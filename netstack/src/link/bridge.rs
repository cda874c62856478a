//! kcore's bridges: made (fixed MAC, MTU, marked, up), an uplink enslaved and released,
//! the gateway address added.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::{LinkBridge, LinkUnspec};

use super::{BridgeSpec, Link, Netlink, check_bridge, check_mtu, errno, validate_ifname};
use crate::NetError;

impl Netlink {
    /// Create a bridge as `spec` says (fixed MAC, MTU, marked, forward delay 0, up).
    /// Fails with [`NetError::LinkExists`] if the name is taken.
    pub async fn create_bridge(&self, spec: &BridgeSpec) -> Result<Link, NetError> {
        validate_ifname(&spec.name)?;
        if let Some(mtu) = spec.mtu {
            check_mtu(mtu)?;
        }
        let mut builder = LinkBridge::new(&spec.name)
            .forward_delay(0)
            .address(spec.mac.octets().to_vec())
            .alias(spec.mark.alias());
        if let Some(mtu) = spec.mtu {
            builder = builder.mtu(mtu);
        }
        match self.handle.link().add(builder.build()).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => {
                return Err(NetError::LinkExists {
                    name: spec.name.clone(),
                });
            }
            Err(source) => {
                return Err(NetError::Netlink {
                    op: "create bridge",
                    name: spec.name.clone(),
                    source,
                });
            }
        }
        tracing::info!(bridge = %spec.name, mac = %spec.mac, mtu = ?spec.mtu, mark = %spec.mark, "created bridge");
        // The alias is not applied by every kernel on creation, and an MTU set by
        // RTM_SETLINK is one the bridge keeps when ports with other MTUs join: set both
        // again. If that fails, remove the bridge rather than leave an unmarked one.
        let link = self.require("bridge", &spec.name).await?;
        let mut set = LinkUnspec::new_with_index(link.index)
            .alias(spec.mark.alias())
            .up();
        if let Some(mtu) = spec.mtu {
            set = set.mtu(mtu);
        }
        if let Err(source) = self.handle.link().set(set.build()).execute().await {
            if let Err(e) = self.handle.link().del(link.index).execute().await {
                tracing::warn!(bridge = %spec.name, error = %e, "could not remove the half-made bridge");
            }
            return Err(NetError::Netlink {
                op: "configure bridge",
                name: spec.name.clone(),
                source,
            });
        }
        self.require("bridge", &spec.name).await
    }

    /// Make sure the bridge of `spec` exists and matches it: create it, or bring an
    /// existing kcore bridge with the same mark back to the spec's MAC, MTU and up state
    /// (after a daemon restart). A link of that name that is not kcore's, or belongs to
    /// another owner, is an error.
    pub async fn ensure_bridge(&self, spec: &BridgeSpec) -> Result<Link, NetError> {
        let Some(existing) = self.get(&spec.name).await? else {
            return self.create_bridge(spec).await;
        };
        if existing.mark().as_ref() != Some(&spec.mark)
            || existing.kind.as_deref() != Some("bridge")
        {
            return Err(NetError::NotKcore {
                name: existing.name,
                alias: existing.alias,
            });
        }
        if let Some(mtu) = spec.mtu {
            check_mtu(mtu)?;
        }
        let mut set = LinkUnspec::new_with_index(existing.index)
            .address(spec.mac.octets().to_vec())
            .up();
        if let Some(mtu) = spec.mtu {
            set = set.mtu(mtu);
        }
        self.handle
            .link()
            .set(set.build())
            .execute()
            .await
            .map_err(|source| NetError::Netlink {
                op: "configure bridge",
                name: spec.name.clone(),
                source,
            })?;
        self.require("bridge", &spec.name).await
    }

    /// Make `port` (an uplink: a NIC, a veth, a bond...) a port of the kcore bridge
    /// `bridge` and bring it up. The uplink is not marked or otherwise changed.
    pub async fn enslave(&self, port: &str, bridge: &str) -> Result<(), NetError> {
        let br = self.require_kcore("bridge", bridge).await?;
        let up = self.require("uplink", port).await?;
        self.enslave_link(&up, &br).await
    }

    async fn enslave_link(&self, port: &Link, br: &Link) -> Result<(), NetError> {
        check_bridge(br)?;
        if let Some(current) = port.controller
            && current != br.index
        {
            let other = self
                .get_by_index(current)
                .await?
                .map_or_else(|| format!("index {current}"), |l| l.name);
            return Err(NetError::invalid(
                "port",
                format!("{} is already a port of {other}", port.name),
            ));
        }
        if let (Some(pm), Some(bm)) = (port.mtu, br.mtu)
            && pm < bm
        {
            tracing::warn!(port = %port.name, port_mtu = pm, bridge = %br.name, bridge_mtu = bm,
                "port MTU is below the bridge MTU: large frames will be dropped");
        }
        let msg = LinkUnspec::new_with_index(port.index)
            .controller(br.index)
            .up()
            .build();
        self.set_link("enslave", port, msg).await?;
        tracing::info!(port = %port.name, bridge = %br.name, "added port to bridge");
        Ok(())
    }

    /// Take `port` out of its bridge, which must be a kcore bridge.
    pub async fn release(&self, port: &str) -> Result<(), NetError> {
        let link = self.require("port", port).await?;
        let Some(ctrl) = link.controller else {
            return Ok(());
        };
        let br = self.get_by_index(ctrl).await?;
        if !br.as_ref().is_some_and(Link::is_kcore) {
            return Err(NetError::NotKcore {
                name: br.map_or_else(|| format!("index {ctrl}"), |b| b.name),
                alias: None,
            });
        }
        let msg = LinkUnspec::new_with_index(link.index)
            .nocontroller()
            .build();
        self.set_link("release", &link, msg).await
    }

    /// Put `addr/prefix` on a kcore link (replacing it if it is already there).
    pub async fn add_address(
        &self,
        name: &str,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetError> {
        if prefix > 32 {
            return Err(NetError::invalid(
                "prefix",
                format!("/{prefix} is over /32"),
            ));
        }
        let link = self.require_kcore("link", name).await?;
        self.handle
            .address()
            .add(link.index, IpAddr::V4(addr), prefix)
            .replace()
            .execute()
            .await
            .map_err(|source| NetError::Netlink {
                op: "add address",
                name: format!("{addr}/{prefix} to {name}"),
                source,
            })
    }
}

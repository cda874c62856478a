//! A network's definition, validated the same way by the controller (when it is created)
//! and by every node (when the controller pushes it, and when the node reads it back from
//! `<data-dir>/networks/<name>.json` after a restart).

use kcore_netstack::Ipv4Cidr;
use kcore_netstack::link::{BRIDGE_PREFIX, derive_name, validate_ifname};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

/// How VMs on the network reach the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// kcore's own bridge with a gateway address, dnsmasq, and masquerade.
    Nat,
    /// A host bridge: an existing one, or one kcore creates around an uplink.
    Bridge,
}

/// A network as the node keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDef {
    pub name: String,
    pub mode: Mode,
    /// nat: the subnet, canonical (`10.77.0.0/24`).
    #[serde(default)]
    pub subnet: Option<String>,
    pub bridge: String,
    /// bridge mode: the interface kcore enslaves to the bridge it creates.
    #[serde(default)]
    pub uplink: Option<String>,
    #[serde(default)]
    pub created_at: String,
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl NetworkDef {
    /// Check a request: the mode's required fields are there, the others are not, names
    /// fit the kernel, the subnet parses, is no reserved range (loopback, link-local,
    /// multicast, 0.0.0.0/8, 240.0.0.0/4) and leaves room for a gateway and a DHCP range.
    pub fn new(
        name: &str,
        mode: Mode,
        subnet: &str,
        bridge: &str,
        uplink: &str,
    ) -> ApiResult<Self> {
        kcore_types::NetworkName::parse(name)?;
        let invalid = |m: &str| Err(ApiError::InvalidArgument(m.to_string()));
        let def = match mode {
            Mode::Nat => {
                if subnet.is_empty() {
                    return invalid("a nat network needs a subnet, e.g. 10.77.0.0/24");
                }
                if !uplink.is_empty() {
                    return invalid(
                        "an uplink is for bridge networks: a nat network reaches out through \
                         the host's default route",
                    );
                }
                let cidr: Ipv4Cidr = subnet.trim().parse()?;
                // No loopback, link-local, multicast or reserved range; /8 to /30.
                cidr.check_nat()?;
                let bridge = if bridge.is_empty() {
                    derive_name(BRIDGE_PREFIX, name)?
                } else {
                    validate_ifname(bridge)?;
                    bridge.to_string()
                };
                NetworkDef {
                    name: name.to_string(),
                    mode: Mode::Nat,
                    subnet: Some(cidr.to_string()),
                    bridge,
                    uplink: None,
                    created_at: String::new(),
                }
            }
            Mode::Bridge => {
                if bridge.is_empty() {
                    return invalid(
                        "a bridge network needs --bridge: an existing host bridge, or with \
                         --uplink one kcore creates",
                    );
                }
                if !subnet.is_empty() {
                    return invalid(
                        "a bridge network takes no subnet: its addresses come from the LAN",
                    );
                }
                validate_ifname(bridge)?;
                if !uplink.is_empty() {
                    validate_ifname(uplink)?;
                    if uplink == bridge {
                        return invalid("the uplink cannot be the bridge itself");
                    }
                }
                NetworkDef {
                    name: name.to_string(),
                    mode: Mode::Bridge,
                    subnet: None,
                    bridge: bridge.to_string(),
                    uplink: opt(uplink),
                    created_at: String::new(),
                }
            }
        };
        Ok(def)
    }

    /// The subnet of a nat network.
    pub fn cidr(&self) -> Option<Ipv4Cidr> {
        self.subnet.as_deref().and_then(|s| s.parse().ok())
    }

    /// kcore creates (and removes) the bridge: nat networks, and bridge networks with an
    /// uplink. Without an uplink the bridge is the host's, only joined.
    pub fn managed_bridge(&self) -> bool {
        self.mode == Mode::Nat || self.uplink.is_some()
    }

    /// The same network, ignoring when it was created.
    pub fn same_as(&self, other: &NetworkDef) -> bool {
        NetworkDef {
            created_at: String::new(),
            ..self.clone()
        } == NetworkDef {
            created_at: String::new(),
            ..other.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nat(name: &str, subnet: &str) -> ApiResult<NetworkDef> {
        NetworkDef::new(name, Mode::Nat, subnet, "", "")
    }

    #[test]
    fn nat_networks() {
        let d = nat("default", "10.77.0.0/24").expect("valid");
        assert_eq!(d.bridge, "kbr-default");
        assert!(d.managed_bridge());
        assert_eq!(
            d.cidr()
                .and_then(|c| c.gateway().ok())
                .map(|g| g.to_string()),
            Some("10.77.0.1".into())
        );
        // Long names get a hashed bridge name that fits the kernel.
        let d = nat("a-rather-long-network-name", "10.78.0.0/24").expect("valid");
        assert_eq!(d.bridge.len(), 15);
        for (subnet, needle) in [
            ("", "needs a subnet"),
            ("10.77.0.1/24", "host bits"),
            ("10.77.0.0/31", "too small"),
            ("10.77.0.0", "a.b.c.d/len"),
            ("127.1.0.0/24", "loopback"),
            ("224.0.0.0/24", "multicast"),
            ("169.254.0.0/16", "link-local"),
            ("0.0.0.0/0", "far too large"),
            ("255.255.255.255/32", "broadcast"),
        ] {
            let e = nat("n", subnet).expect_err(subnet).to_string();
            assert!(e.contains(needle), "{subnet}: {e}");
        }
        let e = NetworkDef::new("n", Mode::Nat, "10.0.0.0/24", "", "eth0").expect_err("uplink");
        assert!(e.to_string().contains("uplink is for bridge"), "{e}");
    }

    #[test]
    fn bridge_networks_and_names() {
        let d = NetworkDef::new("lan", Mode::Bridge, "", "br0", "").expect("valid");
        assert!(!d.managed_bridge());
        let d = NetworkDef::new("lan", Mode::Bridge, "", "kbr-lan", "eth1").expect("ok");
        assert!(d.managed_bridge());
        let e = NetworkDef::new("lan", Mode::Bridge, "", "", "")
            .expect_err("no bridge")
            .to_string();
        assert!(e.contains("needs --bridge"), "{e}");
        let e = NetworkDef::new("lan", Mode::Bridge, "", "a-very-long-bridge0", "")
            .expect_err("long")
            .to_string();
        assert!(e.contains("at most 15"), "{e}");
        let e = NetworkDef::new("lan", Mode::Bridge, "10.0.0.0/8", "br0", "").expect_err("subnet");
        assert!(e.to_string().contains("takes no subnet"), "{e}");
        for bad in ["", "1net", "Net", "a_b", &"a".repeat(64)] {
            assert!(
                NetworkDef::new(bad, Mode::Bridge, "", "br0", "").is_err(),
                "{bad}"
            );
        }
    }
}

//! IPv4 subnets in CIDR notation (`10.77.0.0/24`): the gateway a network's bridge takes
//! (the first host), the DHCP range dnsmasq hands out (the second host up to the last
//! host before the broadcast address), which subnets a nat network may have at all
//! ([`Ipv4Cidr::check_nat`]: no loopback, link-local, multicast or other reserved range, a
//! prefix from /8 to /30), containment and overlap, and the host's routing
//! table (`/proc/net/route`) to refuse a subnet the host already routes somewhere else.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;
use std::str::FromStr;

use crate::NetError;

/// The shortest prefix a nat network may have (10.0.0.0/8 is the largest private range).
pub const MIN_NAT_PREFIX: u8 = 8;
/// The longest prefix a nat network may have: a /30 has a gateway and one DHCP address.
pub const MAX_NAT_PREFIX: u8 = 30;

/// Ranges no nat network may touch: `(network, prefix, what it is)`.
pub const RESERVED_RANGES: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "\"this network\""),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([224, 0, 0, 0], 4, "multicast"),
    (
        [240, 0, 0, 0],
        4,
        "reserved (with the broadcast address 255.255.255.255)",
    ),
];

/// An IPv4 network: an address with all host bits clear, and a prefix length 0..=32.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

fn mask_of(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Ipv4Cidr {
    /// The network `addr/prefix`; refuses a prefix over 32 or an address with host bits set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, NetError> {
        let input = || format!("{addr}/{prefix}");
        if prefix > 32 {
            return Err(NetError::InvalidSubnet {
                input: input(),
                reason: "prefix length must be 0..=32".into(),
            });
        }
        let network = Ipv4Addr::from(u32::from(addr) & mask_of(prefix));
        if network != addr {
            return Err(NetError::InvalidSubnet {
                input: input(),
                reason: format!("host bits are set (the network is {network}/{prefix})"),
            });
        }
        Ok(Ipv4Cidr { network, prefix })
    }

    /// The network that contains `addr` (host bits cleared): `10.0.0.7/24` -> `10.0.0.0/24`.
    pub fn containing(addr: Ipv4Addr, prefix: u8) -> Result<Self, NetError> {
        let masked = Ipv4Addr::from(u32::from(addr) & mask_of(prefix.min(32)));
        Self::new(masked, prefix)
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask (`255.255.255.0` for a /24).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(mask_of(self.prefix))
    }

    /// The broadcast address (the last address of the network).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask_of(self.prefix))
    }

    /// Number of addresses in the network (2^(32-prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// True if `ip` is inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask_of(self.prefix) == u32::from(self.network)
    }

    /// True if the two networks share at least one address (one contains the other).
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        let shorter = self.prefix.min(other.prefix);
        let m = mask_of(shorter);
        u32::from(self.network) & m == u32::from(other.network) & m
    }

    /// Check that this subnet can be a nat network: a bridge address (the gateway), a DHCP
    /// range and masquerade. Refused, with the reason:
    /// - prefixes shorter than [`MIN_NAT_PREFIX`] (`/0` is every address) or longer than
    ///   [`MAX_NAT_PREFIX`] (a `/31` or `/32` has no room for a gateway and a DHCP range);
    /// - any overlap with the ranges a host never routes to a LAN ([`RESERVED_RANGES`]):
    ///   "this network" 0.0.0.0/8, loopback 127.0.0.0/8, link-local 169.254.0.0/16,
    ///   multicast 224.0.0.0/4, and 240.0.0.0/4 with the broadcast address 255.255.255.255.
    pub fn check_nat(&self) -> Result<(), NetError> {
        let refuse = |reason: String| {
            Err(NetError::InvalidSubnet {
                input: self.to_string(),
                reason,
            })
        };
        if self.prefix < MIN_NAT_PREFIX {
            return refuse(format!(
                "a /{} is far too large for one network (it would take {} addresses): use a \
                 prefix from /{MIN_NAT_PREFIX} to /{MAX_NAT_PREFIX}, e.g. 10.77.0.0/24",
                self.prefix,
                self.size()
            ));
        }
        if let Some((range, what)) = self.reserved_overlap() {
            return refuse(format!(
                "it overlaps the {what} range {range}, which is never a LAN: use a private \
                 range such as 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
            ));
        }
        if self.prefix > MAX_NAT_PREFIX {
            return refuse(format!(
                "too small for a gateway and a DHCP range (at most /{MAX_NAT_PREFIX})"
            ));
        }
        Ok(())
    }

    /// The first reserved range ([`RESERVED_RANGES`]) this subnet shares an address with.
    pub fn reserved_overlap(&self) -> Option<(Ipv4Cidr, &'static str)> {
        RESERVED_RANGES.iter().find_map(|&(octets, prefix, what)| {
            let range = Ipv4Cidr {
                network: Ipv4Addr::from(octets),
                prefix,
            };
            self.overlaps(&range).then_some((range, what))
        })
    }

    /// The gateway (the bridge's address): the first host. Only for a subnet that passes
    /// [`Ipv4Cidr::check_nat`].
    pub fn gateway(&self) -> Result<Ipv4Addr, NetError> {
        self.check_nat()?;
        Ok(Ipv4Addr::from(u32::from(self.network) + 1))
    }

    /// The DHCP range: from the second host to the last host (the address before the
    /// broadcast address), both included. Only for a subnet that passes
    /// [`Ipv4Cidr::check_nat`].
    pub fn dhcp_range(&self) -> Result<(Ipv4Addr, Ipv4Addr), NetError> {
        self.check_nat()?;
        let start = Ipv4Addr::from(u32::from(self.network) + 2);
        let end = Ipv4Addr::from(u32::from(self.broadcast()) - 1);
        Ok((start, end))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl fmt::Debug for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ipv4Cidr({self})")
    }
}

impl FromStr for Ipv4Cidr {
    type Err = NetError;

    /// `a.b.c.d/len`; the address must be the network address (no host bits set).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| NetError::InvalidSubnet {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| bad("expected a.b.c.d/len, e.g. 10.77.0.0/24"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad("prefix length must be 0..=32"));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("prefix length must be 0..=32"))?;
        Self::new(addr, prefix).map_err(|e| match e {
            NetError::InvalidSubnet { reason, .. } => bad(&reason),
            other => other,
        })
    }
}

/// One IPv4 route of the host (a line of `/proc/net/route`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    pub iface: String,
    pub destination: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
}

impl HostRoute {
    /// True for a default route (0.0.0.0/0).
    pub fn is_default(&self) -> bool {
        self.destination.prefix == 0
    }
}

/// Parse the text of `/proc/net/route` (header line, then whitespace-separated columns
/// `Iface Destination Gateway Flags RefCnt Use Metric Mask ...`, addresses as hex of the
/// in-memory network-order value). Lines that do not parse are skipped.
pub fn parse_proc_net_route(text: &str) -> Vec<HostRoute> {
    let hex_addr = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
    };
    let mut routes = Vec::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 8 {
            continue;
        }
        let (Some(dest), Some(gw), Some(mask)) =
            (hex_addr(cols[1]), hex_addr(cols[2]), hex_addr(cols[7]))
        else {
            tracing::debug!(line, "skipping unparsable /proc/net/route line");
            continue;
        };
        let mask = u32::from(mask);
        if mask.leading_ones() + mask.trailing_zeros() != 32 {
            tracing::debug!(line, "skipping route with a non-contiguous mask");
            continue;
        }
        // `leading_ones` is at most 32, so the cast cannot truncate.
        let Ok(destination) = Ipv4Cidr::containing(dest, mask.leading_ones() as u8) else {
            continue;
        };
        routes.push(HostRoute {
            iface: cols[0].to_string(),
            destination,
            gateway: (!gw.is_unspecified()).then_some(gw),
        });
    }
    routes
}

/// The host's IPv4 routes, from `/proc/thread-self/net/route`: the routes of the calling
/// thread's network namespace (`/proc/net` is the main thread's, which differs for a
/// thread that entered another namespace with `setns`).
pub fn host_routes() -> Result<Vec<HostRoute>, NetError> {
    let path = Path::new("/proc/thread-self/net/route");
    let text = std::fs::read_to_string(path).map_err(|e| NetError::io("read", path, e))?;
    Ok(parse_proc_net_route(&text))
}

/// The routes that overlap `subnet`, ignoring default routes (which overlap everything)
/// and routes through `own_iface` (the network's own bridge, once it exists).
pub fn conflicting_routes<'a>(
    subnet: &Ipv4Cidr,
    routes: &'a [HostRoute],
    own_iface: Option<&str>,
) -> Vec<&'a HostRoute> {
    routes
        .iter()
        .filter(|r| !r.is_default())
        .filter(|r| own_iface != Some(r.iface.as_str()))
        .filter(|r| r.destination.overlaps(subnet))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().expect(s)
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect(s)
    }

    #[test]
    fn parse_display_and_basics() {
        let n = cidr("10.77.0.0/24");
        assert_eq!(n.to_string(), "10.77.0.0/24");
        assert_eq!(n.network(), ip("10.77.0.0"));
        assert_eq!(n.prefix(), 24);
        assert_eq!(n.netmask(), ip("255.255.255.0"));
        assert_eq!(n.broadcast(), ip("10.77.0.255"));
        assert_eq!(n.size(), 256);
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(cidr("0.0.0.0/0").netmask(), ip("0.0.0.0"));
        assert_eq!(cidr("192.168.1.7/32").broadcast(), ip("192.168.1.7"));
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0/24",
            "10.0.0.256/24",
            "::1/64",
            "10.0.0.0/24/1",
            "",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad:?} accepted");
        }
        let err = "10.0.0.1/24".parse::<Ipv4Cidr>().expect_err("host bits");
        let msg = err.to_string();
        assert!(
            msg.contains("host bits") && msg.contains("10.0.0.0/24"),
            "{msg}"
        );
        assert_eq!(
            Ipv4Cidr::containing(ip("10.0.0.1"), 24).expect("valid"),
            cidr("10.0.0.0/24")
        );
    }

    #[test]
    fn gateway_and_dhcp_range() {
        let n = cidr("10.77.0.0/24");
        assert_eq!(n.gateway().expect("gw"), ip("10.77.0.1"));
        assert_eq!(
            n.dhcp_range().expect("range"),
            (ip("10.77.0.2"), ip("10.77.0.254"))
        );
        let small = cidr("192.168.5.8/30");
        assert_eq!(small.gateway().expect("gw"), ip("192.168.5.9"));
        assert_eq!(
            small.dhcp_range().expect("range"),
            (ip("192.168.5.10"), ip("192.168.5.10"))
        );
        let big = cidr("172.16.0.0/12");
        assert_eq!(
            big.dhcp_range().expect("range"),
            (ip("172.16.0.2"), ip("172.31.255.254"))
        );
        for tiny in ["10.0.0.0/31", "10.0.0.0/32"] {
            let err = cidr(tiny).gateway().expect_err(tiny);
            assert!(err.to_string().contains("/30"), "{err}");
            assert!(cidr(tiny).dhcp_range().is_err());
        }
    }

    #[test]
    fn reserved_and_absurd_subnets_are_no_nat_network() {
        for (subnet, needle) in [
            ("127.1.0.0/24", "loopback range 127.0.0.0/8"),
            ("127.0.0.0/8", "loopback range 127.0.0.0/8"),
            ("127.255.255.252/30", "loopback range 127.0.0.0/8"),
            ("224.0.0.0/24", "multicast range 224.0.0.0/4"),
            ("239.255.255.0/24", "multicast range 224.0.0.0/4"),
            ("169.254.0.0/16", "link-local range 169.254.0.0/16"),
            ("169.254.10.0/24", "link-local range 169.254.0.0/16"),
            ("169.0.0.0/8", "link-local range 169.254.0.0/16"),
            ("0.0.0.0/8", "\"this network\" range 0.0.0.0/8"),
            ("0.1.2.0/24", "\"this network\" range 0.0.0.0/8"),
            ("255.255.255.255/32", "broadcast address 255.255.255.255"),
            ("255.255.255.252/30", "broadcast address 255.255.255.255"),
            ("240.0.0.0/24", "reserved"),
            ("0.0.0.0/0", "a /0 is far too large"),
            ("10.0.0.0/7", "a /7 is far too large"),
            ("128.0.0.0/1", "a /1 is far too large"),
            ("10.0.0.0/31", "too small"),
            ("10.0.0.0/32", "too small"),
        ] {
            let n = cidr(subnet);
            let msg = n.check_nat().expect_err(subnet).to_string();
            assert!(msg.contains(needle), "{subnet}: {msg}");
            assert!(msg.contains(subnet), "{subnet}: {msg}");
            assert!(n.gateway().is_err() && n.dhcp_range().is_err(), "{subnet}");
        }
        for ok in [
            "10.0.0.0/8",
            "10.77.0.0/24",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "192.168.5.8/30",
            "100.64.0.0/10",
            "128.0.0.0/8",
            "126.0.0.0/8",
            "223.255.255.0/24",
            "1.0.0.0/8",
            "169.253.0.0/16",
            "169.255.0.0/16",
        ] {
            assert_eq!(cidr(ok).check_nat().ok(), Some(()), "{ok} refused");
        }
    }

    #[test]
    fn contains_and_overlaps() {
        let n = cidr("10.77.0.0/24");
        assert!(n.contains(ip("10.77.0.0")));
        assert!(n.contains(ip("10.77.0.255")));
        assert!(!n.contains(ip("10.77.1.0")));
        assert!(!n.contains(ip("10.76.255.255")));
        assert!(cidr("0.0.0.0/0").contains(ip("8.8.8.8")));

        assert!(n.overlaps(&cidr("10.77.0.0/24")));
        assert!(n.overlaps(&cidr("10.0.0.0/8")));
        assert!(cidr("10.0.0.0/8").overlaps(&n));
        assert!(n.overlaps(&cidr("10.77.0.128/25")));
        assert!(!n.overlaps(&cidr("10.77.1.0/24")));
        assert!(!n.overlaps(&cidr("192.168.0.0/16")));
        assert!(cidr("0.0.0.0/0").overlaps(&n));
    }

    const PROC_NET_ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
kbr-default\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
bogus\tzzzz\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
weird\t0000000A\t00000000\t0001\t0\t0\t0\t00FF00FF\t0\t0\t0
";

    #[test]
    fn parses_proc_net_route() {
        let routes = parse_proc_net_route(PROC_NET_ROUTE);
        assert_eq!(routes.len(), 4, "{routes:?}");
        assert_eq!(
            routes[0],
            HostRoute {
                iface: "eth0".into(),
                destination: cidr("0.0.0.0/0"),
                gateway: Some(ip("192.168.0.1")),
            }
        );
        assert!(routes[0].is_default());
        assert_eq!(routes[1].destination, cidr("192.168.0.0/24"));
        assert_eq!(routes[1].gateway, None);
        assert_eq!(routes[2].destination, cidr("172.17.0.0/16"));
        assert_eq!(routes[3].destination, cidr("10.77.0.0/24"));
    }

    #[test]
    fn conflicts_ignore_default_route_and_own_bridge() {
        let routes = parse_proc_net_route(PROC_NET_ROUTE);
        let hits = conflicting_routes(&cidr("192.168.0.128/25"), &routes, None);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].iface, "eth0");
        assert!(conflicting_routes(&cidr("10.99.0.0/24"), &routes, None).is_empty());
        assert!(conflicting_routes(&cidr("172.16.0.0/12"), &routes, None).len() == 1);
        let own = cidr("10.77.0.0/24");
        assert_eq!(conflicting_routes(&own, &routes, None).len(), 1);
        assert!(conflicting_routes(&own, &routes, Some("kbr-default")).is_empty());
    }

    #[test]
    fn reads_this_hosts_routes() {
        // Only checks that the file is readable and parses; the content is the host's.
        let routes = host_routes().expect("/proc/net/route");
        for r in &routes {
            assert!(!r.iface.is_empty());
        }
    }
}

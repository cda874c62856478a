//! Property tests of netstack's input validators against their documented rules: subnets
//! (`a.b.c.d/len`, host bits clear; a nat network only /8../30 outside the reserved
//! ranges), MAC addresses (six hex pairs split by `:` or `-`, unicast, not all-zero),
//! interface names (1-15 bytes, not `.`/`..`, no `/`, `:`, whitespace or control
//! characters) and derived interface names. Each: what matches the rule is accepted, what
//! is accepted matches the rule, and no input panics.

use std::net::Ipv4Addr;

use kcore_netstack::link::{derive_name, validate_ifname};
use kcore_netstack::{Ipv4Cidr, MacAddr};
use proptest::prelude::*;
use regex::Regex;

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// The rule for `Ipv4Cidr::from_str`, written independently: four decimal octets 0-255
/// without leading zeros, `/`, one or two digits making 0-32, no host bits.
fn subnet_rule(s: &str) -> Option<(u32, u8)> {
    let re = Regex::new(r"^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})/([0-9]{1,2})$")
        .expect("regex");
    let c = re.captures(s)?;
    let mut addr = 0u32;
    for i in 1..=4 {
        let octet: u32 = c[i].parse().ok()?;
        if octet > 255 {
            return None;
        }
        addr = addr << 8 | octet;
    }
    let prefix: u8 = c[5].parse().ok()?;
    if prefix > 32 || addr & !mask(prefix) != 0 {
        return None;
    }
    Some((addr, prefix))
}

/// The documented nat rule: /8 to /30, no overlap with 0/8, 127/8, 169.254/16, 224/4,
/// 240/4.
fn nat_rule(addr: u32, prefix: u8) -> bool {
    let reserved: [(u32, u8); 5] = [
        (0, 8),
        (127 << 24, 8),
        ((169 << 24) | (254 << 16), 16),
        (224 << 24, 4),
        (240 << 24, 4),
    ];
    (8..=30).contains(&prefix)
        && reserved
            .iter()
            .all(|&(net, len)| (addr ^ net) & mask(prefix.min(len)) != 0)
}

fn subnet_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<u32>(), 0u8..=40).prop_map(|(a, p)| format!("{}/{p}", Ipv4Addr::from(a))),
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, p)| { format!("{}/{p}", Ipv4Addr::from(a & mask(p))) }),
        "[0-9./]{0,20}",
        "[0-9]{1,4}\\.[0-9]{1,4}\\.[0-9]{1,4}\\.[0-9]{1,4}/[0-9+-]{0,3}",
        any::<String>(),
    ]
}

fn mac_rule(s: &str) -> Option<[u8; 6]> {
    let re =
        Regex::new(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$|^[0-9a-fA-F]{2}(-[0-9a-fA-F]{2}){5}$")
            .expect("regex");
    if !re.is_match(s) {
        return None;
    }
    let mut b = [0u8; 6];
    for (i, part) in s.split([':', '-']).enumerate() {
        b[i] = u8::from_str_radix(part, 16).ok()?;
    }
    (b[0] & 1 == 0 && b != [0; 6]).then_some(b)
}

fn mac_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 6]>().prop_map(|b| {
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        }),
        any::<[u8; 6]>().prop_map(|b| {
            b.iter()
                .map(|x| format!("{x:02X}"))
                .collect::<Vec<_>>()
                .join("-")
        }),
        "[0-9a-fA-F:-]{0,20}",
        "[0-9a-gA-G]{2}([:-][0-9a-fA-F]{1,3}){4,6}",
        any::<String>(),
    ]
}

fn ifname_rule(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && !s
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn subnets_parse_exactly_by_the_rule(s in subnet_text()) {
        let parsed = s.parse::<Ipv4Cidr>();
        match subnet_rule(&s) {
            Some((addr, prefix)) => {
                let c = parsed.expect("matches the rule");
                prop_assert_eq!(u32::from(c.network()), addr);
                prop_assert_eq!(c.prefix(), prefix);
                // Display is canonical and parses back to the same network.
                prop_assert_eq!(c.to_string().parse::<Ipv4Cidr>().ok(), Some(c));
            }
            None => prop_assert!(parsed.is_err(), "{:?} accepted", s),
        }
    }

    #[test]
    fn nat_subnets_follow_the_rule(addr in any::<u32>(), prefix in 0u8..=32) {
        let c = Ipv4Cidr::containing(Ipv4Addr::from(addr), prefix).expect("prefix <= 32");
        let net = u32::from(c.network());
        let ok = nat_rule(net, prefix);
        prop_assert_eq!(c.check_nat().is_ok(), ok, "{}", c);
        match (c.gateway(), c.dhcp_range()) {
            (Ok(gw), Ok((start, end))) => {
                prop_assert!(ok);
                prop_assert_eq!(u32::from(gw), net + 1);
                prop_assert!(c.contains(start) && c.contains(end) && start <= end);
                prop_assert!(start > gw && end < c.broadcast());
            }
            (gw, range) => {
                prop_assert!(!ok);
                prop_assert!(gw.is_err() && range.is_err());
            }
        }
    }

    #[test]
    fn macs_parse_exactly_by_the_rule(s in mac_text()) {
        match (mac_rule(&s), s.parse::<MacAddr>()) {
            (Some(bytes), Ok(m)) => {
                prop_assert_eq!(m.octets(), bytes);
                prop_assert_eq!(m.to_string().parse::<MacAddr>().ok(), Some(m));
                prop_assert_eq!(m.to_string(), s.replace('-', ":").to_ascii_lowercase());
            }
            (None, Err(_)) => {}
            (rule, parsed) => prop_assert!(false, "{:?}: rule {:?}, parsed {:?}", s, rule, parsed),
        }
    }

    #[test]
    fn mac_bytes_are_unicast_and_not_zero(b in any::<[u8; 6]>(), tail in any::<[u8; 3]>()) {
        prop_assert_eq!(MacAddr::from_bytes(b).is_ok(), b[0] & 1 == 0 && b != [0; 6]);
        let m = MacAddr::with_tail(tail);
        prop_assert!(m.is_local());
        prop_assert_eq!(MacAddr::from_bytes(m.octets()).ok(), Some(m));
    }

    #[test]
    fn interface_names_follow_the_kernels_rule(
        s in prop_oneof!["[a-z0-9./: -]{0,18}", "\\PC{0,16}", any::<String>()]
    ) {
        prop_assert_eq!(validate_ifname(&s).is_ok(), ifname_rule(&s), "{:?}", s);
    }

    #[test]
    fn derived_names_are_valid_and_stable(key in any::<String>(), tap in any::<bool>()) {
        let prefix = if tap { "ktap-" } else { "kbr-" };
        let name = derive_name(prefix, &key).expect("derive");
        prop_assert!(validate_ifname(&name).is_ok(), "{:?}", name);
        prop_assert!(name.starts_with(prefix));
        prop_assert_eq!(derive_name(prefix, &key).ok(), Some(name.clone()));
        if !key.is_empty() && validate_ifname(&format!("{prefix}{key}")).is_ok() {
            prop_assert_eq!(name, format!("{prefix}{key}"));
        }
    }
}

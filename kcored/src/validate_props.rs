//! Property tests of the daemon's own input validators against their documented rules: VM
//! and node names (`[a-z0-9][a-z0-9-]{0,62}`, `kcore_types::VmName`), network
//! names (`[a-z][a-z0-9-]{0,62}`: a letter first, as nftables table names need), and a nat
//! network's subnet (`NetworkDef::new` accepts exactly what parses and passes
//! `Ipv4Cidr::check_nat`). What matches the rule is accepted, what is accepted matches it,
//! and no input panics.

use kcore_netstack::Ipv4Cidr;
use proptest::prelude::*;
use regex::Regex;

use crate::netdef::NetworkDef;

fn names() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9][a-z0-9-]{0,62}",
        "[a-z][a-z0-9-]{0,62}",
        "[a-z0-9-]{60,66}",
        "[a-zA-Z0-9._/ -]{0,70}",
        "\\PC{0,20}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn vm_and_node_names_follow_the_rule(name in names()) {
        let rule = Regex::new("^[a-z0-9][a-z0-9-]{0,62}$").expect("regex");
        prop_assert_eq!(kcore_types::VmName::parse(&name).is_ok(), rule.is_match(&name), "{:?}", name);
        prop_assert_eq!(kcore_types::NodeName::parse(&name).is_ok(), rule.is_match(&name), "{:?}", name);
    }

    #[test]
    fn network_names_follow_the_rule(name in names()) {
        let rule = Regex::new("^[a-z][a-z0-9-]{0,62}$").expect("regex");
        prop_assert_eq!(kcore_types::NetworkName::parse(&name).is_ok(), rule.is_match(&name), "{:?}", name);
    }

    #[test]
    fn nat_networks_take_exactly_the_subnets_netstack_allows(
        subnet in prop_oneof![
            (any::<u32>(), 0u8..=33).prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv4Addr::from(a))),
            (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
                let mask = if p == 0 { 0 } else { u32::MAX << (32 - u32::from(p)) };
                format!("{}/{p}", std::net::Ipv4Addr::from(a & mask))
            }),
            any::<String>(),
        ]
    ) {
        let want = subnet
            .trim()
            .parse::<Ipv4Cidr>()
            .is_ok_and(|c| c.check_nat().is_ok());
        let got = NetworkDef::new("n", crate::netdef::Mode::Nat, &subnet, "", "");
        prop_assert_eq!(got.is_ok(), want, "{:?}: {:?}", subnet, got);
        if let Ok(def) = got {
            // The stored subnet is canonical and the gateway is its first host.
            let c = def.cidr().expect("a nat network has a subnet");
            prop_assert_eq!(def.subnet.clone(), Some(c.to_string()));
            prop_assert!(c.gateway().is_ok());
        }
    }
}

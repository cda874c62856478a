//! A NAT table of kcore's own per network: `table ip kcore_<network>` with a postrouting
//! masquerade rule for the subnet's traffic leaving through anything but the network's
//! bridge, and forward accept rules for it. Applied atomically with `nft -f -` (the table
//! is created, emptied and refilled in one transaction, so applying twice is harmless),
//! deleted with `nft delete table ip kcore_<network>`. Only tables named `kcore_*` are
//! ever listed or deleted.
//!
//! The forward accept rules only help where no other table drops the traffic: nftables
//! evaluates every base chain of a hook, and a drop in any of them (e.g. a firewall's
//! `policy drop`) wins over our accept.

use crate::link::validate_ifname;
use crate::tool::{self, NFT};
use crate::{Ipv4Cidr, NetError};

/// Prefix of kcore's nftables tables.
pub const TABLE_PREFIX: &str = "kcore_";

/// What the NAT table of a network needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatSpec {
    /// The network's name (letters, digits, `_` and `-`, starting with a letter).
    pub network: String,
    pub subnet: Ipv4Cidr,
    /// The network's bridge: traffic leaving through it is not masqueraded.
    pub bridge: String,
}

/// The table name of `network`: `kcore_<network>`.
pub fn table_name(network: &str) -> Result<String, NetError> {
    let ok = !network.is_empty()
        && network.len() <= 64
        && network.starts_with(|c: char| c.is_ascii_alphabetic())
        && network
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        return Err(NetError::invalid(
            "network name",
            format!("{network:?}: use 1-64 letters, digits, '_' or '-', starting with a letter"),
        ));
    }
    Ok(format!("{TABLE_PREFIX}{network}"))
}

/// The nft script that (re)creates the NAT table of `spec` (for `nft -f -`).
pub fn nat_ruleset(spec: &NatSpec) -> Result<String, NetError> {
    let table = table_name(&spec.network)?;
    validate_ifname(&spec.bridge)?;
    if !spec
        .bridge
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(NetError::InvalidName {
            name: spec.bridge.clone(),
            reason: "only letters, digits, '-', '_' and '.' can go into an nft rule".into(),
        });
    }
    let (net, br) = (spec.subnet, &spec.bridge);
    Ok(format!(
        "add table ip {table}
delete table ip {table}
table ip {table} {{
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr {net} ip daddr != {{ 224.0.0.0/24, 255.255.255.255/32 }} oifname != \"{br}\" masquerade
\t}}
\tchain forward {{
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"{br}\" ip saddr {net} accept
\t\toifname \"{br}\" ip daddr {net} ct state established,related accept
\t}}
}}
"
    ))
}

/// Create or replace the NAT table of `spec` (runs `nft -f -`).
pub async fn apply_nat(spec: &NatSpec) -> Result<(), NetError> {
    let script = nat_ruleset(spec)?;
    tool::run(NFT, &["-f", "-"], Some(&script)).await?;
    tracing::info!(network = %spec.network, subnet = %spec.subnet, bridge = %spec.bridge, "applied NAT table");
    Ok(())
}

/// The names of the `ip` tables in `nft list tables` output that are kcore's, without
/// the prefix (that is, the network names).
pub fn parse_kcore_tables(list_output: &str) -> Vec<String> {
    list_output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("table"), Some("ip"), Some(name), None) => name
                    .strip_prefix(TABLE_PREFIX)
                    .filter(|n| table_name(n).is_ok())
                    .map(str::to_string),
                _ => None,
            }
        })
        .collect()
}

/// The networks that have a kcore NAT table.
pub async fn list_kcore_tables() -> Result<Vec<String>, NetError> {
    let out = tool::run(NFT, &["list", "tables", "ip"], None).await?;
    Ok(parse_kcore_tables(&out))
}

/// Delete the NAT table of `network`. Returns false if there was none.
pub async fn delete_nat(network: &str) -> Result<bool, NetError> {
    let table = table_name(network)?;
    if !list_kcore_tables().await?.iter().any(|n| n == network) {
        return Ok(false);
    }
    tool::run(NFT, &["delete", "table", "ip", &table], None).await?;
    tracing::info!(network, "deleted NAT table");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_ruleset() {
        let spec = NatSpec {
            network: "default".into(),
            subnet: "10.77.0.0/24".parse().expect("cidr"),
            bridge: "kbr-default".into(),
        };
        let expected = "\
add table ip kcore_default
delete table ip kcore_default
table ip kcore_default {
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 10.77.0.0/24 ip daddr != { 224.0.0.0/24, 255.255.255.255/32 } oifname != \"kbr-default\" masquerade
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"kbr-default\" ip saddr 10.77.0.0/24 accept
\t\toifname \"kbr-default\" ip daddr 10.77.0.0/24 ct state established,related accept
\t}
}
";
        assert_eq!(nat_ruleset(&spec).expect("ruleset"), expected);
    }

    #[test]
    fn table_names() {
        assert_eq!(table_name("lab-2_a").expect("ok"), "kcore_lab-2_a");
        for bad in [
            "",
            "2lab",
            "-x",
            "a b",
            "a;b",
            "a\"b",
            "a}b",
            &"x".repeat(65),
        ] {
            assert!(table_name(bad).is_err(), "{bad:?}");
        }
        let spec = NatSpec {
            network: "x".into(),
            subnet: "10.0.0.0/24".parse().expect("cidr"),
            bridge: "bad\"name".into(),
        };
        assert!(nat_ruleset(&spec).is_err());
    }

    #[test]
    fn parses_table_list() {
        let out = "table ip nat\ntable ip kcore_default\ntable inet kcore_x\ntable ip kcore_lab-2\ntable ip kcore_\n";
        assert_eq!(parse_kcore_tables(out), ["default", "lab-2"]);
        assert!(parse_kcore_tables("").is_empty());
    }
}

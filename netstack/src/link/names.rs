//! kcore's link names (`kbr-`, `ktap-`, at most 15 bytes) and the alias mark
//! (`kcore:<purpose>:<owner>`) every link it creates carries.

use std::fmt;

use crate::NetError;

/// Name prefix of kcore's bridges.
pub const BRIDGE_PREFIX: &str = "kbr-";
/// Name prefix of kcore's taps.
pub const TAP_PREFIX: &str = "ktap-";
/// Prefix of the interface alias that marks a link as kcore's.
pub const ALIAS_PREFIX: &str = "kcore:";
/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;
/// MTU bounds accepted for bridges and taps (IPv4 minimum, Ethernet maximum).
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65535;

/// Check that the kernel will accept `name` as an interface name: 1..=15 bytes, not `.`
/// or `..`, no `/`, `:` or whitespace.
pub fn validate_ifname(name: &str) -> Result<(), NetError> {
    let bad = |reason: String| NetError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty".into()));
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(bad(format!(
            "{} bytes long; Linux interface names are at most {MAX_IFNAME_LEN}",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(bad("not a valid name".into()));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(bad("must not contain '/', ':' or whitespace".into()));
    }
    Ok(())
}

/// A deterministic interface name for `key` with `prefix` (e.g. `kbr-` + a network name):
/// `prefix + key` when that is a valid name of at most 15 bytes, otherwise `prefix` + hex
/// digits of a hash of `key` filling the 15 bytes (stable across runs and versions).
pub fn derive_name(prefix: &str, key: &str) -> Result<String, NetError> {
    let direct = format!("{prefix}{key}");
    if !key.is_empty() && validate_ifname(&direct).is_ok() {
        return Ok(direct);
    }
    let room = MAX_IFNAME_LEN.saturating_sub(prefix.len());
    if room < 6 {
        return Err(NetError::InvalidName {
            name: prefix.to_string(),
            reason: "prefix leaves fewer than 6 bytes for the hash".into(),
        });
    }
    // FNV-1a, 64 bits: small, fixed, and good enough to spread names.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let hex = format!("{hash:016x}");
    let name = format!("{prefix}{}", &hex[..room.min(hex.len())]);
    validate_ifname(&name)?;
    Ok(name)
}

/// What a kcore link is for and who it belongs to, stored as the interface alias
/// `kcore:<purpose>:<owner>` (e.g. `kcore:bridge:default`, `kcore:tap:vm-1234/0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mark {
    purpose: String,
    owner: String,
}

impl Mark {
    /// `purpose`: lowercase letters, digits and `-`; `owner`: non-empty, printable, no
    /// whitespace (it may contain `:`). The alias must fit the kernel's 255 bytes.
    pub fn new(purpose: impl Into<String>, owner: impl Into<String>) -> Result<Self, NetError> {
        let (purpose, owner) = (purpose.into(), owner.into());
        if purpose.is_empty()
            || !purpose
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        {
            return Err(NetError::invalid(
                "link mark",
                format!("purpose {purpose:?} must be lowercase letters, digits and '-'"),
            ));
        }
        if owner.is_empty() || owner.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(NetError::invalid(
                "link mark",
                format!("owner {owner:?} must be non-empty without whitespace"),
            ));
        }
        let mark = Mark { purpose, owner };
        if mark.alias().len() > 255 {
            return Err(NetError::invalid(
                "link mark",
                "alias longer than 255 bytes",
            ));
        }
        Ok(mark)
    }

    /// The purpose (`bridge`, `tap`, ...).
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// The owner (a network name, a VM id, ...).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The interface alias carrying this mark.
    pub fn alias(&self) -> String {
        format!("{ALIAS_PREFIX}{}:{}", self.purpose, self.owner)
    }

    /// The mark in an interface alias, if it is one of kcore's.
    pub fn from_alias(alias: &str) -> Option<Mark> {
        let rest = alias.strip_prefix(ALIAS_PREFIX)?;
        let (purpose, owner) = rest.split_once(':')?;
        Mark::new(purpose, owner).ok()
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.alias())
    }
}

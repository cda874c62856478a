//! Ethernet MAC addresses: parsing and printing (`52:54:00:ab:cd:ef`), validation (only
//! unicast, non-zero addresses are accepted: a VM NIC or a bridge with a multicast or
//! all-zero address does not work), and random generation in the locally administered
//! `52:54:00` range that QEMU uses.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::TypeError;

/// The prefix of generated addresses: `0x52` has the locally administered bit set and the
/// multicast bit clear; `52:54:00` is QEMU's conventional range.
pub const KCORE_OUI: [u8; 3] = [0x52, 0x54, 0x00];

/// A validated unicast, non-zero Ethernet address. Serde reads and writes it as text
/// (`52:54:00:ab:cd:ef`), through the parser.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr([u8; 6]);

impl TryFrom<String> for MacAddr {
    type Error = TypeError;
    fn try_from(s: String) -> Result<Self, TypeError> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

impl MacAddr {
    /// Validate raw bytes: refuse multicast (including broadcast) and all-zero addresses.
    pub fn from_bytes(bytes: [u8; 6]) -> Result<Self, TypeError> {
        let input = || format_bytes(&bytes);
        if bytes == [0; 6] {
            return Err(TypeError::InvalidMac {
                input: input(),
                reason: "all-zero address",
            });
        }
        if bytes[0] & 0x01 != 0 {
            return Err(TypeError::InvalidMac {
                input: input(),
                reason: "multicast address (lowest bit of the first octet set)",
            });
        }
        Ok(MacAddr(bytes))
    }

    /// Validate a byte slice as returned by netlink (must be exactly 6 bytes).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, TypeError> {
        let arr: [u8; 6] = bytes.try_into().map_err(|_| TypeError::InvalidMac {
            input: format!("{bytes:02x?}"),
            reason: "not 6 bytes long",
        })?;
        Self::from_bytes(arr)
    }

    /// A random address `52:54:00:xx:xx:xx`.
    pub fn generate() -> Result<Self, TypeError> {
        let mut tail = [0u8; 3];
        getrandom::fill(&mut tail).map_err(|e| TypeError::Random {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        })?;
        Ok(Self::with_tail(tail))
    }

    /// The address `52:54:00:<tail>` (deterministic; `generate` picks the tail at random).
    pub fn with_tail(tail: [u8; 3]) -> Self {
        let [a, b, c] = KCORE_OUI;
        MacAddr([a, b, c, tail[0], tail[1], tail[2]])
    }

    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// True if the locally administered bit is set (not a vendor-assigned address).
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

fn format_bytes(b: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[0], b[1], b[2], b[3], b[4], b[5]
    )
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes(&self.0))
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MacAddr({self})")
    }
}

impl FromStr for MacAddr {
    type Err = TypeError;

    /// Six pairs of hex digits separated by `:` (or all by `-`), in either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| TypeError::InvalidMac {
            input: s.to_string(),
            reason,
        };
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut bytes = [0u8; 6];
        let mut parts = s.split(sep);
        for byte in &mut bytes {
            let part = parts
                .next()
                .ok_or_else(|| bad("expected six octets like 52:54:00:12:34:56"))?;
            if part.len() != 2 || !part.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad("each octet must be two hex digits"));
            }
            *byte = u8::from_str_radix(part, 16)
                .map_err(|_| bad("each octet must be two hex digits"))?;
        }
        if parts.next().is_some() {
            return Err(bad("expected six octets like 52:54:00:12:34:56"));
        }
        Self::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let mac: MacAddr = "52:54:00:AB:cd:0F".parse().expect("valid");
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
        assert_eq!(mac.octets(), [0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f]);
        let dashed: MacAddr = "52-54-00-ab-cd-0f".parse().expect("valid");
        assert_eq!(dashed, mac);
        assert_eq!(format!("{mac:?}"), "MacAddr(52:54:00:ab:cd:0f)");
        // A vendor (universally administered) unicast address is fine too.
        let vendor: MacAddr = "00:16:3e:00:00:01".parse().expect("valid");
        assert!(!vendor.is_local());
        assert!(mac.is_local());
    }

    #[test]
    fn refuses_multicast_broadcast_and_zero() {
        for bad in [
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "33:33:00:00:00:01",
        ] {
            let err = bad.parse::<MacAddr>().expect_err(bad);
            assert!(err.to_string().contains("multicast"), "{bad}: {err}");
        }
        let err = "00:00:00:00:00:00"
            .parse::<MacAddr>()
            .expect_err("zero refused");
        assert!(err.to_string().contains("all-zero"), "{err}");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:01",
            "52:54:00:ab:cd:e",
            "52:54:00:ab:cd:efg",
            "52:54:00:ab:cd:+f",
            "52:54-00:ab:cd:ef",
            "525400abcdef",
            " 52:54:00:ab:cd:ef",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} accepted");
        }
        assert!(MacAddr::from_slice(&[0x52, 0x54, 0, 1, 2]).is_err());
        assert!(MacAddr::from_slice(&[0x52, 0x54, 0, 1, 2, 3]).is_ok());
    }

    #[test]
    fn generated_addresses_are_local_unicast_in_range_and_vary() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..64 {
            let mac = MacAddr::generate().expect("getrandom");
            let o = mac.octets();
            assert_eq!(o[..3], KCORE_OUI);
            assert!(mac.is_local());
            assert_eq!(o[0] & 1, 0, "unicast");
            // What it prints parses back to the same address.
            assert_eq!(mac.to_string().parse::<MacAddr>().expect("valid"), mac);
            seen.insert(mac);
        }
        // 64 draws from 2^24: a collision or two is possible, all-equal is not.
        assert!(seen.len() > 60, "only {} distinct addresses", seen.len());
    }

    #[test]
    fn with_tail_is_deterministic() {
        assert_eq!(
            MacAddr::with_tail([1, 2, 3]).to_string(),
            "52:54:00:01:02:03"
        );
    }
}

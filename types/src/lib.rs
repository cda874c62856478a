//! Names and addresses as types, shared by every crate of kcore (no tonic, no SQLite, no
//! I/O): a [`VmName`], [`NodeName`], [`NetworkName`], [`PoolName`], [`VolumeName`],
//! [`ImageName`] or [`MacAddr`] can only be had by parsing, so a value of one of these
//! types is valid wherever it travels. Serde reads them through the same parser.
//!
//! The rules (one place):
//!
//! | type | rule | why |
//! |---|---|---|
//! | `VmName`, `NodeName` | `[a-z0-9][a-z0-9-]{0,62}` | DNS-label-like, the API contract |
//! | `NetworkName` | `[a-z][a-z0-9-]{0,62}` | a letter first: it becomes an nftables table name |
//! | `PoolName`, `VolumeName`, `ImageName` | `[a-z0-9][a-z0-9._-]{0,62}` | one safe path component (no `/`, never `.`-first) |
//! | `MacAddr` | six hex octets, `:` or `-`, unicast, not all-zero | a NIC's address |

mod mac;
mod names;

pub use mac::{KCORE_OUI, MacAddr};
pub use names::{ImageName, NetworkName, NodeName, PoolName, TemplateName, VmName, VolumeName};

/// Why a name or an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// A name that does not follow its rule. The message says the rule.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: &'static str,
    },
    /// A MAC address that does not parse, or is not a usable unicast address.
    #[error("invalid MAC address {input:?}: {reason}")]
    InvalidMac { input: String, reason: &'static str },
    /// The system's random source failed (generating a MAC).
    #[error("getrandom failed (errno {errno})")]
    Random { errno: i32 },
}

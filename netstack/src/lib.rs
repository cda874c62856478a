//! Host networking for kcore VMs, without libvirt: MAC addresses, IPv4 subnets, Linux
//! bridges and taps (rtnetlink and the tun ioctl), a per-network dnsmasq (argv, leases,
//! spawn) and a per-network nftables NAT table.
//!
//! Every link kcore creates carries an interface alias `kcore:<purpose>:<owner>` (see
//! [`link::Mark`]), and every nftables table is named `kcore_<network>`: listing and removal
//! only ever touch what carries those marks, never the host's own interfaces or rules.
//!
//! This crate knows nothing of QEMU, gRPC or SQLite.

pub mod dnsmasq;
pub mod error;
pub mod link;
pub mod nft;
pub mod subnet;
pub mod tap;
pub mod tool;

pub use error::NetError;
pub use kcore_types::{KCORE_OUI, MacAddr};
pub use link::{BridgeSpec, Link, Mark, Netlink};
pub use subnet::Ipv4Cidr;
pub use tap::TapSpec;

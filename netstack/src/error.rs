//! The one error type of the `netstack` crate.

use std::path::PathBuf;

/// Everything that can go wrong while setting up or tearing down a VM network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A MAC address (or another shared type) that does not parse.
    #[error(transparent)]
    Type(#[from] kcore_types::TypeError),

    /// An IPv4 CIDR that does not parse or cannot be used as asked.
    #[error("invalid subnet {input:?}: {reason}")]
    InvalidSubnet { input: String, reason: String },

    /// An interface name the kernel would refuse (empty, longer than 15 bytes, `/`, ...).
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },

    /// Any other invalid input (an MTU out of range, a network name nftables cannot use,
    /// an alias mark with a `:` in its purpose, ...).
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    /// A link that must exist does not (`kind` says what it was for: "uplink", "bridge").
    #[error("{kind} {name:?} does not exist")]
    LinkNotFound { kind: &'static str, name: String },

    /// A link with that name exists already.
    #[error("a link named {name:?} already exists")]
    LinkExists { name: String },

    /// The link exists but is not marked as kcore's, so kcore will not change or remove it.
    #[error("link {name:?} is not kcore's (alias {alias:?}): refusing to touch it")]
    NotKcore { name: String, alias: Option<String> },

    /// A netlink request failed.
    #[error("netlink {op} {name}")]
    Netlink {
        op: &'static str,
        name: String,
        #[source]
        source: rtnetlink::Error,
    },

    /// An I/O operation on a named path failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A system call (an ioctl on /dev/net/tun, a signal, ...) failed.
    #[error("{op} {name}")]
    Sys {
        op: &'static str,
        name: String,
        #[source]
        source: nix::Error,
    },

    /// A helper program is not installed.
    #[error("{tool} not found: install the Debian package {package}")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },

    /// A helper program ran and failed.
    #[error("{program} failed ({status}): {stderr}")]
    CommandFailed {
        program: String,
        status: String,
        stderr: String,
    },

    /// A line of a dnsmasq lease file that does not parse.
    #[error("invalid lease line {line:?}: {reason}")]
    InvalidLease { line: String, reason: &'static str },
}

impl NetError {
    /// Wrap an `std::io::Error` with the operation and the path it was about.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NetError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Wrap a failed system call with the operation and the object it was about.
    pub fn sys(op: &'static str, name: impl Into<String>, source: nix::Error) -> Self {
        NetError::Sys {
            op,
            name: name.into(),
            source,
        }
    }

    /// Shorthand for [`NetError::Invalid`].
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        NetError::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

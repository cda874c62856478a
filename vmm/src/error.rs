//! The one error type of the `vmm` crate.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while building, starting, talking to or stopping a QEMU.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// The VM spec is not valid (a value out of range, a file that does not exist, ...).
    #[error("invalid VM spec: {0}")]
    InvalidSpec(String),

    /// An I/O operation on a named path failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A system call failed.
    #[error("{op}")]
    Sys {
        op: &'static str,
        #[source]
        source: nix::Error,
    },

    /// QEMU could not be started or exited before it was ready.
    #[error("QEMU failed to start: {0}")]
    QemuStart(String),

    /// The QMP peer answered a command with an error.
    #[error("QMP {command} failed: {class}: {desc}")]
    QmpCommand {
        command: String,
        class: String,
        desc: String,
    },

    /// A QMP command (or the greeting) did not get an answer in time: QEMU is hung.
    #[error("QMP {command} got no reply within {timeout:?} (QEMU not responding)")]
    QmpTimeout { command: String, timeout: Duration },

    /// The QMP connection is closed (QEMU exited or closed the socket).
    #[error("QMP connection closed")]
    QmpClosed,

    /// The QMP peer sent something that is not valid QMP.
    #[error("QMP protocol error: {0}")]
    QmpProtocol(String),

    /// The operation is not allowed in the VM's current state.
    #[error("VM is {state}: cannot {op}")]
    WrongState { op: &'static str, state: String },

    /// The VM's NICs cannot be had (no NIC provider, a tap count that does not match).
    #[error("network: {0}")]
    Network(String),

    /// The owner's NIC provider failed to open a tap (network missing, netlink refused,
    /// ...): its error is the source.
    #[error("network")]
    NicOpen(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// A QEMU of this VM is still alive: starting another would put two writers on its
    /// disks.
    #[error("a QEMU of this VM is still running (pid {pid}): not starting a second one")]
    AlreadyRunning { pid: u32 },

    /// A migration (a memory snapshot saved or restored, or a live migration) failed;
    /// QEMU's own words when it gave any.
    #[error("migration failed: {0}")]
    Migration(String),

    /// No QEMU with that id is known.
    #[error("no such VM {0}")]
    NotFound(String),
}

/// `e` and its sources, joined by `": "` (`create /run/kcore/vms/x/qemu.log: Permission
/// denied (os error 13)`): the variants' own messages leave the cause to `source`, and a
/// status reason is read by people. A source whose text is already in the message is not
/// repeated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cur = s.source();
    }
    msg
}

impl VmmError {
    /// Wrap an `std::io::Error` with the operation and the path it was about.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        VmmError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_adds_each_cause_once() {
        let e = VmmError::io(
            "create",
            "/run/x/qemu.log",
            std::io::Error::from_raw_os_error(libc::EACCES),
        );
        assert_eq!(e.to_string(), "create /run/x/qemu.log");
        assert_eq!(
            chain(&e),
            "create /run/x/qemu.log: Permission denied (os error 13)"
        );
        // A source whose text the message already has is not repeated.
        let inner = VmmError::QmpClosed;
        let e = VmmError::NicOpen(Box::new(std::io::Error::other(inner)));
        assert_eq!(chain(&e), "network: QMP connection closed");
    }
}

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

    /// The owner could not provide a NIC's tap (network missing, tap creation failed, ...).
    #[error("network: {0}")]
    Network(String),

    /// A QEMU of this VM is still alive: starting another would put two writers on its
    /// disks.
    #[error("a QEMU of this VM is still running (pid {pid}): not starting a second one")]
    AlreadyRunning { pid: u32 },

    /// No QEMU with that id is known.
    #[error("no such VM {0}")]
    NotFound(String),
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

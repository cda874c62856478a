//! Where a VM's runtime files live: `<run-dir>/vms/<vm-id>/`, 0700, owned by the QEMU user.

use std::path::{Path, PathBuf};

/// The runtime files of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPaths {
    pub dir: PathBuf,
}

impl VmPaths {
    pub fn new(run_root: &Path, id: &str) -> Self {
        VmPaths {
            dir: run_root.join(id),
        }
    }
    /// QMP socket (bound by the daemon, served by QEMU).
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    /// Serial console socket.
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    /// QEMU's stdout and stderr.
    pub fn log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    /// The argv of the last start, one argument a line (for people and the benchmark).
    pub fn argv(&self) -> PathBuf {
        self.dir.join("qemu.argv")
    }
    /// QMP transcript.
    pub fn transcript(&self) -> PathBuf {
        self.dir.join("qmp.log")
    }
    /// Mirror of the console log.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// Boot timeline of the last start.
    pub fn timeline(&self) -> PathBuf {
        self.dir.join("timeline.json")
    }
}

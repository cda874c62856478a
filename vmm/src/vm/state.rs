//! What a supervised VM is, as the node sees it: its state, the reason for it and QEMU's
//! pid, and how a stop should go.

use std::time::Duration;

/// The state of a VM as the node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    Stopped,
    Starting,
    Running,
    Paused,
    Stopping,
    Crashed,
    Error,
    /// QEMU is alive (its pid is kept and watched) but does not answer QMP, e.g. it was
    /// stopped with SIGSTOP while the daemon restarted. Nothing may start a second QEMU;
    /// the node keeps retrying QMP, and a stop kills it by signal.
    Unknown,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Stopped => "STOPPED",
            VmState::Starting => "STARTING",
            VmState::Running => "RUNNING",
            VmState::Paused => "PAUSED",
            VmState::Stopping => "STOPPING",
            VmState::Crashed => "CRASHED",
            VmState::Error => "ERROR",
            VmState::Unknown => "UNKNOWN",
        }
    }

    /// QEMU is (or may be) up: its taps, disks and uid are in use.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            VmState::Starting
                | VmState::Running
                | VmState::Paused
                | VmState::Stopping
                | VmState::Unknown
        )
    }

    /// States a start is allowed from: no QEMU of this VM runs.
    pub fn can_start(self) -> bool {
        matches!(self, VmState::Stopped | VmState::Crashed | VmState::Error)
    }
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status, reason and pid, read together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmStatus {
    pub state: VmState,
    pub reason: String,
    pub pid: Option<u32>,
}

/// How a stop should go.
#[derive(Debug, Clone, Copy)]
pub struct StopMode {
    /// SIGKILL at once.
    pub force: bool,
    /// How long the guest gets to power off after the ACPI power button; zero goes
    /// straight to `quit`.
    pub timeout: Duration,
}

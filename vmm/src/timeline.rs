//! The boot timeline of a start: when each phase was reached, from the user's request to the
//! guest being ready. Kept per VM and saved next to its runtime files.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::VmmError;

/// The phases of a start, in the order they normally happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    RequestReceived,
    NetworkReady,
    QemuExec,
    QmpReady,
    /// A clone: QEMU was asked to load its template's device state.
    RestoreStarted,
    /// A clone: the device state is loaded (its memory is the template's, mapped).
    StateLoaded,
    VcpusRunning,
    FirstConsoleByte,
    /// The guest's kernel started (from its console, see [`crate::bootlog`]).
    KernelStarted,
    /// The guest's kernel ran init.
    InitStarted,
    GuestReady,
    /// Migration (the destination's timeline): QEMU listens for the source.
    MigrationListening,
    /// Migration: every disk mirrored and in step.
    DisksMirrored,
    /// Migration: the source paused for the last RAM pass (downtime starts).
    SourcePaused,
    /// Migration: the guest runs here (downtime ends).
    MigrationResumed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::RequestReceived => "request_received",
            Phase::NetworkReady => "network_ready",
            Phase::QemuExec => "qemu_exec",
            Phase::QmpReady => "qmp_ready",
            Phase::RestoreStarted => "restore_started",
            Phase::StateLoaded => "state_loaded",
            Phase::VcpusRunning => "vcpus_running",
            Phase::FirstConsoleByte => "first_console_byte",
            Phase::KernelStarted => "kernel_started",
            Phase::InitStarted => "init_started",
            Phase::GuestReady => "guest_ready",
            Phase::MigrationListening => "migration_listening",
            Phase::DisksMirrored => "disks_mirrored",
            Phase::SourcePaused => "source_paused",
            Phase::MigrationResumed => "migration_resumed",
        }
    }
}

/// Phases with wall-clock times (microseconds since the epoch, so it serializes simply).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Timeline {
    pub phases: Vec<(Phase, u64)>,
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Timeline {
    /// A new timeline whose origin is the request.
    pub fn new(requested_at: SystemTime) -> Self {
        Timeline {
            phases: vec![(Phase::RequestReceived, micros(requested_at))],
        }
    }

    /// Record a phase; a phase already recorded keeps its first time. Phases stay in the
    /// order of their times (a guest phase can be learnt after a later host phase).
    pub fn record(&mut self, phase: Phase, at: SystemTime) {
        if !self.phases.iter().any(|(p, _)| *p == phase) {
            self.insert(phase, micros(at));
        }
    }

    /// Record a phase, or move it to `at` if that is earlier than what was recorded.
    pub fn record_earliest(&mut self, phase: Phase, at: SystemTime) {
        let us = micros(at);
        if let Some(i) = self.phases.iter().position(|(p, _)| *p == phase) {
            if self.phases[i].1 <= us {
                return;
            }
            self.phases.remove(i);
        }
        self.insert(phase, us);
    }

    fn insert(&mut self, phase: Phase, us: u64) {
        let i = self.phases.partition_point(|(_, t)| *t <= us);
        self.phases.insert(i, (phase, us));
    }

    /// When the phase was reached.
    pub fn at(&self, phase: Phase) -> Option<SystemTime> {
        self.phases
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, us)| UNIX_EPOCH + Duration::from_micros(*us))
    }

    /// Each phase with its wall-clock time and its offset from the first phase in ms.
    pub fn offsets(&self) -> Vec<(Phase, SystemTime, f64)> {
        let origin = self.phases.first().map(|(_, us)| *us).unwrap_or(0);
        self.phases
            .iter()
            .map(|(p, us)| {
                let off = (*us as f64 - origin as f64) / 1000.0;
                (*p, UNIX_EPOCH + Duration::from_micros(*us), off)
            })
            .collect()
    }

    pub fn load(path: &Path) -> Option<Self> {
        let data = std::fs::read(path).ok()?;
        serde_json::from_slice(&data).ok()
    }

    pub fn save(&self, path: &Path) -> Result<(), VmmError> {
        let data = serde_json::to_vec(self)
            .map_err(|e| VmmError::InvalidSpec(format!("timeline: {e}")))?;
        std::fs::write(path, data).map_err(|e| VmmError::io("write", path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_from_the_request_and_phases_keep_their_first_time() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut t = Timeline::new(t0);
        t.record(Phase::QemuExec, t0 + Duration::from_micros(1500));
        t.record(Phase::QmpReady, t0 + Duration::from_millis(25));
        t.record(Phase::QmpReady, t0 + Duration::from_millis(99));
        let o = t.offsets();
        assert_eq!(o.len(), 3);
        assert_eq!(o[1].0, Phase::QemuExec);
        assert!((o[1].2 - 1.5).abs() < 1e-9);
        assert!((o[2].2 - 25.0).abs() < 1e-9);
        // A guest phase learnt late lands in time order, and may move earlier only.
        t.record(Phase::FirstConsoleByte, t0 + Duration::from_millis(900));
        t.record_earliest(Phase::KernelStarted, t0 + Duration::from_millis(950));
        t.record_earliest(Phase::KernelStarted, t0 + Duration::from_millis(400));
        t.record_earliest(Phase::KernelStarted, t0 + Duration::from_millis(600));
        let names: Vec<_> = t.offsets().iter().map(|o| o.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "request_received",
                "qemu_exec",
                "qmp_ready",
                "kernel_started",
                "first_console_byte"
            ]
        );
        assert!((t.offsets()[3].2 - 400.0).abs() < 1e-9);
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.json");
        t.save(&p).expect("save");
        assert_eq!(Timeline::load(&p), Some(t));
    }
}

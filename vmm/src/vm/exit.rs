//! The decisions taken when a QEMU is gone or found again, as pure functions: what an exit
//! means (STOPPED or CRASHED, and why), whether and when the restart policy starts it again,
//! and what a process found after a daemon restart is.

use std::time::Duration;

use serde_json::Value;

use super::VmState;
use crate::process::ExitInfo;
use crate::spec::RestartPolicy;

/// A VM that ran this long before it went down restarts without backoff.
pub const STABLE_RUN: Duration = Duration::from_secs(60);
/// The longest wait between two restart attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What QEMU's `SHUTDOWN` event said, before it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownCause {
    /// The guest powered itself off (ACPI, `poweroff`).
    GuestPoweroff,
    /// The guest panicked (pvpanic).
    GuestPanic,
    /// Someone sent `quit` over QMP (passthrough): an operator's stop.
    QmpQuit,
    /// Another reason QEMU gives (`host-signal`, `host-ui`, ...).
    Other(String),
}

impl ShutdownCause {
    /// From the `data` of a `SHUTDOWN` event (`{"guest": bool, "reason": "..."}`).
    pub fn from_event(data: &Value) -> ShutdownCause {
        let reason = data.get("reason").and_then(Value::as_str).unwrap_or("");
        let guest = data.get("guest").and_then(Value::as_bool) == Some(true);
        match reason {
            "host-qmp-quit" => ShutdownCause::QmpQuit,
            "guest-panic" => ShutdownCause::GuestPanic,
            _ if guest => ShutdownCause::GuestPoweroff,
            "" => ShutdownCause::Other("unknown".into()),
            other => ShutdownCause::Other(other.to_string()),
        }
    }
}

/// Why QEMU is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// The operator asked for it (`stop`, `delete --force`) or quit it through QMP.
    Requested,
    /// The guest powered off.
    GuestPoweroff,
    /// Nobody asked: QEMU died, was killed, or the guest panicked.
    Crash,
}

/// What is known when QEMU is gone.
#[derive(Debug, Clone, Copy)]
pub struct ExitFacts<'a> {
    /// The node was stopping it.
    pub stop_requested: bool,
    /// QEMU's `SHUTDOWN` event, if one came.
    pub shutdown: Option<&'a ShutdownCause>,
    /// The exit status, when we were its parent.
    pub exit: Option<ExitInfo>,
    /// QEMU's last error lines (from its log), possibly empty.
    pub qemu_said: &'a str,
}

/// What an exit means: its kind, the state the VM goes to and the reason shown.
pub fn classify_exit(f: &ExitFacts<'_>) -> (ExitKind, VmState, String) {
    if f.stop_requested {
        return (ExitKind::Requested, VmState::Stopped, String::new());
    }
    match f.shutdown {
        Some(ShutdownCause::QmpQuit) => {
            return (
                ExitKind::Requested,
                VmState::Stopped,
                "stopped by QMP quit".into(),
            );
        }
        Some(ShutdownCause::GuestPoweroff) => {
            return (
                ExitKind::GuestPoweroff,
                VmState::Stopped,
                "guest powered off".into(),
            );
        }
        _ => {}
    }
    let how = f
        .exit
        .map(|i| i.to_string())
        .unwrap_or_else(|| "exited".into());
    let mut reason = match f.shutdown {
        Some(ShutdownCause::GuestPanic) => format!("the guest panicked; QEMU {how}"),
        Some(ShutdownCause::Other(r)) => format!("QEMU {how} unexpectedly ({r})"),
        _ => format!("QEMU {how} unexpectedly"),
    };
    if !f.qemu_said.is_empty() {
        reason.push_str(": ");
        reason.push_str(f.qemu_said);
    }
    (ExitKind::Crash, VmState::Crashed, reason)
}

/// Whether the restart policy starts the VM again after an exit of `kind`.
pub fn should_restart(policy: RestartPolicy, kind: ExitKind) -> bool {
    match policy {
        RestartPolicy::Never => false,
        RestartPolicy::OnFailure => kind == ExitKind::Crash,
        RestartPolicy::Always => matches!(kind, ExitKind::Crash | ExitKind::GuestPoweroff),
    }
}

/// The wait before restart attempt number `attempt` (0 = the first): 1 s, doubling, at
/// most [`MAX_BACKOFF`].
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(MAX_BACKOFF)
}

/// The attempt number a restart after this exit has: a VM that ran for [`STABLE_RUN`]
/// starts over at 0; otherwise the count goes on.
pub fn next_attempt(previous_attempts: u32, ran_for: Option<Duration>) -> u32 {
    if ran_for.is_some_and(|d| d >= STABLE_RUN) {
        0
    } else {
        previous_attempts
    }
}

/// What the node finds of a VM's QEMU after a daemon restart, before talking QMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No pidfile: it was not running when the daemon went down (or the host rebooted).
    NotRunning,
    /// A pidfile, but no live QEMU of this VM behind it: it died while the daemon was down.
    Died,
    /// This VM's QEMU, alive.
    Alive(u32),
}

/// Classify a pidfile's pid (None: no pidfile) given whether `/proc` proves it is this VM's
/// live QEMU.
pub fn found(pid: Option<u32>, is_ours: impl FnOnce(u32) -> bool) -> Found {
    match pid {
        None => Found::NotRunning,
        Some(p) if is_ours(p) => Found::Alive(p),
        Some(_) => Found::Died,
    }
}

/// The state of a reattached QEMU from `query-status` (`running`, `status`).
pub fn state_of_query_status(running: bool, status: &str) -> VmState {
    // `prelaunch`: the daemon died in the middle of a start; the caller finishes it.
    if running || status == "prelaunch" {
        VmState::Running
    } else {
        VmState::Paused
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn facts<'a>(shutdown: Option<&'a ShutdownCause>, exit: Option<ExitInfo>) -> ExitFacts<'a> {
        ExitFacts {
            stop_requested: false,
            shutdown,
            exit,
            qemu_said: "",
        }
    }

    #[test]
    fn shutdown_events_are_read() {
        let c = |v| ShutdownCause::from_event(&v);
        assert_eq!(
            c(json!({"guest": false, "reason": "host-qmp-quit"})),
            ShutdownCause::QmpQuit
        );
        assert_eq!(
            c(json!({"guest": true, "reason": "guest-shutdown"})),
            ShutdownCause::GuestPoweroff
        );
        assert_eq!(
            c(json!({"guest": true, "reason": "guest-panic"})),
            ShutdownCause::GuestPanic
        );
        assert_eq!(
            c(json!({"guest": false, "reason": "host-signal"})),
            ShutdownCause::Other("host-signal".into())
        );
        assert_eq!(c(json!({})), ShutdownCause::Other("unknown".into()));
    }

    #[test]
    fn a_requested_stop_is_stopped_whatever_qemu_said() {
        let f = ExitFacts {
            stop_requested: true,
            shutdown: Some(&ShutdownCause::Other("host-signal".into())),
            exit: Some(ExitInfo::Signal(9)),
            qemu_said: "boom",
        };
        assert_eq!(
            classify_exit(&f),
            (ExitKind::Requested, VmState::Stopped, String::new())
        );
    }

    #[test]
    fn a_qmp_quit_is_a_stop_not_a_crash() {
        let (kind, state, reason) = classify_exit(&facts(Some(&ShutdownCause::QmpQuit), None));
        assert_eq!((kind, state), (ExitKind::Requested, VmState::Stopped));
        assert!(reason.contains("QMP quit"), "{reason}");
        // ... so no policy restarts it.
        for p in [
            RestartPolicy::Never,
            RestartPolicy::OnFailure,
            RestartPolicy::Always,
        ] {
            assert!(!should_restart(p, kind));
        }
    }

    #[test]
    fn guest_poweroff_restarts_only_with_always() {
        let (kind, state, reason) =
            classify_exit(&facts(Some(&ShutdownCause::GuestPoweroff), None));
        assert_eq!((kind, state), (ExitKind::GuestPoweroff, VmState::Stopped));
        assert_eq!(reason, "guest powered off");
        assert!(!should_restart(RestartPolicy::OnFailure, kind));
        assert!(should_restart(RestartPolicy::Always, kind));
    }

    #[test]
    fn an_unasked_exit_is_a_crash_with_qemus_words() {
        let f = ExitFacts {
            qemu_said: "qemu-system-x86_64: cannot set up guest memory",
            ..facts(None, Some(ExitInfo::Code(1)))
        };
        let (kind, state, reason) = classify_exit(&f);
        assert_eq!((kind, state), (ExitKind::Crash, VmState::Crashed));
        assert_eq!(
            reason,
            "QEMU exit code 1 unexpectedly: qemu-system-x86_64: cannot set up guest memory"
        );
        let (_, _, reason) = classify_exit(&facts(None, Some(ExitInfo::Signal(9))));
        assert_eq!(reason, "QEMU killed by SIGKILL unexpectedly");
        let (_, _, reason) = classify_exit(&facts(Some(&ShutdownCause::GuestPanic), None));
        assert_eq!(reason, "the guest panicked; QEMU exited");
        assert!(should_restart(RestartPolicy::OnFailure, kind));
        assert!(should_restart(RestartPolicy::Always, kind));
        assert!(!should_restart(RestartPolicy::Never, kind));
    }

    #[test]
    fn backoff_doubles_to_a_minute() {
        let secs: Vec<u64> = (0..9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
        assert_eq!(next_attempt(5, Some(Duration::from_secs(61))), 0);
        assert_eq!(next_attempt(5, Some(Duration::from_secs(3))), 5);
        assert_eq!(next_attempt(5, None), 5);
    }

    #[test]
    fn recovered_processes_are_classified() {
        assert_eq!(found(None, |_| true), Found::NotRunning);
        assert_eq!(found(Some(42), |p| p == 42), Found::Alive(42));
        assert_eq!(found(Some(42), |_| false), Found::Died);
        assert_eq!(state_of_query_status(true, "running"), VmState::Running);
        assert_eq!(state_of_query_status(false, "prelaunch"), VmState::Running);
        assert_eq!(state_of_query_status(false, "paused"), VmState::Paused);
    }
}

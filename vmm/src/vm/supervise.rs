//! Watching a running QEMU: its exit (by pidfd), its QMP events, and the restart policy,
//! which keeps trying with backoff until a start succeeds or an operator acts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

use super::exit::{self, ExitFacts, ExitKind, ShutdownCause};
use super::{Vm, VmState, lock};
use crate::process::{self, ExitInfo, PidFd};
use crate::qmp::QmpEvent;

/// How long an exit waits for the QMP events QEMU sent before it (its socket closes as it
/// exits, so this is short unless QEMU was hung).
const EVENTS_DRAIN: Duration = Duration::from_secs(2);

impl Vm {
    pub(super) fn spawn_exit_watch(&self, pidfd: Arc<PidFd>, exit_tx: watch::Sender<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            let info = pidfd.exited().await;
            let _ = exit_tx.send(true);
            // The exit can be seen before the QMP events QEMU sent on its way out (its
            // SHUTDOWN says why it went): let the event loop reach the connection's end,
            // which comes right after, before deciding what the exit means.
            let done = lock(&me.inner.events_done).clone();
            if let Some(mut done) = done {
                let _ = tokio::time::timeout(EVENTS_DRAIN, done.wait_for(|d| *d)).await;
            }
            // During a start, the starter handles an early exit.
            if me.status().state != VmState::Starting {
                me.handle_exit(info);
            }
        });
    }

    pub(super) fn spawn_event_loop(&self, mut events: mpsc::Receiver<QmpEvent>) {
        let me = self.clone();
        let (done_tx, done_rx) = watch::channel(false);
        *lock(&self.inner.events_done) = Some(done_rx);
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let QmpEvent::Event { name, data, .. } = ev else {
                    break;
                };
                me.on_qmp_event(&name, &data);
            }
            let _ = done_tx.send(true);
        });
    }

    fn on_qmp_event(&self, name: &str, data: &serde_json::Value) {
        tracing::debug!(vm = %self.inner.name, event = name, %data, "QMP event");
        let _ = self.inner.events.send((name.to_string(), data.clone()));
        let state = self.status().state;
        match name {
            "SHUTDOWN" => *lock(&self.inner.shutdown) = Some(ShutdownCause::from_event(data)),
            // A `stop` or `cont` through QMP passthrough, or a guest panic/IO error pause.
            "STOP" if state == VmState::Running => self.set_status(VmState::Paused, ""),
            "RESUME" if state == VmState::Paused => self.set_status(VmState::Running, ""),
            _ => {}
        }
    }

    /// QEMU is gone: decide STOPPED or CRASHED, clean up, and apply the restart policy.
    pub(super) fn handle_exit(&self, info: Option<ExitInfo>) {
        let Some(rt) = lock(&self.inner.runtime).take() else {
            return; // already handled
        };
        self.inner.console.set_boot_watch(None);
        let log = process::log_tail(&self.inner.paths.log(), 2048);
        self.remove_runtime_files();
        let shutdown = lock(&self.inner.shutdown).clone();
        let qemu_said = process::qemu_error_message(&log);
        let (kind, state, reason) = exit::classify_exit(&ExitFacts {
            stop_requested: self.inner.stop_requested.load(Ordering::SeqCst),
            shutdown: shutdown.as_ref(),
            exit: info,
            qemu_said: &qemu_said,
        });
        tracing::info!(vm = %self.inner.name, state = %state, reason = %reason, "QEMU exited");
        self.set_status(state, reason);
        if !self.inner.retired.load(Ordering::SeqCst)
            && exit::should_restart(self.spec().restart_policy, kind)
        {
            let attempt = exit::next_attempt(
                self.inner.restarts.load(Ordering::SeqCst),
                Some(rt.started.elapsed()),
            );
            self.inner.restarts.store(attempt, Ordering::SeqCst);
            self.schedule_restart();
        }
    }

    /// After an exit the policy restarts: wait the backoff, start, and on failure keep
    /// waiting longer and trying again (state ERROR with the reason and the next attempt's
    /// time in between), until a start succeeds, an operator acts or the VM is deleted.
    pub(super) fn schedule_restart(&self) {
        let me = self.clone();
        let generation = self.generation();
        tokio::spawn(async move {
            loop {
                let attempt = me.inner.restarts.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(exit::backoff(attempt)).await;
                let _ops = me.inner.ops.lock().await;
                if me.inner.retired.load(Ordering::SeqCst)
                    || me.generation() != generation
                    || !me.status().state.can_start()
                {
                    return;
                }
                tracing::info!(vm = %me.inner.name, attempt = attempt + 1, "restart policy: starting");
                me.inner.restarts_total.fetch_add(1, Ordering::Relaxed);
                match me.start_locked(SystemTime::now(), None).await {
                    Ok(()) => return,
                    Err(e) => {
                        let next = exit::backoff(attempt + 1);
                        me.set_status(
                            VmState::Error,
                            format!(
                                "restart attempt {} failed: {}; next attempt in {} s",
                                attempt + 1,
                                crate::error::chain(&e),
                                next.as_secs()
                            ),
                        );
                    }
                }
            }
        });
    }

    /// Whether the restart policy restarts this VM after a crash (used by recovery).
    pub(super) fn restarts_after_crash(&self) -> bool {
        !self.inner.retired.load(Ordering::SeqCst)
            && exit::should_restart(self.spec().restart_policy, ExitKind::Crash)
    }

    pub(super) fn remove_runtime_files(&self) {
        let p = &self.inner.paths;
        for f in [p.qmp(), p.console(), p.pidfile()] {
            let _ = std::fs::remove_file(f);
        }
    }
}

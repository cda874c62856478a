//! After a daemon restart: find this VM's QEMU again (pidfile, then `/proc` proves it is
//! ours), reconnect QMP and the console, and supervise it again.
//!
//! A live QEMU is never forgotten: its pid is kept and watched from the moment it is found.
//! If QMP does not answer (QEMU stopped with SIGSTOP, or hung), the VM is UNKNOWN with the
//! reason, nothing may start a second QEMU, its taps stay, and QMP is retried with backoff
//! until it answers or QEMU exits. A QEMU that died while the daemon was down is CRASHED,
//! and the restart policy applies as for any crash.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::UnixStream;
use tokio::sync::watch;

use super::exit::{self, Found};
use super::{Runtime, Vm, VmState, lock};
use crate::VmmError;
use crate::process::{self, PidFd};
use crate::qmp::{QmpClient, QmpOptions};

/// How long the greeting of a reattached QEMU may take.
const REATTACH_GREETING: Duration = Duration::from_secs(5);
/// The longest wait between two QMP attempts on an UNKNOWN VM.
const MAX_QMP_RETRY: Duration = Duration::from_secs(30);

impl Vm {
    /// Find this VM's QEMU after a daemon restart and supervise it again. Returns the state
    /// it ends up in: RUNNING or PAUSED (reattached), UNKNOWN (alive, no QMP yet),
    /// CRASHED (died meanwhile) or STOPPED (was not running).
    pub async fn recover(&self) -> Result<VmState, VmmError> {
        let _ops = self.inner.ops.lock().await;
        let paths = &self.inner.paths;
        let id = &self.inner.id;
        // Open the pidfd first, then check /proc: the pidfd pins the process, so the check
        // cannot be fooled by a pid reused in between.
        let mut pinned = None;
        let found = exit::found(
            process::read_pidfile(&paths.pidfile()),
            |pid| match PidFd::open(pid) {
                Ok(fd) if process::is_our_qemu(pid, id) => {
                    pinned = Some(fd);
                    true
                }
                _ => false,
            },
        );
        let (pid, pidfd) = match (found, pinned) {
            (Found::Alive(pid), Some(fd)) => (pid, Arc::new(fd)),
            (Found::NotRunning, _) => {
                self.remove_runtime_files();
                self.set_status(VmState::Stopped, "");
                return Ok(VmState::Stopped);
            }
            _ => {
                self.remove_runtime_files();
                self.set_status(
                    VmState::Crashed,
                    "QEMU exited while the node daemon was down",
                );
                if self.restarts_after_crash() {
                    tracing::info!(vm = %self.inner.name, "restart policy: restarting after a crash while the daemon was down");
                    self.schedule_restart();
                }
                return Ok(VmState::Crashed);
            }
        };
        let (exit_tx, exit_rx) = watch::channel(false);
        *lock(&self.inner.runtime) = Some(Runtime {
            pid,
            qmp: None,
            pidfd: pidfd.clone(),
            exited: exit_rx,
            started: Instant::now(),
        });
        let state = match self.reattach_qmp().await {
            Ok(state) => {
                tracing::info!(vm = %self.inner.name, pid, state = %state, "reattached to running QEMU");
                state
            }
            Err(e) => {
                tracing::warn!(vm = %self.inner.name, pid, error = %e, "QEMU is alive but QMP does not answer");
                self.set_status(VmState::Unknown, unknown_reason(pid, &e, 0));
                self.spawn_qmp_retry(pid);
                VmState::Unknown
            }
        };
        // Watch the process from now on, whatever QMP said.
        self.spawn_exit_watch(pidfd, exit_tx);
        Ok(state)
    }

    /// Connect QMP to the running QEMU, finish a start the daemon was cut off from, and
    /// reconnect the console. Sets RUNNING or PAUSED.
    async fn reattach_qmp(&self) -> Result<VmState, VmmError> {
        let paths = &self.inner.paths;
        let opts = QmpOptions {
            greeting_timeout: REATTACH_GREETING,
            transcript: Some(paths.transcript()),
            observer: self.inner.host.qmp_observer.clone(),
            ..QmpOptions::default()
        };
        let (qmp, events) = QmpClient::connect_path(paths.qmp(), opts).await?;
        let status = qmp.query_status().await?;
        if status.status == "prelaunch" {
            // The daemon died in the middle of a start: finish it.
            qmp.cont().await?;
        }
        match UnixStream::connect(paths.console()).await {
            Ok(c) => {
                self.inner.console.connect(c).await;
            }
            Err(e) => {
                tracing::warn!(vm = %self.inner.name, error = %e, "console reconnect failed")
            }
        }
        self.spawn_event_loop(events);
        if let Some(rt) = lock(&self.inner.runtime).as_mut() {
            rt.qmp = Some(qmp);
        }
        let state = exit::state_of_query_status(status.running, &status.status);
        self.set_status(state, "");
        Ok(state)
    }

    /// Keep trying QMP on an UNKNOWN VM, with backoff, until it answers, QEMU exits (the
    /// exit watch makes it CRASHED) or an operator acts.
    fn spawn_qmp_retry(&self, pid: u32) {
        let me = self.clone();
        let generation = self.generation();
        tokio::spawn(async move {
            for attempt in 1u32.. {
                tokio::time::sleep(exit::backoff(attempt).min(MAX_QMP_RETRY)).await;
                let _ops = me.inner.ops.lock().await;
                let same_qemu = lock(&me.inner.runtime).as_ref().map(|r| r.pid) == Some(pid);
                if me.generation() != generation
                    || me.inner.retired.load(Ordering::SeqCst)
                    || me.status().state != VmState::Unknown
                    || !same_qemu
                {
                    return;
                }
                match me.reattach_qmp().await {
                    Ok(state) => {
                        tracing::info!(vm = %me.inner.name, pid, state = %state, "QMP answers again");
                        return;
                    }
                    Err(e) => me.set_status(VmState::Unknown, unknown_reason(pid, &e, attempt)),
                }
            }
        });
    }
}

fn unknown_reason(pid: u32, e: &VmmError, attempts: u32) -> String {
    let retried = match attempts {
        0 => String::new(),
        n => format!(", {n} retries so far"),
    };
    format!(
        "QEMU pid {pid} is running but QMP does not answer ({}); retrying{retried}",
        crate::error::chain(e)
    )
}

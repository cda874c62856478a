//! One VM's QEMU under supervision. The parts:
//!
//! - [`state`]: the states a VM is in and how a stop should go;
//! - `launch`: a start (descriptors opened, QEMU spawned paused, QMP handshake, `cont`);
//! - `supervise`: watching a running QEMU (exit, QMP events) and the restart policy;
//! - `recover`: finding a QEMU again after a daemon restart;
//! - [`exit`]: the decisions those make, as pure functions (what an exit means, whether
//!   and when to restart, what a recovered process is);
//! - `hotplug`, `nics`: disks and NICs of a running VM;
//! - [`snapshot`]: saving a paused VM's state, and starting from a saved one (templates).
//!
//! Lifecycle operations are serialized per VM; each says which states allow it and fails
//! with [`VmmError::WrongState`] otherwise. Every change of status or timeline calls the
//! `notify` hook given at construction, so the owner can publish it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use tokio::sync::watch;

use crate::VmmError;
use crate::console::Console;
use crate::host::HostConfig;
use crate::paths::VmPaths;
use crate::process::{PidFd, RunAs};
use crate::qmp::QmpClient;
use crate::spec::VmSpec;
use crate::timeline::{Phase, Timeline};

pub mod exit;
mod hotplug;
mod launch;
mod nics;
mod recover;
pub mod snapshot;
pub mod state;
mod supervise;

pub use exit::ShutdownCause;
pub use nics::NicOpener;
pub use snapshot::Restore;
pub use state::{StopMode, VmState, VmStatus};

/// After `quit`, how long QEMU gets to exit before SIGKILL.
const QUIT_GRACE: Duration = Duration::from_secs(3);
/// After SIGKILL, how long before we give up waiting (the kernel is stuck).
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Called with the VM id on every change of status or timeline.
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;

/// A supervised VM. Cheap to clone.
#[derive(Clone)]
pub struct Vm {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("id", &self.inner.id)
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

/// A QEMU of this VM that is alive (or was, until its exit is handled).
struct Runtime {
    pid: u32,
    /// None while QEMU does not answer QMP (state UNKNOWN).
    qmp: Option<QmpClient>,
    pidfd: Arc<PidFd>,
    exited: watch::Receiver<bool>,
    started: Instant,
}

struct Inner {
    id: String,
    name: String,
    /// The spec; disks change while the VM runs (hotplug).
    spec: std::sync::RwLock<VmSpec>,
    host: Arc<HostConfig>,
    /// QMP events, for operations that wait for one (DEVICE_DELETED).
    events: tokio::sync::broadcast::Sender<(String, serde_json::Value)>,
    paths: VmPaths,
    console: Console,
    notify: Notify,
    status: Mutex<VmStatus>,
    timeline: Mutex<Timeline>,
    runtime: Mutex<Option<Runtime>>,
    /// Serializes start/stop/pause/resume/reboot/destroy.
    ops: tokio::sync::Mutex<()>,
    /// The node is stopping this QEMU: its exit is a stop, not a crash.
    stop_requested: AtomicBool,
    /// What QEMU's SHUTDOWN event said, in this run.
    shutdown: Mutex<Option<ShutdownCause>>,
    /// True once the QMP event loop of this run has seen the connection's end, so every
    /// event QEMU sent before exiting (SHUTDOWN) has been handled.
    events_done: Mutex<Option<watch::Receiver<bool>>>,
    /// Restart attempts since the VM last ran stably (the backoff exponent).
    restarts: AtomicU32,
    /// Starts by the restart policy since this daemon began supervising the VM.
    restarts_total: AtomicU64,
    /// Bumped by every operator action (start, stop, delete): a pending restart or QMP
    /// retry scheduled before it gives up.
    generation: AtomicU64,
    /// Set once the VM is being deleted: no more restarts.
    retired: AtomicBool,
    /// Provides the NICs' taps at each launch.
    nic_opener: Mutex<Option<NicOpener>>,
    /// The next launch waits for an incoming migration (`-incoming defer`, no `cont`).
    pub(crate) incoming: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Vm {
    /// A VM that is not running (yet). Call [`Vm::recover`] after a daemon restart.
    pub fn new(spec: VmSpec, host: Arc<HostConfig>, notify: Notify) -> Self {
        let paths = VmPaths::new(&host.run_root, &spec.id);
        let console = Console::new(Some(paths.console_log()));
        let timeline = Timeline::load(&paths.timeline()).unwrap_or_default();
        let (events, _) = tokio::sync::broadcast::channel(64);
        Vm {
            inner: Arc::new(Inner {
                id: spec.id.clone(),
                name: spec.name.clone(),
                spec: std::sync::RwLock::new(spec),
                events,
                host,
                paths,
                console,
                notify,
                status: Mutex::new(VmStatus {
                    state: VmState::Stopped,
                    reason: String::new(),
                    pid: None,
                }),
                timeline: Mutex::new(timeline),
                runtime: Mutex::new(None),
                ops: tokio::sync::Mutex::new(()),
                stop_requested: AtomicBool::new(false),
                shutdown: Mutex::new(None),
                events_done: Mutex::new(None),
                restarts: AtomicU32::new(0),
                restarts_total: AtomicU64::new(0),
                generation: AtomicU64::new(0),
                retired: AtomicBool::new(false),
                nic_opener: Mutex::new(None),
                incoming: AtomicBool::new(false),
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }
    /// A copy of the spec as it is now.
    pub fn spec(&self) -> VmSpec {
        self.inner
            .spec
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Hold the VM's operation lock: no start, stop or other lifecycle operation runs until
    /// the guard drops (for an owner that changes what a stopped VM starts with).
    pub async fn lock_ops(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.ops.lock().await
    }

    /// Change the spec (the owner persists it).
    pub fn update_spec(&self, f: impl FnOnce(&mut VmSpec)) -> VmSpec {
        let mut spec = self
            .inner
            .spec
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut spec);
        spec.clone()
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }
    pub fn paths(&self) -> &VmPaths {
        &self.inner.paths
    }
    pub fn status(&self) -> VmStatus {
        lock(&self.inner.status).clone()
    }
    pub fn timeline(&self) -> Timeline {
        lock(&self.inner.timeline).clone()
    }
    pub fn console(&self) -> &Console {
        &self.inner.console
    }

    /// How many times the restart policy started this VM again since this daemon began
    /// supervising it (attempts that failed included).
    pub fn restarts_total(&self) -> u64 {
        self.inner.restarts_total.load(Ordering::Relaxed)
    }

    /// CPU time and RSS of this VM's QEMU, while it has one.
    pub fn usage(&self) -> Option<crate::usage::ProcessUsage> {
        let pid = lock(&self.inner.runtime).as_ref().map(|r| r.pid)?;
        crate::usage::process_usage(pid).ok()
    }

    /// The user this VM's QEMU runs as: the node's QEMU user with this VM's own uid.
    pub fn run_as(&self) -> Option<RunAs> {
        let uid = self.spec().qemu_uid;
        self.inner.host.run_as.as_ref().map(|r| r.with_uid(uid))
    }

    /// The QMP client of the running QEMU.
    pub fn qmp(&self) -> Result<QmpClient, VmmError> {
        match lock(&self.inner.runtime)
            .as_ref()
            .and_then(|r| r.qmp.clone())
        {
            Some(q) => Ok(q),
            None => Err(self.wrong_state("talk QMP")),
        }
    }

    /// A QMP `quit` is going to QEMU through passthrough (`false`: it was refused after
    /// all): the exit that follows is an operator's stop, not a crash.
    pub fn note_qmp_quit(&self, quitting: bool) {
        let mut cause = lock(&self.inner.shutdown);
        if quitting {
            *cause = Some(ShutdownCause::QmpQuit);
        } else if *cause == Some(ShutdownCause::QmpQuit) {
            *cause = None;
        }
    }

    pub(crate) fn wrong_state(&self, op: &'static str) -> VmmError {
        VmmError::WrongState {
            op,
            state: self.status().state.to_string(),
        }
    }

    pub(crate) fn set_status(&self, state: VmState, reason: impl Into<String>) {
        {
            let mut st = lock(&self.inner.status);
            st.state = state;
            st.reason = reason.into();
            st.pid = lock(&self.inner.runtime).as_ref().map(|r| r.pid);
        }
        (self.inner.notify)(&self.inner.id);
    }

    /// The next launch waits for an incoming migration (see `crate::migration`).
    pub(crate) fn set_incoming(&self, on: bool) {
        self.inner.incoming.store(on, Ordering::SeqCst);
    }

    pub(crate) fn record(&self, phase: Phase, at: SystemTime) {
        lock(&self.inner.timeline).record(phase, at);
    }

    /// Record an estimated phase, or move it earlier, never before `floor` (a phase
    /// already recorded).
    fn record_earliest_after(&self, phase: Phase, at: SystemTime, floor: Phase) {
        let mut t = lock(&self.inner.timeline);
        let at = t.at(floor).map_or(at, |f| at.max(f));
        t.record_earliest(phase, at);
    }

    pub(crate) fn save_timeline(&self) {
        let t = self.timeline();
        if let Err(e) = t.save(&self.inner.paths.timeline()) {
            tracing::debug!(vm = %self.inner.name, error = %e, "cannot save timeline");
        }
    }

    fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// An operator acted: whatever the supervisor had scheduled (a restart, a QMP retry)
    /// is void.
    fn operator_acts(&self) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Start QEMU and run the guest. `requested_at` is when the user asked (the timeline's
    /// origin). Returns once the vCPUs run. Allowed from STOPPED, CRASHED and ERROR.
    pub async fn start(&self, requested_at: SystemTime) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        self.operator_acts();
        self.inner.restarts.store(0, Ordering::SeqCst);
        self.start_locked(requested_at, None).await
    }

    pub(crate) async fn start_locked(
        &self,
        requested_at: SystemTime,
        restore: Option<snapshot::Restore>,
    ) -> Result<(), VmmError> {
        if !self.status().state.can_start() {
            return Err(self.wrong_state("start"));
        }
        *lock(&self.inner.timeline) = Timeline::new(requested_at);
        self.inner.stop_requested.store(false, Ordering::SeqCst);
        *lock(&self.inner.shutdown) = None;
        self.set_status(VmState::Starting, "");
        match self.launch(restore).await {
            Ok(()) => {
                self.save_timeline();
                Ok(())
            }
            Err(e) => {
                tracing::warn!(vm = %self.inner.name, error = %e, "start failed");
                self.set_status(VmState::Error, crate::error::chain(&e));
                Err(e)
            }
        }
    }

    /// Stop QEMU. From RUNNING and PAUSED: the ACPI power button, up to `timeout` for the
    /// guest, then `quit`, then SIGKILL; from UNKNOWN (no QMP): SIGTERM, then SIGKILL.
    /// Returns once QEMU is gone (STOPPED). A CRASHED or ERROR VM becomes STOPPED, which
    /// cancels a pending restart.
    pub async fn stop(&self, mode: StopMode) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        self.operator_acts();
        self.stop_locked(mode).await
    }

    async fn stop_locked(&self, mode: StopMode) -> Result<(), VmmError> {
        let state = self.status().state;
        match state {
            VmState::Running | VmState::Paused | VmState::Unknown => {}
            VmState::Crashed | VmState::Error => {
                self.set_status(VmState::Stopped, "");
                return Ok(());
            }
            _ => return Err(self.wrong_state("stop")),
        }
        let Some((qmp, pidfd, mut exited)) = lock(&self.inner.runtime)
            .as_ref()
            .map(|r| (r.qmp.clone(), r.pidfd.clone(), r.exited.clone()))
        else {
            return Err(self.wrong_state("stop"));
        };
        self.inner.stop_requested.store(true, Ordering::SeqCst);
        self.set_status(VmState::Stopping, "");
        let name = &self.inner.name;
        let mut gone = false;
        if !mode.force {
            match qmp {
                Some(qmp) => {
                    if state == VmState::Running && !mode.timeout.is_zero() {
                        match qmp.system_powerdown().await {
                            Ok(()) => gone = wait_exit(&mut exited, mode.timeout).await,
                            Err(e) => {
                                tracing::warn!(vm = %name, error = %e, "system_powerdown failed")
                            }
                        }
                    }
                    if !gone {
                        tracing::info!(vm = %name, "guest did not power off in time: quit");
                        if let Err(e) = qmp.quit().await {
                            tracing::warn!(vm = %name, error = %e, "quit failed");
                        }
                        gone = wait_exit(&mut exited, QUIT_GRACE).await;
                    }
                }
                None => {
                    tracing::info!(vm = %name, "no QMP: SIGTERM");
                    pidfd.signal(Signal::SIGTERM)?;
                    gone = wait_exit(&mut exited, mode.timeout.max(QUIT_GRACE)).await;
                }
            }
        }
        if !gone {
            tracing::info!(vm = %name, "SIGKILL");
            pidfd.signal(Signal::SIGKILL)?;
            gone = wait_exit(&mut exited, KILL_WAIT).await;
        }
        if !gone {
            let e = VmmError::QemuStart(format!(
                "QEMU pid {} did not exit after SIGKILL",
                pidfd.pid()
            ));
            self.set_status(VmState::Error, e.to_string());
            return Err(e);
        }
        // The exit watcher may still be running `handle_exit`; make sure it did.
        self.handle_exit(None);
        Ok(())
    }

    /// Pause the vCPUs. Allowed from RUNNING.
    pub async fn pause(&self) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        if self.status().state != VmState::Running {
            return Err(self.wrong_state("pause"));
        }
        self.qmp()?.stop().await?;
        self.set_status(VmState::Paused, "");
        Ok(())
    }

    /// Resume the vCPUs. Allowed from PAUSED.
    pub async fn resume(&self) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        if self.status().state != VmState::Paused {
            return Err(self.wrong_state("resume"));
        }
        self.qmp()?.cont().await?;
        self.set_status(VmState::Running, "");
        Ok(())
    }

    /// Hard reset of the guest (like pressing the reset button). Allowed from RUNNING.
    pub async fn reboot(&self) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        if self.status().state != VmState::Running {
            return Err(self.wrong_state("reboot"));
        }
        self.qmp()?.system_reset().await?;
        Ok(())
    }

    /// For deletion: no more restarts; kill QEMU if `force`, else require it stopped; remove
    /// the run dir.
    pub async fn destroy(&self, force: bool) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        self.operator_acts();
        let state = self.status().state;
        if state.is_active() {
            if !force {
                return Err(self.wrong_state("delete (stop it first, or force)"));
            }
            self.inner.retired.store(true, Ordering::SeqCst);
            self.stop_locked(StopMode {
                force: true,
                timeout: Duration::ZERO,
            })
            .await?;
        }
        self.inner.retired.store(true, Ordering::SeqCst);
        self.inner.console.clear();
        match std::fs::remove_dir_all(&self.inner.paths.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(VmmError::io("remove", &self.inner.paths.dir, e)),
        }
    }
}

async fn wait_exit(exited: &mut watch::Receiver<bool>, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, exited.wait_for(|e| *e))
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false)
}

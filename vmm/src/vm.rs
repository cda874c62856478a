//! One VM's QEMU under supervision: start (spawn paused, QMP handshake, `cont`), pause,
//! resume, reboot, stop (ACPI power button, then `quit`, then SIGKILL), exit detection,
//! the restart policy, and reattaching to a QEMU that outlived a daemon restart.
//!
//! Lifecycle operations are serialized per VM; each says which states allow it and fails
//! with [`VmmError::WrongState`] otherwise. Every change of status or timeline calls the
//! `notify` hook given at construction, so the owner can publish it.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

use crate::VmmError;

mod hotplug;
mod nics;
use crate::argv::{LaunchConfig, build_argv};
use crate::console::{BootWatch, Console, Milestone};
use crate::host::{HostConfig, check_readable};
use crate::paths::VmPaths;
use crate::process::{self, ExitInfo, PidFd};
use crate::qmp::{QmpClient, QmpEvent, QmpOptions};
use crate::spec::{DEFAULT_READY_PATTERN, RestartPolicy, VmSpec};
use crate::timeline::{Phase, Timeline};
pub use nics::NicOpener;

/// File descriptor numbers of the QMP and console listening sockets inside QEMU.
const QMP_FD: i32 = 3;
const CONSOLE_FD: i32 = 4;
/// After `quit`, how long QEMU gets to exit before SIGKILL.
const QUIT_GRACE: Duration = Duration::from_secs(3);
/// After SIGKILL, how long before we give up waiting (the kernel is stuck).
const KILL_WAIT: Duration = Duration::from_secs(10);
/// A VM that ran this long before crashing restarts without backoff.
const STABLE_RUN: Duration = Duration::from_secs(60);

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
        }
    }
    /// QEMU is (or should be) up.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            VmState::Starting | VmState::Running | VmState::Paused | VmState::Stopping
        )
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

/// Called with the VM id on every change of status or timeline.
pub type Notify = Arc<dyn Fn(&str) + Send + Sync>;

/// How a stop should go.
#[derive(Debug, Clone, Copy)]
pub struct StopMode {
    /// SIGKILL at once.
    pub force: bool,
    /// How long the guest gets to power off after the ACPI power button.
    pub timeout: Duration,
}

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

struct Runtime {
    pid: u32,
    qmp: QmpClient,
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
    stop_requested: AtomicBool,
    guest_shutdown: AtomicBool,
    /// QEMU is quitting on a QMP `quit` not sent by [`Vm::stop`] (passthrough): a stop too.
    qmp_quit: AtomicBool,
    restarts: AtomicU32,
    /// Set once the VM is being deleted: no more restarts.
    retired: AtomicBool,
    /// Provides the NICs' taps at each launch.
    nic_opener: Mutex<Option<NicOpener>>,
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
                guest_shutdown: AtomicBool::new(false),
                qmp_quit: AtomicBool::new(false),
                restarts: AtomicU32::new(0),
                retired: AtomicBool::new(false),
                nic_opener: Mutex::new(None),
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

    /// The QMP client of the running QEMU.
    pub fn qmp(&self) -> Result<QmpClient, VmmError> {
        match lock(&self.inner.runtime).as_ref() {
            Some(rt) => Ok(rt.qmp.clone()),
            None => Err(self.wrong_state("talk QMP")),
        }
    }

    /// A QMP `quit` is going to QEMU through passthrough (`false`: it was refused after
    /// all): the exit that follows is a stop, not a crash. QEMU's SHUTDOWN event says so
    /// too, but can be read after the exit is seen.
    pub fn note_qmp_quit(&self, quitting: bool) {
        self.inner.qmp_quit.store(quitting, Ordering::SeqCst);
    }

    fn wrong_state(&self, op: &'static str) -> VmmError {
        VmmError::WrongState {
            op,
            state: self.status().state.to_string(),
        }
    }

    fn set_status(&self, state: VmState, reason: impl Into<String>) {
        {
            let mut st = lock(&self.inner.status);
            st.state = state;
            st.reason = reason.into();
            st.pid = lock(&self.inner.runtime).as_ref().map(|r| r.pid);
        }
        (self.inner.notify)(&self.inner.id);
    }

    fn record(&self, phase: Phase, at: SystemTime) {
        lock(&self.inner.timeline).record(phase, at);
    }

    fn save_timeline(&self) {
        let t = self.timeline();
        if let Err(e) = t.save(&self.inner.paths.timeline()) {
            tracing::debug!(vm = %self.inner.name, error = %e, "cannot save timeline");
        }
    }

    /// Start QEMU and run the guest. `requested_at` is when the user asked (the timeline's
    /// origin). Returns once the vCPUs run. Allowed from STOPPED, CRASHED and ERROR.
    pub async fn start(&self, requested_at: SystemTime) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        self.start_locked(requested_at).await
    }

    async fn start_locked(&self, requested_at: SystemTime) -> Result<(), VmmError> {
        let state = self.status().state;
        if !matches!(state, VmState::Stopped | VmState::Crashed | VmState::Error) {
            return Err(self.wrong_state("start"));
        }
        *lock(&self.inner.timeline) = Timeline::new(requested_at);
        self.inner.stop_requested.store(false, Ordering::SeqCst);
        self.inner.guest_shutdown.store(false, Ordering::SeqCst);
        self.inner.qmp_quit.store(false, Ordering::SeqCst);
        self.set_status(VmState::Starting, "");
        match self.launch().await {
            Ok(()) => {
                self.save_timeline();
                Ok(())
            }
            Err(e) => {
                tracing::warn!(vm = %self.inner.name, error = %e, "start failed");
                self.set_status(VmState::Error, e.to_string());
                Err(e)
            }
        }
    }

    async fn launch(&self) -> Result<(), VmmError> {
        let spec = &self.spec();
        let host = &self.inner.host;
        let paths = &self.inner.paths;
        for (what, file) in [("kernel", &spec.kernel), ("initrd", &spec.initrd)] {
            if let Some(f) = file {
                check_readable(what, f, host.run_as.as_ref())?;
            }
        }
        for d in &spec.disks {
            check_readable("disk", &d.path, host.run_as.as_ref())?;
        }
        let pattern = spec
            .ready_pattern
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_READY_PATTERN);
        let pattern = regex::Regex::new(pattern)
            .map_err(|e| VmmError::InvalidSpec(format!("ready pattern: {e}")))?;
        prepare_dir(paths, host)?;
        // Taps first: QEMU gets them at spawn. If anything below fails, dropping the
        // descriptors removes them again.
        let nic_fds = self.open_nics(spec).await?;
        if !nic_fds.is_empty() {
            self.record(Phase::NetworkReady, SystemTime::now());
        }

        let qmp_listener = bind(&paths.qmp())?;
        let console_listener = bind(&paths.console())?;
        let log = std::fs::File::create(paths.log())
            .map_err(|e| VmmError::io("create", paths.log(), e))?;
        let launch = LaunchConfig {
            qemu_binary: host.qemu_binary.clone(),
            accel: host.accel,
            qmp_fd: QMP_FD,
            console_fd: CONSOLE_FD,
            bios: if spec.kernel.is_some() && spec.machine != crate::spec::MachineType::Microvm {
                host.kernel_boot_bios.clone()
            } else {
                None
            },
            tsc_khz: host.tsc_khz,
            sandbox: host.sandbox,
            nic_fds: (0..nic_fds.len() as i32)
                .map(|i| nics::FIRST_NIC_FD + i)
                .collect(),
        };
        let argv = build_argv(spec, &launch);
        if let Err(e) = std::fs::write(paths.argv(), argv.join("\n") + "\n") {
            tracing::debug!(error = %e, "cannot write qemu.argv");
        }
        let mut fds = vec![
            (qmp_listener.as_raw_fd(), QMP_FD),
            (console_listener.as_raw_fd(), CONSOLE_FD),
        ];
        fds.extend(
            nic_fds
                .iter()
                .zip(&launch.nic_fds)
                .map(|(fd, target)| (fd.as_raw_fd(), *target)),
        );
        let pid = process::spawn_detached(&argv, &log, &fds, host.run_as.as_ref())?;
        // QEMU holds the taps now: ours would keep a tap alive after QEMU exits.
        drop(nic_fds);
        self.record(Phase::QemuExec, SystemTime::now());
        let pidfd = match PidFd::open(pid) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                let _ = process::kill_pid(pid, Signal::SIGKILL);
                return Err(e);
            }
        };
        if let Err(e) = std::fs::write(paths.pidfile(), format!("{pid}\n")) {
            tracing::warn!(error = %e, "cannot write pidfile");
        }
        // Connect while we still hold the listeners: the connections wait in the backlog
        // until QEMU accepts them, so there is nothing to poll for.
        let console_conn = UnixStream::connect(paths.console()).await;
        let qmp_conn = UnixStream::connect(paths.qmp()).await;
        drop(qmp_listener);
        drop(console_listener);

        let (exit_tx, exit_rx) = watch::channel(false);
        self.spawn_exit_watch(pidfd.clone(), exit_tx);

        let result = self
            .handshake(pid, &pidfd, console_conn, qmp_conn, pattern, exit_rx)
            .await;
        if let Err(e) = result {
            return Err(self.abort_launch(&pidfd, e).await);
        }
        Ok(())
    }

    async fn handshake(
        &self,
        pid: u32,
        pidfd: &Arc<PidFd>,
        console_conn: std::io::Result<UnixStream>,
        qmp_conn: std::io::Result<UnixStream>,
        pattern: regex::Regex,
        exited: watch::Receiver<bool>,
    ) -> Result<(), VmmError> {
        let paths = &self.inner.paths;
        let console_conn = console_conn.map_err(|e| VmmError::io("connect", paths.console(), e))?;
        let qmp_conn = qmp_conn.map_err(|e| VmmError::io("connect", paths.qmp(), e))?;
        let me = self.clone();
        self.inner.console.set_boot_watch(Some(BootWatch {
            pattern,
            notify: Box::new(move |m, at| me.console_milestone(m, at)),
        }));
        self.inner.console.connect(console_conn).await;
        let opts = QmpOptions {
            greeting_timeout: self.inner.host.qmp_greeting_timeout,
            transcript: Some(paths.transcript()),
            ..QmpOptions::default()
        };
        let (qmp, events) = QmpClient::connect(qmp_conn, opts).await?;
        self.record(Phase::QmpReady, SystemTime::now());
        self.spawn_event_loop(events);
        qmp.cont().await?;
        self.record(Phase::VcpusRunning, SystemTime::now());
        *lock(&self.inner.runtime) = Some(Runtime {
            pid,
            qmp,
            pidfd: pidfd.clone(),
            exited: exited.clone(),
            started: Instant::now(),
        });
        self.set_status(VmState::Running, "");
        // QEMU may have exited between `cont` and now, while the exit watcher saw STARTING
        // and left the handling to us.
        if *exited.borrow() {
            self.handle_exit(None);
        }
        Ok(())
    }

    /// Undo a failed launch: kill QEMU if it still runs, explain with QEMU's own words.
    async fn abort_launch(&self, pidfd: &PidFd, err: VmmError) -> VmmError {
        let exited_early = pidfd.has_exited()
            || tokio::time::timeout(Duration::from_millis(500), pidfd.exited())
                .await
                .is_ok();
        if !exited_early {
            let _ = pidfd.signal(Signal::SIGKILL);
            let _ = tokio::time::timeout(KILL_WAIT, pidfd.exited()).await;
        }
        *lock(&self.inner.runtime) = None;
        self.inner.console.set_boot_watch(None);
        let log = process::log_tail(&self.inner.paths.log(), 4096);
        self.remove_runtime_files();
        let msg = process::qemu_error_message(&log);
        if exited_early && !msg.is_empty() {
            VmmError::QemuStart(msg)
        } else {
            err
        }
    }

    fn console_milestone(&self, m: Milestone, at: SystemTime) {
        let phase = match m {
            Milestone::FirstByte => Phase::FirstConsoleByte,
            Milestone::GuestReady => Phase::GuestReady,
        };
        self.record(phase, at);
        if m == Milestone::GuestReady {
            self.save_timeline();
        }
        (self.inner.notify)(&self.inner.id);
    }

    fn spawn_exit_watch(&self, pidfd: Arc<PidFd>, exit_tx: watch::Sender<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            let info = pidfd.exited().await;
            let _ = exit_tx.send(true);
            let state = me.status().state;
            // During a start, the starter handles an early exit.
            if state != VmState::Starting {
                me.handle_exit(info);
            }
        });
    }

    fn spawn_event_loop(&self, mut events: mpsc::UnboundedReceiver<QmpEvent>) {
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let QmpEvent::Event { name, data, .. } = ev else {
                    break;
                };
                me.on_qmp_event(&name, &data);
            }
        });
    }

    fn on_qmp_event(&self, name: &str, data: &serde_json::Value) {
        tracing::debug!(vm = %self.inner.name, event = name, %data, "QMP event");
        let _ = self.inner.events.send((name.to_string(), data.clone()));
        let state = self.status().state;
        match name {
            "SHUTDOWN" if data.get("guest").and_then(|g| g.as_bool()) == Some(true) => {
                self.inner.guest_shutdown.store(true, Ordering::SeqCst);
            }
            "SHUTDOWN" if data.get("reason").and_then(|r| r.as_str()) == Some("host-qmp-quit") => {
                self.inner.qmp_quit.store(true, Ordering::SeqCst);
            }
            // A `stop` or `cont` through QMP passthrough, or a guest panic/IO error pause.
            "STOP" if state == VmState::Running => self.set_status(VmState::Paused, ""),
            "RESUME" if state == VmState::Paused => self.set_status(VmState::Running, ""),
            _ => {}
        }
    }

    /// QEMU is gone: decide STOPPED or CRASHED, clean up, and apply the restart policy.
    fn handle_exit(&self, info: Option<ExitInfo>) {
        let rt = lock(&self.inner.runtime).take();
        if rt.is_none() {
            return; // already handled
        }
        let ran_for = rt.as_ref().map(|r| r.started.elapsed());
        self.inner.console.set_boot_watch(None);
        let log = process::log_tail(&self.inner.paths.log(), 2048);
        self.remove_runtime_files();
        let how = info
            .map(|i| i.to_string())
            .unwrap_or_else(|| "exited".into());
        let guest_off = self.inner.guest_shutdown.load(Ordering::SeqCst);
        let qmp_quit = self.inner.qmp_quit.load(Ordering::SeqCst);
        let (state, reason) = if self.inner.stop_requested.load(Ordering::SeqCst) {
            (VmState::Stopped, String::new())
        } else if qmp_quit {
            (VmState::Stopped, "stopped by QMP quit".to_string())
        } else if guest_off {
            (VmState::Stopped, "guest powered off".to_string())
        } else {
            let msg = process::qemu_error_message(&log);
            let mut reason = format!("QEMU {how} unexpectedly");
            if !msg.is_empty() {
                reason.push_str(": ");
                reason.push_str(&msg);
            }
            (VmState::Crashed, reason)
        };
        tracing::info!(vm = %self.inner.name, state = %state, reason = %reason, "QEMU exited");
        self.set_status(state, reason);
        let policy = self.spec().restart_policy;
        let restart = !self.inner.stop_requested.load(Ordering::SeqCst)
            && !qmp_quit
            && !self.inner.retired.load(Ordering::SeqCst)
            && match policy {
                RestartPolicy::Never => false,
                RestartPolicy::OnFailure => state == VmState::Crashed,
                RestartPolicy::Always => true,
            };
        if restart {
            if ran_for.is_some_and(|d| d > STABLE_RUN) {
                self.inner.restarts.store(0, Ordering::SeqCst);
            }
            let n = self.inner.restarts.fetch_add(1, Ordering::SeqCst);
            let delay = Duration::from_secs(1u64 << n.min(6)).min(Duration::from_secs(60));
            let me = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ops = me.inner.ops.lock().await;
                if me.inner.retired.load(Ordering::SeqCst) || me.status().state != state {
                    return;
                }
                tracing::info!(vm = %me.inner.name, attempt = n + 1, "restart policy: starting");
                let _ = me.start_locked(SystemTime::now()).await;
            });
        }
    }

    fn remove_runtime_files(&self) {
        let p = &self.inner.paths;
        for f in [p.qmp(), p.console(), p.pidfile()] {
            let _ = std::fs::remove_file(f);
        }
    }

    /// Stop QEMU. Allowed from RUNNING and PAUSED; returns once QEMU is gone (STOPPED).
    pub async fn stop(&self, mode: StopMode) -> Result<(), VmmError> {
        let _ops = self.inner.ops.lock().await;
        self.stop_locked(mode).await
    }

    async fn stop_locked(&self, mode: StopMode) -> Result<(), VmmError> {
        let state = self.status().state;
        if !matches!(state, VmState::Running | VmState::Paused) {
            return Err(self.wrong_state("stop"));
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
            // A zero timeout gives the guest no grace: straight to quit.
            if state == VmState::Running && !mode.timeout.is_zero() {
                match qmp.system_powerdown().await {
                    Ok(()) => gone = wait_exit(&mut exited, mode.timeout).await,
                    Err(e) => tracing::warn!(vm = %name, error = %e, "system_powerdown failed"),
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

    /// After a daemon restart: find this VM's QEMU (pidfile, then `/proc` proves it is ours),
    /// reconnect QMP and the console, and supervise it again. A VM whose QEMU is gone ends
    /// up STOPPED, or CRASHED if it had been running.
    pub async fn recover(&self) -> Result<VmState, VmmError> {
        let _ops = self.inner.ops.lock().await;
        let paths = &self.inner.paths;
        let Some(pid) = process::read_pidfile(&paths.pidfile()) else {
            self.remove_runtime_files();
            self.set_status(VmState::Stopped, "");
            return Ok(VmState::Stopped);
        };
        let id = &self.inner.id;
        // Open the pidfd first, then check /proc: the pidfd pins the process, so the check
        // cannot be fooled by a pid reused in between.
        let pidfd = match PidFd::open(pid) {
            Ok(p) if process::is_our_qemu(pid, id) => Arc::new(p),
            _ => {
                self.remove_runtime_files();
                self.set_status(
                    VmState::Crashed,
                    "QEMU exited while the node daemon was down",
                );
                return Ok(VmState::Crashed);
            }
        };
        let opts = QmpOptions {
            greeting_timeout: Duration::from_secs(10),
            transcript: Some(paths.transcript()),
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
        let (exit_tx, exit_rx) = watch::channel(false);
        *lock(&self.inner.runtime) = Some(Runtime {
            pid,
            qmp: qmp.clone(),
            pidfd: pidfd.clone(),
            exited: exit_rx,
            started: Instant::now(),
        });
        let state = if status.running || status.status == "prelaunch" {
            VmState::Running
        } else {
            VmState::Paused
        };
        self.set_status(state, "");
        self.spawn_exit_watch(pidfd, exit_tx);
        tracing::info!(vm = %self.inner.name, pid, state = %state, "reattached to running QEMU");
        Ok(state)
    }
}

async fn wait_exit(exited: &mut watch::Receiver<bool>, timeout: Duration) -> bool {
    tokio::time::timeout(timeout, exited.wait_for(|e| *e))
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false)
}

fn prepare_dir(paths: &VmPaths, host: &HostConfig) -> Result<(), VmmError> {
    let dir = &paths.dir;
    std::fs::create_dir_all(dir).map_err(|e| VmmError::io("create", dir, e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| VmmError::io("chmod", dir, e))?;
    if let Some(r) = &host.run_as {
        chown(dir, Some(r.uid), Some(r.gid)).map_err(|e| VmmError::io("chown", dir, e))?;
    }
    for f in [paths.qmp(), paths.console(), paths.pidfile()] {
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(VmmError::io("remove", f, e)),
        }
    }
    Ok(())
}

fn bind(path: &Path) -> Result<UnixListener, VmmError> {
    UnixListener::bind(path).map_err(|e| VmmError::io("bind", path, e))
}

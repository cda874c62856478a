//! A start: check there is no QEMU of this VM already, open every file QEMU needs (disks,
//! their backing images, the UEFI variable store, the seed) and the NICs' taps, bind the
//! QMP and console sockets, spawn QEMU paused as the VM's own uid with all of them as descriptors,
//! then the QMP handshake and `cont`. A failure kills what was spawned and explains itself
//! with QEMU's own words.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use tokio::net::UnixStream;
use tokio::sync::watch;

use super::snapshot::Restore;
use super::{KILL_WAIT, Runtime, Vm, VmState, lock, nics};
use crate::VmmError;
use crate::argv::{DiskFds, LaunchConfig, MemoryFd, build_argv};
use crate::console::{BootWatch, Milestone};
use crate::host::check_readable;
use crate::paths::VmPaths;
use crate::process::{self, PidFd};
use crate::qmp::{QmpClient, QmpOptions};
use crate::spec::{DEFAULT_READY_PATTERN, MachineType, VmSpec};
use crate::timeline::Phase;

/// File descriptor numbers of the QMP and console listening sockets inside QEMU.
const QMP_FD: i32 = 3;
const CONSOLE_FD: i32 = 4;
/// How long a QEMU whose QMP closed gets to exit, so its own error can be the message.
const EXIT_AFTER_CLOSE: Duration = Duration::from_secs(3);

/// The files of one launch, opened by the daemon: QEMU gets the descriptors.
struct OpenFiles {
    /// Per disk: the volume (read-write) and its backing image (read-only).
    disks: Vec<(OwnedFd, Option<OwnedFd>)>,
    uefi_vars: Option<OwnedFd>,
    /// The seed image, read-only.
    seed: Option<OwnedFd>,
}

fn open(path: &Path, write: bool) -> Result<OwnedFd, VmmError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| VmmError::io("open", path, e))
}

fn open_files(spec: &VmSpec) -> Result<OpenFiles, VmmError> {
    let mut disks = Vec::with_capacity(spec.disks.len());
    for d in &spec.disks {
        let file = open(&d.path, true)?;
        let backing = match &d.backing {
            Some(b) => Some(open(&b.path, false)?),
            None => None,
        };
        disks.push((file, backing));
    }
    let uefi_vars = match &spec.uefi_vars {
        Some(v) if spec.firmware == crate::spec::Firmware::Uefi => Some(open(v, true)?),
        _ => None,
    };
    let seed = spec.seed.as_deref().map(|p| open(p, false)).transpose()?;
    Ok(OpenFiles {
        disks,
        uefi_vars,
        seed,
    })
}

impl Vm {
    pub(super) async fn launch(&self, restore: Option<Restore>) -> Result<(), VmmError> {
        let spec = &self.spec();
        let host = &self.inner.host;
        let paths = &self.inner.paths;
        let run_as = self.run_as();
        for (what, file) in [("kernel", &spec.kernel), ("initrd", &spec.initrd)] {
            if let Some(f) = file {
                check_readable(what, f, run_as.as_ref())?;
            }
        }
        let pattern = spec
            .ready_pattern
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(DEFAULT_READY_PATTERN);
        let pattern = regex::Regex::new(pattern)
            .map_err(|e| VmmError::InvalidSpec(format!("ready pattern: {e}")))?;
        // Two QEMUs on one disk corrupt it: whatever the node's state says, never start a
        // second one while this VM's QEMU lives.
        // An incoming migration's QEMU is the exception: it writes only its own new
        // volumes, and the source's QEMU (same uuid) may share this host.
        let incoming = self
            .inner
            .incoming
            .load(std::sync::atomic::Ordering::SeqCst);
        if !incoming && let Some(pid) = process::find_qemu(&spec.id) {
            return Err(VmmError::AlreadyRunning { pid });
        }
        prepare_dir(paths)?;
        let files = open_files(spec)?;
        let kernel = self.pvh_kernel(spec).await;
        // Taps: QEMU gets them at spawn. If anything below fails, dropping the descriptors
        // removes them again.
        let nic_fds = self.open_nics(spec).await?;
        if !nic_fds.is_empty() {
            self.record(Phase::NetworkReady, SystemTime::now());
        }

        let qmp_listener = bind(&paths.qmp())?;
        let console_listener = bind(&paths.console())?;
        let log = File::create(paths.log()).map_err(|e| VmmError::io("create", paths.log(), e))?;
        // Descriptor numbers inside QEMU: QMP, console, the taps, then the files.
        let mut fds = vec![
            (qmp_listener.as_raw_fd(), QMP_FD),
            (console_listener.as_raw_fd(), CONSOLE_FD),
        ];
        let mut next = nics::FIRST_NIC_FD;
        let mut place = |fd: &OwnedFd| {
            fds.push((fd.as_raw_fd(), next));
            next += 1;
            next - 1
        };
        let nic_numbers: Vec<i32> = nic_fds.iter().map(&mut place).collect();
        let disk_numbers: Vec<DiskFds> = files
            .disks
            .iter()
            .map(|(file, backing)| DiskFds {
                file: place(file),
                backing: backing.as_ref().map(&mut place),
            })
            .collect();
        let uefi_vars_fd = files.uefi_vars.as_ref().map(&mut place);
        let kernel_fd = kernel.as_ref().map(&mut place);
        let seed_fd = files.seed.as_ref().map(&mut place);
        let memory = restore.as_ref().map(|r| MemoryFd {
            fd: place(&r.memory),
            shared: r.shared,
        });
        let launch = LaunchConfig {
            qemu_binary: host.qemu_binary.clone(),
            accel: host.accel,
            qmp_fd: QMP_FD,
            console_fd: CONSOLE_FD,
            bios: if spec.kernel.is_some() && spec.machine != MachineType::Microvm {
                host.kernel_boot_bios.clone()
            } else {
                None
            },
            tsc_khz: host.tsc_khz,
            kernel_fd,
            sandbox: host.sandbox,
            nic_fds: nic_numbers,
            disk_fds: disk_numbers,
            uefi_vars_fd,
            seed_fd,
            memory,
            // A restore loads a saved state; an incoming migration's state comes over the
            // network: either way QEMU waits for `migrate-incoming`.
            incoming: restore.is_some() || incoming,
        };
        // A restore starts without NICs: the saved device state has none (a template is
        // taken without them), and they are hot-plugged once it is loaded.
        let argv = match &restore {
            Some(_) => build_argv(
                &crate::spec::VmSpec {
                    nics: Vec::new(),
                    ..spec.clone()
                },
                &launch,
            ),
            None => build_argv(spec, &launch),
        };
        if let Err(e) = std::fs::write(paths.argv(), argv.join("\n") + "\n") {
            tracing::debug!(error = %e, "cannot write qemu.argv");
        }
        let pid = process::spawn_detached(&argv, &log, &fds, run_as.as_ref())?;
        // QEMU holds the taps and files now: ours would keep a tap alive after QEMU exits.
        // (A restore keeps the taps to hot-plug them after the state is loaded.)
        let (nic_fds, restore) = match restore {
            Some(r) => (nic_fds, Some(r.after_spawn())),
            None => {
                drop(nic_fds);
                (Vec::new(), None)
            }
        };
        drop(files);
        drop(kernel);
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
            .handshake(
                pid,
                &pidfd,
                (console_conn, qmp_conn),
                pattern,
                exit_rx,
                restore.map(|r| (r, nic_fds)),
            )
            .await;
        if let Err(e) = result {
            return Err(self.abort_launch(&pidfd, e).await);
        }
        Ok(())
    }

    /// A fast-profile VM's kernel as an uncompressed PVH image (`crate::kernel`), opened;
    /// None: QEMU loads `spec.kernel` as it is (standard profile, no cache, or a kernel
    /// that has no PVH image, which is logged once per kernel).
    async fn pvh_kernel(&self, spec: &VmSpec) -> Option<OwnedFd> {
        if spec.profile != crate::spec::Profile::Fast {
            return None;
        }
        let (kernel, cache) = (spec.kernel.clone()?, self.inner.host.kernel_cache.clone()?);
        let k = kernel.clone();
        match tokio::task::spawn_blocking(move || cache.pvh(&k)).await {
            Ok(Ok(f)) => Some(OwnedFd::from(f)),
            Ok(Err(why)) => {
                tracing::info!(kernel = %kernel.display(), "booting the kernel as given: {why}");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "unpacking the kernel");
                None
            }
        }
    }

    async fn handshake(
        &self,
        pid: u32,
        pidfd: &Arc<PidFd>,
        (console_conn, qmp_conn): (std::io::Result<UnixStream>, std::io::Result<UnixStream>),
        pattern: regex::Regex,
        exited: watch::Receiver<bool>,
        restore: Option<(super::snapshot::Loading, Vec<OwnedFd>)>,
    ) -> Result<(), VmmError> {
        let paths = &self.inner.paths;
        let console_conn = console_conn.map_err(|e| VmmError::io("connect", paths.console(), e))?;
        let qmp_conn = qmp_conn.map_err(|e| VmmError::io("connect", paths.qmp(), e))?;
        let me = self.clone();
        let ready_at_resume = restore.as_ref().is_some_and(|(r, _)| r.ready_at_resume);
        self.inner.console.set_boot_watch(Some(BootWatch {
            pattern,
            notify: Box::new(move |m, at| me.console_milestone(m, at)),
        }));
        self.inner.console.connect(console_conn).await;
        let opts = QmpOptions {
            greeting_timeout: self.inner.host.qmp_greeting_timeout,
            transcript: Some(paths.transcript()),
            observer: self.inner.host.qmp_observer.clone(),
            ..QmpOptions::default()
        };
        let (qmp, events) = QmpClient::connect(qmp_conn, opts).await?;
        self.record(Phase::QmpReady, SystemTime::now());
        self.spawn_event_loop(events);
        // An incoming migration's QEMU stays paused until the stream is in.
        let incoming = self
            .inner
            .incoming
            .load(std::sync::atomic::Ordering::SeqCst);
        let resume = match restore {
            Some((r, taps)) => self.load_state(&qmp, r, taps).await?,
            None => true,
        };
        if !resume {
            // A template in the making: loaded, left paused for its devices to be saved.
            *lock(&self.inner.runtime) = Some(Runtime {
                pid,
                qmp: Some(qmp),
                pidfd: pidfd.clone(),
                exited: exited.clone(),
                started: Instant::now(),
            });
            self.set_status(VmState::Paused, "");
            return Ok(());
        }
        if !incoming {
            qmp.cont().await?;
            let now = SystemTime::now();
            self.record(Phase::VcpusRunning, now);
            if ready_at_resume {
                // The template was taken of a ready guest: running again is being ready.
                self.record(Phase::GuestReady, now);
                self.save_timeline();
            }
        }
        *lock(&self.inner.runtime) = Some(Runtime {
            pid,
            qmp: Some(qmp),
            pidfd: pidfd.clone(),
            exited: exited.clone(),
            started: Instant::now(),
        });
        if incoming {
            self.set_status(VmState::Paused, "waiting for an incoming migration");
        } else {
            self.set_status(VmState::Running, "");
        }
        // QEMU may have exited between `cont` and now, while the exit watcher saw STARTING
        // and left the handling to us.
        if *exited.borrow() {
            self.handle_exit(None);
        }
        Ok(())
    }

    /// Undo a failed launch: kill QEMU if it still runs, explain with QEMU's own words.
    async fn abort_launch(&self, pidfd: &PidFd, err: VmmError) -> VmmError {
        // A closed QMP connection means QEMU is on its way out: give it time to finish, so
        // its error message (not "QMP connection closed") is what the user sees.
        let grace = match err {
            VmmError::QmpClosed => EXIT_AFTER_CLOSE,
            _ => Duration::from_millis(500),
        };
        let exited_early =
            pidfd.has_exited() || tokio::time::timeout(grace, pidfd.exited()).await.is_ok();
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
            Milestone::KernelStarted => Phase::KernelStarted,
            Milestone::InitStarted => Phase::InitStarted,
            Milestone::GuestReady => Phase::GuestReady,
        };
        if phase == Phase::KernelStarted {
            // An estimate from the kernel's clock: never before the vCPUs ran.
            self.record_earliest_after(phase, at, Phase::VcpusRunning);
            return;
        }
        self.record(phase, at);
        if m == Milestone::GuestReady {
            self.save_timeline();
        }
        (self.inner.notify)(&self.inner.id);
    }
}

/// The VM's run dir: the daemon's alone (0700, root). QEMU needs nothing in it: its sockets,
/// log and files all reach it as descriptors, so it cannot plant links for the daemon to
/// follow there.
fn prepare_dir(paths: &VmPaths) -> Result<(), VmmError> {
    let dir = &paths.dir;
    std::fs::create_dir_all(dir).map_err(|e| VmmError::io("create", dir, e))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| VmmError::io("stat", dir, e))?;
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    if meta.uid() != uid || meta.gid() != gid {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|e| VmmError::io("chown", dir, e))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| VmmError::io("chmod", dir, e))?;
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

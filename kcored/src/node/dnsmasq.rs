//! The dnsmasq of a nat network, kept running: started as our child and restarted with
//! backoff when it dies, or, after a daemon restart, adopted from its pid file (the old
//! daemon's child keeps serving leases meanwhile) and watched by pid until it dies, when a
//! child of ours replaces it. Its pid file, lease file and log live in
//! `<run-dir>/networks/<name>/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kcore_netstack::NetError;
use kcore_netstack::dnsmasq::{
    Dnsmasq, DnsmasqConfig, dnsmasq_argv, is_running_dnsmasq, read_pid_file, stop_pid,
};
use kcore_netstack::tool;
use tokio::sync::watch;

/// How long dnsmasq gets to bind its sockets and write its pid file.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an adopted dnsmasq (not our child) is checked.
const ADOPTED_POLL: Duration = Duration::from_secs(2);
/// SIGTERM, then this long, then SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// A dnsmasq that ran this long before dying restarts without backoff.
const STABLE_RUN: Duration = Duration::from_secs(60);

/// A supervised dnsmasq. [`Supervisor::stop`] (or dropping it) stops it; a daemon that
/// exits leaves it running, and the next one adopts it.
#[derive(Debug)]
pub struct Supervisor {
    pid: Arc<AtomicU32>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

enum Running {
    Child(Box<Dnsmasq>),
    Adopted(u32),
}

/// True if `pid` is a live dnsmasq serving with this pid file (so it is ours).
fn is_ours(pid: u32, pid_file: &Path) -> bool {
    if !is_running_dnsmasq(pid) {
        return false;
    }
    let want = format!("--pid-file={}", pid_file.display());
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).any(|arg| arg == want.as_bytes()))
        .unwrap_or(false)
}

/// The last lines of dnsmasq's log, to explain a failed start.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("; ")
}

async fn spawn_ready(
    argv: &[String],
    cfg: &DnsmasqConfig,
    log: &Path,
) -> Result<Dnsmasq, NetError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| NetError::io("open", log, e))?;
    let mut d = Dnsmasq::spawn(argv, cfg, Some(&file))?;
    if let Err(e) = d.wait_ready(READY_TIMEOUT).await {
        let _ = d.stop(Duration::from_secs(1)).await;
        let tail = log_tail(log);
        return Err(match e {
            NetError::CommandFailed {
                program, status, ..
            } if !tail.is_empty() => NetError::CommandFailed {
                program,
                status,
                stderr: tail,
            },
            other => other,
        });
    }
    Ok(d)
}

impl Supervisor {
    /// Adopt the dnsmasq of `cfg`'s pid file if it still runs, else start one and wait until
    /// it serves; then keep it running.
    pub async fn start(network: &str, cfg: DnsmasqConfig, log: PathBuf) -> Result<Self, NetError> {
        let program = tool::find(tool::DNSMASQ)?;
        let argv = dnsmasq_argv(&program, &cfg)?;
        let running = match read_pid_file(&cfg.pid_file) {
            Ok(Some(pid)) if is_ours(pid, &cfg.pid_file) => {
                tracing::info!(network, pid, "adopted the running dnsmasq");
                Running::Adopted(pid)
            }
            _ => Running::Child(Box::new(spawn_ready(&argv, &cfg, &log).await?)),
        };
        let pid = Arc::new(AtomicU32::new(match &running {
            Running::Child(d) => d.pid(),
            Running::Adopted(p) => *p,
        }));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(
            network.to_string(),
            argv,
            cfg,
            log,
            running,
            pid.clone(),
            stop_rx,
        ));
        Ok(Supervisor { pid, stop, task })
    }

    /// The pid of the dnsmasq serving now.
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::SeqCst)
    }

    /// Stop supervising and stop dnsmasq; returns once it is gone.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "dnsmasq supervisor failed");
        }
    }
}

async fn supervise(
    network: String,
    argv: Vec<String>,
    cfg: DnsmasqConfig,
    log: PathBuf,
    mut running: Running,
    pid: Arc<AtomicU32>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let stopped = match &mut running {
            Running::Child(d) => tokio::select! {
                st = d.wait() => {
                    tracing::warn!(network, status = ?st.ok(), "dnsmasq exited: restarting it");
                    false
                }
                _ = stop.changed() => true,
            },
            Running::Adopted(p) => loop {
                tokio::select! {
                    _ = tokio::time::sleep(ADOPTED_POLL) => {
                        if !is_running_dnsmasq(*p) {
                            tracing::warn!(network, pid = *p, "dnsmasq is gone: restarting it");
                            break false;
                        }
                    }
                    _ = stop.changed() => break true,
                }
            },
        };
        if stopped {
            match running {
                Running::Child(d) => {
                    if let Err(e) = d.stop(STOP_GRACE).await {
                        tracing::warn!(network, error = %e, "stopping dnsmasq");
                    }
                }
                Running::Adopted(p) => {
                    if let Err(e) = stop_pid(p, STOP_GRACE).await {
                        tracing::warn!(network, error = %e, "stopping dnsmasq");
                    }
                    let _ = std::fs::remove_file(&cfg.pid_file);
                }
            }
            return;
        }
        if started.elapsed() > STABLE_RUN {
            failures = 0;
        }
        // Restart with backoff (1 s doubling to 30 s) until it runs or we are told to stop.
        loop {
            let delay = Duration::from_secs(1 << failures.min(5)).min(Duration::from_secs(30));
            failures += 1;
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
            match spawn_ready(&argv, &cfg, &log).await {
                Ok(d) => {
                    pid.store(d.pid(), Ordering::SeqCst);
                    tracing::info!(network, pid = d.pid(), "dnsmasq restarted");
                    running = Running::Child(Box::new(d));
                    break;
                }
                Err(e) => {
                    tracing::warn!(network, error = %e, attempt = failures, "dnsmasq restart failed")
                }
            }
        }
    }
}

//! Shared helpers of the kcore benchmarks (`kcore-bench`, `kcore-bench-cluster`): real
//! `kcored` processes in temp dirs, gRPC over their unix sockets, and small statistics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// The median of `v` (sorts it); NaN when empty.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `p`-th percentile of `v` by nearest rank (sorts it); NaN when empty.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Milliseconds since `t`.
pub fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// A gRPC channel over the unix socket at `path`.
pub async fn dial(path: PathBuf) -> anyhow::Result<Channel> {
    Ok(Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_| {
            let p = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
        }))
        .await?)
}

/// The kcored binary: `given`, else the one next to the running benchmark binary.
pub fn kcored_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(p) => Ok(p.to_path_buf()),
        None => Ok(std::env::current_exe()?
            .parent()
            .context("bench binary dir")?
            .join("kcored")),
    }
}

/// A free TCP port on 127.0.0.1 (bound once and released).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A child process killed (SIGCONT first, should it be stopped) and reaped when dropped.
pub struct DaemonGuard(pub Child);

impl DaemonGuard {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0.id() as i32)
    }
}

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawn `kcored args...` with stdout and stderr appended to `log`.
pub fn spawn_kcored(
    kcored: &Path,
    args: &[std::ffi::OsString],
    log: &Path,
    rust_log: &str,
) -> anyhow::Result<DaemonGuard> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("open {}", log.display()))?;
    let child = Command::new(kcored)
        .args(args)
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("start {}", kcored.display()))?;
    Ok(DaemonGuard(child))
}

/// Wait until `sock` accepts connections; fails when `daemon` exits first (with the tail
/// of `log`) or after `timeout`.
pub async fn wait_for_socket(
    daemon: &mut DaemonGuard,
    sock: &Path,
    log: &Path,
    timeout: Duration,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while UnixStream::connect(sock).await.is_err() {
        if let Some(st) = daemon.0.try_wait()? {
            bail!(
                "kcored exited ({st}) before {}:\n{}",
                sock.display(),
                tail(log, 20)
            );
        }
        if t0.elapsed() > timeout {
            bail!("kcored did not bind {}:\n{}", sock.display(), tail(log, 20));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// The last `n` lines of the file at `path` ("" when unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Pids of live processes (other than this one) whose command line mentions `dir`: what a
/// benchmark left behind in its temp dir.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

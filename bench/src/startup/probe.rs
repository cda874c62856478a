//! What the benchmark reads from the guests and the daemons: the ready marker on a serial
//! console socket, and RSS / PSS from `/proc`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// The line the test guest's `/init` prints once userspace runs.
pub const READY: &str = "KCORE-GUEST-READY";

/// How long one guest (or ten at once) may take to print the marker.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// When the marker came: the task resolves to the instant it was read.
pub type ReadyTask = JoinHandle<anyhow::Result<Instant>>;

/// Read `con` until the ready marker; the instant it arrived.
pub async fn until_marker(mut con: UnixStream) -> anyhow::Result<Instant> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(BOOT_TIMEOUT, con.read(&mut buf))
            .await
            .context("no ready marker on the console in time")??;
        if n == 0 {
            bail!(
                "the console closed before {READY}; it showed: {}",
                String::from_utf8_lossy(&seen[seen.len().saturating_sub(300)..])
            );
        }
        seen.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&seen).contains(READY) {
            return Ok(Instant::now());
        }
    }
}

/// Bind a console socket at `path` that any user may connect to (libvirt's QEMU runs as
/// `libvirt-qemu` and connects to it), and wait in a task for QEMU to connect and print
/// the marker.
pub fn listen_for_marker(path: &Path) -> anyhow::Result<ReadyTask> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).with_context(|| format!("bind {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))?;
    Ok(tokio::spawn(async move {
        let (con, _) = tokio::time::timeout(BOOT_TIMEOUT, listener.accept())
            .await
            .context("QEMU never connected to the console socket")??;
        until_marker(con).await
    }))
}

/// Await a ready task (it resolves to an error when the marker never came).
pub async fn ready_at(task: &mut ReadyTask) -> anyhow::Result<Instant> {
    task.await.context("console task")?
}

/// Run `stop` while watching the process `pid`: (stop's own ms, ms until the process
/// had exited: its pidfd readable, which does not wait for anyone to reap it).
pub async fn stop_and_exit<F>(pid: u32, stop: F) -> anyhow::Result<(f64, f64)>
where
    F: std::future::Future<Output = anyhow::Result<f64>>,
{
    let pidfd = kcore_vmm::process::PidFd::open(pid)?;
    let t = Instant::now();
    let exited = async {
        tokio::time::timeout(Duration::from_secs(60), pidfd.exited())
            .await
            .context("the QEMU did not exit within 60 s")?;
        anyhow::Ok(kcore_bench::ms_since(t))
    };
    let (stop, exited) = tokio::join!(stop, exited);
    Ok((stop?, exited?))
}

/// A `Key:   N kB` field of a `/proc` file, in KiB.
fn proc_kib(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(key)?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

/// A process's resident set (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// A process's proportional set size (shared pages divided among their users), in KiB.
pub fn pss_kib(pid: u32) -> Option<u64> {
    proc_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// The summed PSS of `pids` in MiB; fails when one of them is gone.
pub fn pss_sum_mib(pids: &[u32]) -> anyhow::Result<f64> {
    let mut kib = 0;
    for &pid in pids {
        kib += pss_kib(pid).with_context(|| format!("no PSS for pid {pid}: is it gone?"))?;
    }
    Ok(kib as f64 / 1024.0)
}

/// CPU time (user + system) `pids` have used so far, in ms: `/proc/PID/stat`'s utime and
/// stime, in USER_HZ ticks (100 a second on x86-64 Linux); fails when one is gone.
pub fn cpu_ms(pids: &[u32]) -> anyhow::Result<f64> {
    const USER_HZ: f64 = 100.0;
    let mut ticks = 0u64;
    for &pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("no /proc/{pid}/stat: is it gone?"))?;
        // The fields after the command name's closing parenthesis: state is the first,
        // utime the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        for i in [11, 12] {
            ticks += f
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .with_context(|| format!("/proc/{pid}/stat: no field {}", i + 3))?;
        }
    }
    Ok(ticks as f64 * 1000.0 / USER_HZ)
}

/// The summed RSS of `pids` in MiB; fails when one of them is gone.
pub fn rss_sum_mib(pids: &[u32]) -> anyhow::Result<f64> {
    let mut kib = 0;
    for &pid in pids {
        kib += rss_kib(pid).with_context(|| format!("no RSS for pid {pid}: is it gone?"))?;
    }
    Ok(kib as f64 / 1024.0)
}

//! QEMU processes: spawned detached from the daemon (own session, no PDEATHSIG, so QEMU
//! outlives a daemon restart), as an unprivileged user, with the listening sockets handed
//! over as file descriptors. Exit is detected with a pidfd (never `kill -0`: a zombie still
//! answers it), and a pid from a pidfile is only trusted after its `/proc` entry proves it
//! is this VM's QEMU.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;

use crate::VmmError;

/// The user QEMU runs as: uid, primary gid and supplementary groups (e.g. `kvm`, for
/// /dev/kvm), as `initgroups` would give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl RunAs {
    /// This user with another uid (a VM's own), keeping the groups.
    pub fn with_uid(&self, uid: Option<u32>) -> RunAs {
        RunAs {
            uid: uid.unwrap_or(self.uid),
            ..self.clone()
        }
    }

    /// True if this user may open `path` for reading and writing, by its mode bits.
    pub fn can_read_write(&self, meta: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode();
        if meta.uid() == self.uid {
            mode & 0o600 == 0o600
        } else if meta.gid() == self.gid || self.groups.contains(&meta.gid()) {
            mode & 0o060 == 0o060
        } else {
            mode & 0o006 == 0o006
        }
    }
}

/// Spawn `argv` detached: a new session, stdin from /dev/null, stdout and stderr appended to
/// `log`, and each `(fd, target)` in `fds` placed at file descriptor number `target` in
/// the child (all other descriptors are close-on-exec). Returns the pid.
pub fn spawn_detached(
    argv: &[String],
    log: &File,
    fds: &[(RawFd, RawFd)],
    run_as: Option<&RunAs>,
) -> Result<u32, VmmError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| VmmError::QemuStart("empty argv".into()))?;
    let out = log
        .try_clone()
        .map_err(|e| VmmError::io("dup", "qemu.log", e))?;
    let err = log
        .try_clone()
        .map_err(|e| VmmError::io("dup", "qemu.log", e))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // Drop to the QEMU user in the child: groups first, then gid, then uid (std's
    // `uid()`/`gid()` would drop the supplementary groups, and /dev/kvm needs `kvm`).
    let ids = run_as.map(|r| {
        let groups: Vec<libc::gid_t> = r.groups.clone();
        (r.uid as libc::uid_t, r.gid as libc::gid_t, groups)
    });
    // Move every source above the target range first, so that placing one descriptor can
    // never overwrite another source (e.g. source 4 -> 3 while source 3 is still needed).
    let mut held = Vec::with_capacity(fds.len());
    for &(src, dst) in fds {
        // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we were given; the result is owned.
        let high = unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 64) };
        if high < 0 {
            return Err(VmmError::Sys {
                op: "fcntl(F_DUPFD_CLOEXEC)",
                source: nix::Error::last(),
            });
        }
        // SAFETY: `high` is a fresh descriptor owned by nobody else.
        held.push((unsafe { OwnedFd::from_raw_fd(high) }, dst));
    }
    let fds: Vec<(RawFd, RawFd)> = held.iter().map(|(o, d)| (o.as_raw_fd(), *d)).collect();
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (setsid, setgroups, setgid, setuid, dup2, fcntl); it
    // allocates nothing (the group list was built before the fork).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some((uid, gid, groups)) = &ids
                && (libc::setgroups(groups.len(), groups.as_ptr()) < 0
                    || libc::setgid(*gid) < 0
                    || libc::setuid(*uid) < 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            for &(src, dst) in &fds {
                if src == dst {
                    let flags = libc::fcntl(src, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(src, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(src, dst) < 0 {
                    // dup2 clears FD_CLOEXEC on the new descriptor.
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| VmmError::io("spawn", program.as_str(), e))?;
    drop(held);
    // Dropping `Child` neither kills nor waits: the pidfd watcher reaps it.
    Ok(child.id())
}

/// An open pidfd: readable once the process has exited.
#[derive(Debug)]
pub struct PidFd {
    pid: u32,
    fd: AsyncFd<OwnedFd>,
}

impl PidFd {
    /// Open a pidfd for `pid`. Fails with ESRCH if there is no such process.
    pub fn open(pid: u32) -> Result<Self, VmmError> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if raw < 0 {
            return Err(VmmError::Sys {
                op: "pidfd_open",
                source: nix::Error::last(),
            });
        }
        // SAFETY: the syscall returned a new descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        // SAFETY: the AsyncFd owns the descriptor, so it stays open while registered.
        let fd = unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
            .map_err(|e| VmmError::io("register pidfd", format!("pid {pid}"), e.into()))?;
        Ok(PidFd { pid, fd })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Wait until the process exits. Returns its exit status if it was our child (we reap
    /// it), or None if another process (init, after a daemon restart) is its parent.
    pub async fn exited(&self) -> Option<ExitInfo> {
        match self.fd.readable().await {
            Ok(mut guard) => guard.retain_ready(),
            Err(e) => {
                tracing::warn!(pid = self.pid, error = %e, "pidfd wait failed");
                return None;
            }
        }
        reap(self.pid)
    }

    /// True if the process has exited (non-blocking).
    pub fn has_exited(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n > 0 && pfd.revents & libc::POLLIN != 0
    }

    /// Send a signal through the pidfd (no pid-reuse race).
    pub fn signal(&self, sig: Signal) -> Result<(), VmmError> {
        // SAFETY: pidfd_send_signal with a valid pidfd, a signal number, no siginfo, no flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.get_ref().as_raw_fd(),
                sig as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            let e = nix::Error::last();
            if e == nix::Error::ESRCH {
                return Ok(());
            }
            return Err(VmmError::Sys {
                op: "pidfd_send_signal",
                source: e,
            });
        }
        Ok(())
    }
}

/// How a QEMU we spawned ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitInfo::Code(c) => write!(f, "exit code {c}"),
            ExitInfo::Signal(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "killed by {sig}"),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

fn reap(pid: u32) -> Option<ExitInfo> {
    match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(ExitInfo::Code(code)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(ExitInfo::Signal(sig as i32)),
        _ => None,
    }
}

/// Kill by pid (used when no pidfd is at hand). ESRCH is success.
pub fn kill_pid(pid: u32, sig: Signal) -> Result<(), VmmError> {
    match kill(Pid::from_raw(pid as i32), sig) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(e) => Err(VmmError::Sys {
            op: "kill",
            source: e,
        }),
    }
}

/// True if `pid` is alive (not a zombie) and its command line is a QEMU run with
/// `-uuid <uuid>`: the guard against a stale pidfile whose pid was reused.
pub fn is_our_qemu(pid: u32, uuid: &str) -> bool {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(_) => return false,
    };
    // Field 3 (state) follows the last ')' of the command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    let cmdline = match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(c) => c,
        Err(_) => return false,
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_qemu = args
        .first()
        .map(|a| String::from_utf8_lossy(a).contains("qemu"))
        .unwrap_or(false);
    is_qemu
        && args
            .windows(2)
            .any(|w| w[0] == b"-uuid" && w[1] == uuid.as_bytes())
}

/// The pid of a live QEMU run with `-uuid <uuid>`, if any: whatever pidfiles say (a
/// second daemon, a lost pidfile), before a start. Reads every process's command line.
pub fn find_qemu(uuid: &str) -> Option<u32> {
    let entries = std::fs::read_dir("/proc").ok()?;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // Cheap filter first: most command lines do not hold the uuid at all.
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if cmdline.windows(uuid.len()).any(|w| w == uuid.as_bytes()) && is_our_qemu(pid, uuid) {
            return Some(pid);
        }
    }
    None
}

/// Read a pidfile.
pub fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The last `max` bytes of a log file, lossily decoded and trimmed: QEMU's own words when
/// it refuses to start.
pub fn log_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > max && f.seek(SeekFrom::Start(len - max)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&buf).trim().to_string()
}

/// QEMU's error lines (`-msg timestamp=on` prefixes them with a timestamp) joined into one
/// message, without the timestamps.
pub fn qemu_error_message(log: &str) -> String {
    let lines: Vec<String> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            // "2026-11-28T12:00:00.000000Z qemu-system-x86_64: msg" -> "qemu-system-x86_64: msg"
            match l.split_once(' ') {
                Some((ts, rest)) if ts.len() > 20 && ts.ends_with('Z') => rest.to_string(),
                _ => l.to_string(),
            }
        })
        .collect();
    let start = lines.len().saturating_sub(5);
    lines[start..].join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_error_lines_lose_their_timestamps() {
        let log = "2026-11-28T12:00:00.123456Z qemu-system-x86_64: -m 0: bad\n\n";
        assert_eq!(qemu_error_message(log), "qemu-system-x86_64: -m 0: bad");
    }

    #[test]
    fn our_own_process_is_not_a_qemu() {
        assert!(!is_our_qemu(std::process::id(), "x"));
        assert!(!is_our_qemu(u32::MAX - 1, "x"));
    }

    #[tokio::test]
    async fn pidfd_reports_exit_code_of_a_child() {
        let log = tempfile::tempfile().expect("tempfile");
        let argv = vec!["/bin/sh".to_string(), "-c".into(), "exit 7".into()];
        let pid = spawn_detached(&argv, &log, &[], None).expect("spawn");
        let pidfd = PidFd::open(pid).expect("pidfd");
        let info = tokio::time::timeout(std::time::Duration::from_secs(5), pidfd.exited())
            .await
            .expect("exit within 5s");
        assert_eq!(info, Some(ExitInfo::Code(7)));
    }

    #[tokio::test]
    async fn child_gets_its_own_session_and_passed_fd() {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let log = tempfile::NamedTempFile::new().expect("tempfile");
        let argv = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            // fd 5 must be the pipe's write end; print our session id vs pid.
            "echo hello >&5; cut -d' ' -f6 /proc/$$/stat".into(),
        ];
        let pid = spawn_detached(&argv, log.as_file(), &[(w.as_raw_fd(), 5)], None).expect("spawn");
        drop(w);
        let pidfd = PidFd::open(pid).expect("pidfd");
        pidfd.exited().await;
        let mut got = String::new();
        File::from(r).read_to_string(&mut got).expect("read pipe");
        assert_eq!(got, "hello\n");
        let out = std::fs::read_to_string(log.path()).expect("log");
        let sid: u32 = out
            .lines()
            .next()
            .expect("sid")
            .trim()
            .parse()
            .expect("sid number");
        assert_eq!(sid, pid, "child must lead its own session: {out}");
    }
}

//! The one rule for host paths a request names (a VM's kernel and initrd, an image
//! import's source): the node reads such a file only if the caller may.
//!
//! - A caller on the local socket of a controller on this host (the request reached this
//!   node over its unix socket, so the caller's uid means the same here): the file is
//!   opened with the caller's uid, gid and groups as the filesystem credentials of a
//!   short-lived thread, so the kernel itself checks the file's mode bits (and ACLs) and
//!   search permission on every directory on the way. Root may read anything.
//! - Anyone else (a client certificate over TLS; a local caller of a controller on another
//!   host, whose uid means nothing here; an unidentified caller): only files under the
//!   node's `--import-dir`s, opened with `openat2(RESOLVE_BENEATH)` from the import dir,
//!   so neither `..` nor a symlink leads out of it. http(s) URLs are not paths: the rule
//!   does not apply to them.
//!
//! Either way the path is opened `O_PATH` first (which opens nothing: no FIFO blocks, no
//! device wakes up) and the descriptor is fstat'ed: anything but a regular file is refused
//! at once. Then that very inode is opened for reading through `/proc/self/fd`, with the
//! same credentials. The caller gets the open file: nothing can be swapped between the
//! check and the use.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};

/// Capabilities that would let a thread read past file modes: CAP_DAC_OVERRIDE (1) and
/// CAP_DAC_READ_SEARCH (2).
const DAC_CAPS: u64 = (1 << 1) | (1 << 2);

/// Where a request's host paths may be read from: the node's import dirs.
#[derive(Debug, Clone, Default)]
pub struct HostPaths {
    node: String,
    /// Each import dir as given (absolute) and canonical.
    import_dirs: Vec<(PathBuf, PathBuf)>,
}

/// Why a file was not opened.
#[derive(Debug)]
enum Refusal {
    Os(io::Error),
    NotRegular(&'static str),
    Outside,
    Escapes(PathBuf),
}

impl From<io::Error> for Refusal {
    fn from(e: io::Error) -> Self {
        Refusal::Os(e)
    }
}

impl From<nix::Error> for Refusal {
    fn from(e: nix::Error) -> Self {
        Refusal::Os(e.into())
    }
}

impl HostPaths {
    /// The rule for node `node` with these import dirs (`--import-dir`): each must be an
    /// existing directory.
    pub fn new(node: &str, import_dirs: &[PathBuf]) -> io::Result<HostPaths> {
        let mut dirs = Vec::new();
        for d in import_dirs {
            let given = std::path::absolute(d)?;
            let canonical = d.canonicalize().map_err(|e| {
                io::Error::new(e.kind(), format!("--import-dir {}: {e}", d.display()))
            })?;
            if !canonical.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("--import-dir {}: not a directory", d.display()),
                ));
            }
            dirs.push((given, canonical));
        }
        Ok(HostPaths {
            node: node.to_string(),
            import_dirs: dirs,
        })
    }

    /// Open `path` for reading on behalf of `caller`, who reached this node over its unix
    /// socket if `local`. `what` names the path in messages ("kernel", "image source").
    /// Blocking: call it off the async threads.
    pub fn open(&self, what: &str, path: &str, caller: &Caller, local: bool) -> ApiResult<File> {
        let p = Path::new(path);
        if !p.is_absolute() {
            return Err(ApiError::InvalidArgument(format!(
                "{what} {path}: give an absolute path on node {}",
                self.node
            )));
        }
        let opened = match caller {
            Caller::Unix {
                uid, gid, groups, ..
            } if local => open_as(p, *uid, *gid, groups),
            _ => self.open_beneath(p),
        };
        opened.map_err(|r| self.refused(what, path, caller, local, r))
    }

    /// A file under one of the import dirs, resolved beneath it.
    fn open_beneath(&self, path: &Path) -> Result<File, Refusal> {
        let (rel, dir) = self
            .import_dirs
            .iter()
            .find_map(|(given, canonical)| {
                path.strip_prefix(given)
                    .or_else(|_| path.strip_prefix(canonical))
                    .ok()
                    .map(|rel| (rel, canonical))
            })
            .ok_or(Refusal::Outside)?;
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let dirfd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let fd = match nix::fcntl::openat2(&dirfd, rel, how) {
            Err(nix::Error::EXDEV) => return Err(Refusal::Escapes(dir.clone())),
            r => r?,
        };
        reopen_regular(&fd)
    }

    fn refused(
        &self,
        what: &str,
        path: &str,
        caller: &Caller,
        local: bool,
        r: Refusal,
    ) -> ApiError {
        match r {
            Refusal::Os(e) => match e.raw_os_error() {
                Some(libc::EACCES | libc::EPERM) => ApiError::PermissionDenied(format!(
                    "{what} {path}: permission denied: {caller} may not read it (the file, or \
                     a directory above it, does not allow it)"
                )),
                Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG) => {
                    ApiError::InvalidArgument(format!("{what} {path}: {e}"))
                }
                _ => ApiError::Internal(format!("{what} {path}: {e}")),
            },
            Refusal::NotRegular(kind) => {
                ApiError::InvalidArgument(format!("{what} {path} is a {kind}, not a regular file"))
            }
            Refusal::Escapes(dir) => ApiError::PermissionDenied(format!(
                "{what} {path} leads out of the import dir {} ('..' or a symlink)",
                dir.display()
            )),
            Refusal::Outside => {
                let why = match caller {
                    Caller::Unix { .. } if !local => {
                        "the controller is on another host, so a local user's rights mean \
                         nothing here"
                    }
                    Caller::Unix { .. } | Caller::Unknown => "the caller is not identified",
                    Caller::Certificate { .. } => "over TLS",
                };
                let dirs = if self.import_dirs.is_empty() {
                    "it has none: kcored --import-dir DIR".to_string()
                } else {
                    self.import_dirs
                        .iter()
                        .map(|(g, _)| g.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                ApiError::PermissionDenied(format!(
                    "{what} {path} is not under an import dir of node {} ({dirs}): {why}, \
                     only files there (or http(s) URLs) may be named",
                    self.node
                ))
            }
        }
    }
}

/// The inode `fd` (an O_PATH descriptor) names, opened for reading if it is a regular
/// file, with the calling thread's credentials.
fn reopen_regular(fd: &OwnedFd) -> Result<File, Refusal> {
    let st = nix::sys::stat::fstat(fd)?;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => None,
        libc::S_IFDIR => Some("directory"),
        libc::S_IFIFO => Some("FIFO"),
        libc::S_IFCHR => Some("character device"),
        libc::S_IFBLK => Some("block device"),
        libc::S_IFSOCK => Some("socket"),
        _ => Some("special file"),
    };
    if let Some(kind) = kind {
        return Err(Refusal::NotRegular(kind));
    }
    let file: File = nix::fcntl::open(
        &PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
        Mode::empty(),
    )?
    .into();
    Ok(file)
}

/// Open `path` as uid/gid/groups would: on a thread of its own whose filesystem
/// credentials are theirs, so the kernel makes every permission check. Root opens as
/// itself.
fn open_as(path: &Path, uid: u32, gid: u32, groups: &[u32]) -> Result<File, Refusal> {
    let open = |p: &Path| -> Result<File, Refusal> {
        let fd = nix::fcntl::open(p, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())?;
        reopen_regular(&fd)
    };
    if uid == 0 {
        return open(path);
    }
    let path = path.to_path_buf();
    let groups = groups.to_vec();
    std::thread::Builder::new()
        .name("open-as-caller".into())
        .spawn(move || {
            become_caller(uid, gid, &groups)?;
            open(&path)
        })?
        .join()
        .unwrap_or_else(|_| Err(Refusal::Os(io::Error::other("the open thread panicked"))))
}

/// Take uid/gid/groups as this thread's filesystem credentials. Linux keeps credentials
/// per thread; the raw system calls change this thread's only (glibc's `setgroups` would
/// change every thread's). The thread must end afterwards.
fn become_caller(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    // SAFETY: setgroups(2) reads `groups.len()` gids from a valid pointer.
    if unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setfsgid(2) and setfsuid(2) take an id and touch no memory.
    unsafe {
        libc::syscall(libc::SYS_setfsgid, gid);
        libc::syscall(libc::SYS_setfsuid, uid);
    }
    // They report no errors: read the ids back (an invalid id changes nothing and returns
    // the current one), and make sure no capability overrides file modes any more (moving
    // the fsuid off 0 drops them; a daemon that is not root may still hold them).
    // SAFETY: as above.
    let (fsuid, fsgid) = unsafe {
        (
            libc::syscall(libc::SYS_setfsuid, u32::MAX),
            libc::syscall(libc::SYS_setfsgid, u32::MAX),
        )
    };
    let caps = effective_caps()?;
    if fsuid != i64::from(uid) || fsgid != i64::from(gid) || caps & DAC_CAPS != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("cannot take uid {uid}'s rights to check the path (is kcored root?)"),
        ));
    }
    Ok(())
}

/// This thread's effective capabilities (CapEff in /proc/thread-self/status).
fn effective_caps() -> io::Result<u64> {
    let status = std::fs::read_to_string("/proc/thread-self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| io::Error::other("no CapEff in /proc/thread-self/status"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    use super::*;

    /// A uid and gid no file here belongs to.
    const NOBODY: u32 = 65534;

    fn user(uid: u32, groups: &[u32]) -> Caller {
        Caller::Unix {
            uid,
            gid: uid,
            pid: None,
            user: None,
            groups: groups.to_vec(),
        }
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn code(r: ApiResult<File>) -> tonic::Code {
        match r {
            Ok(_) => tonic::Code::Ok,
            Err(e) => e.code(),
        }
    }

    #[test]
    fn a_local_caller_reads_what_its_uid_and_groups_may() {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let paths = HostPaths::new("n1", &[]).expect("rule");
        let dir = tempfile::tempdir().expect("tempdir");
        chmod(dir.path(), 0o755);
        let open_dir = dir.path().join("open");
        let closed_dir = dir.path().join("closed");
        std::fs::create_dir(&open_dir).expect("mkdir");
        std::fs::create_dir(&closed_dir).expect("mkdir");
        chmod(&open_dir, 0o755);
        chmod(&closed_dir, 0o700);
        let public = open_dir.join("public");
        let secret = closed_dir.join("secret");
        let group_only = open_dir.join("group-only");
        for f in [&public, &secret, &group_only] {
            std::fs::write(f, b"data").expect("write");
        }
        chmod(&public, 0o644);
        chmod(&secret, 0o644); // readable, but its directory is not searchable
        std::os::unix::fs::chown(&group_only, Some(0), Some(4242)).expect("chown");
        chmod(&group_only, 0o640);
        let s = |p: &Path| p.to_str().expect("utf-8").to_string();
        let nobody = user(NOBODY, &[NOBODY]);
        let member = user(NOBODY, &[NOBODY, 4242]);
        let root = user(0, &[0]);

        assert_eq!(
            code(paths.open("f", &s(&public), &nobody, true)),
            tonic::Code::Ok
        );
        let e = paths
            .open("image source", &s(&secret), &nobody, true)
            .expect_err("secret");
        let st: tonic::Status = e.into();
        assert_eq!(st.code(), tonic::Code::PermissionDenied, "{st:?}");
        assert!(st.message().contains(&s(&secret)), "{}", st.message());
        assert_eq!(
            code(paths.open("f", &s(&group_only), &nobody, true)),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            code(paths.open("f", &s(&group_only), &member, true)),
            tonic::Code::Ok
        );
        assert_eq!(
            code(paths.open("f", &s(&secret), &root, true)),
            tonic::Code::Ok
        );
        let missing = paths
            .open("kernel", "/nonexistent/vmlinuz", &root, true)
            .expect_err("missing");
        let st: tonic::Status = missing.into();
        assert_eq!(st.code(), tonic::Code::InvalidArgument);
        assert!(st.message().contains("No such file or directory"), "{st:?}");
        // The data read is the file's.
        let mut f = paths.open("f", &s(&public), &nobody, true).expect("open");
        let mut got = String::new();
        std::io::Read::read_to_string(&mut f, &mut got).expect("read");
        assert_eq!(got, "data");
        // This thread kept its own rights.
        std::fs::read(&secret).expect("root still reads it");
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_at_once() {
        let paths = HostPaths::new("n1", &[]).expect("rule");
        let dir = tempfile::tempdir().expect("tempdir");
        chmod(dir.path(), 0o755);
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o666)).expect("mkfifo");
        let t = Instant::now();
        for caller in [user(0, &[0]), user(NOBODY, &[NOBODY])] {
            for (p, kind) in [
                (fifo.to_str().expect("utf-8"), "FIFO"),
                ("/dev/null", "character device"),
                ("/", "directory"),
            ] {
                let e = paths.open("image source", p, &caller, true).expect_err(p);
                let st: tonic::Status = e.into();
                assert_eq!(st.code(), tonic::Code::InvalidArgument, "{p}: {st:?}");
                assert!(st.message().contains(kind), "{}", st.message());
            }
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    #[test]
    fn others_read_only_beneath_the_import_dirs() {
        let top = tempfile::tempdir().expect("tempdir");
        let inside = top.path().join("import");
        let outside = top.path().join("elsewhere");
        std::fs::create_dir_all(inside.join("sub")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(inside.join("sub/img"), b"x").expect("write");
        std::fs::write(outside.join("secret"), b"x").expect("write");
        std::os::unix::fs::symlink(outside.join("secret"), inside.join("out")).expect("ln");
        std::os::unix::fs::symlink("sub/img", inside.join("in")).expect("ln");
        let paths = HostPaths::new("n1", std::slice::from_ref(&inside)).expect("rule");
        let s = |p: PathBuf| p.to_str().expect("utf-8").to_string();
        let cert = Caller::Certificate {
            name: "ops".into(),
            role: "admin".into(),
        };
        let remote_root = user(0, &[0]);
        for caller in [&cert, &remote_root, &Caller::Unknown] {
            // A local root over a remote link is no more than anyone else.
            let local = matches!(caller, Caller::Unknown);
            for ok in [inside.join("sub/img"), inside.join("in")] {
                assert_eq!(
                    code(paths.open("f", &s(ok), caller, local)),
                    tonic::Code::Ok
                );
            }
            for (bad, needle) in [
                (
                    outside.join("secret"),
                    "is not under an import dir of node n1",
                ),
                (
                    inside.join("../elsewhere/secret"),
                    "leads out of the import dir",
                ),
                (inside.join("out"), "leads out of the import dir"),
            ] {
                let e = paths
                    .open("f", &s(bad.clone()), caller, local)
                    .expect_err("out");
                let st: tonic::Status = e.into();
                assert_eq!(st.code(), tonic::Code::PermissionDenied, "{bad:?}");
                assert!(st.message().contains(needle), "{}", st.message());
            }
            assert_eq!(
                code(paths.open("f", &s(inside.clone()), caller, local)),
                tonic::Code::InvalidArgument
            );
        }
        let none = HostPaths::new("n1", &[]).expect("rule");
        let e = none
            .open("kernel", &s(inside.join("sub/img")), &cert, true)
            .expect_err("no import dirs");
        assert!(
            e.to_string().contains("--import-dir"),
            "the message says how to allow it"
        );
        assert!(HostPaths::new("n1", &[top.path().join("missing")]).is_err());
        assert!(HostPaths::new("n1", &[inside.join("sub/img")]).is_err());
    }
}

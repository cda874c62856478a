//! The daemon's two directories: taken with an exclusive lock before anything in them is
//! touched, and kept private.
//!
//! One kcored per data dir and per run dir: a second daemon on either would mark the first
//! one's VMs stopped, delete their taps, adopt its dnsmasqs and start a second QEMU on the
//! same disks. Each dir gets a `kcored.lock` held with `flock(LOCK_EX)` for the daemon's
//! life (the kernel drops it when the process dies, kill -9 included); the file holds the
//! holder's pid, so a refusal can name it.
//!
//! Privacy: the daemon runs with umask 077, so everything it (or a tool it runs) creates is
//! its own alone; [`tighten`] brings files made by older versions (0644 volumes in 0755
//! dirs) to the same rule at start.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The lock file's name in each directory.
pub const LOCK_FILE: &str = "kcored.lock";

/// The locks a running daemon holds; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DirLocks {
    _files: Vec<File>,
}

/// Lock `dirs` (created if missing, mode `mode` when created), in order. Fails, changing
/// nothing, if another process holds any of them.
pub fn lock_all(dirs: &[(&Path, &str, u32)]) -> anyhow::Result<DirLocks> {
    let mut files = Vec::new();
    for (dir, flag, mode) in dirs {
        files.push(lock_one(dir, flag, *mode)?);
    }
    Ok(DirLocks { _files: files })
}

fn lock_one(dir: &Path, flag: &str, mode: u32) -> anyhow::Result<File> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{flag}: create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("{flag}: chmod {}", dir.display()))?;
    }
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("{flag}: open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another kcored".to_string()
            } else {
                format!("another kcored (pid {holder})")
            };
            anyhow::bail!(
                "{flag} {} is in use by {who}: one daemon per data dir and per run dir \
                 ({} is locked)",
                dir.display(),
                path.display()
            );
        }
        return Err(err).with_context(|| format!("{flag}: flock {}", path.display()));
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_data()?;
    Ok(file)
}

/// Lock the data dir and the run dir (made 0711 if missing), then make private what older
/// versions left readable in them: VM specs, pools (and the volumes and images of the
/// configured dir pools), network definitions, run dirs and the controller's database.
pub fn take(
    data_dir: &Path,
    run_dir: &Path,
    pools: &[kcore_storage::PoolConfig],
) -> anyhow::Result<DirLocks> {
    let locks = lock_all(&[
        (data_dir, "--data-dir", 0o711),
        (run_dir, "--run-dir", 0o711),
    ])?;
    let mut private = vec![
        data_dir.join("vms"),
        data_dir.join("pools"),
        data_dir.join("networks"),
        run_dir.join("vms"),
        run_dir.join("networks"),
    ];
    for f in ["controller.db", "controller.db-wal", "controller.db-shm"] {
        private.push(data_dir.join(f));
    }
    for p in pools {
        if let kcore_storage::PoolKind::Dir { path } = &p.kind {
            private.extend([path.join("volumes"), path.join("images")]);
        }
    }
    tighten(&private);
    Ok(locks)
}

/// Make what older versions left readable by others private: the given directories and
/// everything below them lose their group and other bits (0700 dirs, 0600 files). Missing
/// paths are skipped; symlinks are neither followed nor changed.
pub fn tighten(paths: &[PathBuf]) {
    for p in paths {
        tighten_tree(p);
    }
}

fn tighten_tree(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        let new = mode & !0o077;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(new)) {
            Ok(()) => tracing::info!(
                path = %path.display(),
                from = format!("{mode:o}"),
                to = format!("{new:o}"),
                "made private"
            ),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot chmod"),
        }
    }
    if meta.is_dir()
        && let Ok(entries) = std::fs::read_dir(path)
    {
        for e in entries.flatten() {
            tighten_tree(&e.path());
        }
    }
}

/// Set the process umask so that whatever the daemon and the tools it runs create is
/// readable by root only, unless a mode is set explicitly.
pub fn private_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("data");
        let first = lock_all(&[(&d, "--data-dir", 0o711)]).expect("first lock");
        // flock locks belong to the open file description: a second open in this same
        // process conflicts just as another process would.
        let e = lock_all(&[(&d, "--data-dir", 0o711)]).expect_err("second lock");
        let msg = format!("{e:#}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("--data-dir"), "{msg}");
        drop(first);
        lock_all(&[(&d, "--data-dir", 0o711)]).expect("free again");
    }

    #[test]
    fn tighten_removes_group_and_other_bits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("volumes");
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let f = sub.join("v.qcow2");
        std::fs::write(&f, b"x").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        tighten(&[sub.clone(), dir.path().join("missing")]);
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").mode() & 0o777;
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&f), 0o600);
    }
}

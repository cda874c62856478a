//! Files written whole or not at all, the one way the daemon writes its own state files
//! (VM specs and create intents, network definitions, the PKI): the data goes to a
//! temporary file beside the target (same directory, so same filesystem) created with the
//! file's mode, is flushed to disk, and only then takes the target's name; the directory is
//! flushed too, so the name survives a crash. Readers see the old file or the new one, never
//! half of one, and a crash leaves at most a temporary file (`.NAME.tmp.PID.N`).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Write `path` with `mode` (for a new file), replacing the file if there is one.
pub fn atomic_write(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    publish(path, data, mode, Place::Rename)
}

/// Write `path` with `mode` unless a file of that name exists (then `AlreadyExists`, and
/// that file is untouched): the temporary file is hard-linked into place, so of two
/// concurrent writers one fails rather than replaces the other's file.
pub fn atomic_write_new(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    publish(path, data, mode, Place::Link)
}

enum Place {
    Rename,
    Link,
}

fn publish(path: &Path, data: &[u8], mode: u32, place: Place) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tmp_path(dir, path)?;
    let placed = write_synced(&tmp, data, mode).and_then(|()| match place {
        Place::Rename => std::fs::rename(&tmp, path),
        Place::Link => std::fs::hard_link(&tmp, path),
    });
    // After a rename the temporary name is gone; otherwise it goes now.
    if placed.is_err() || matches!(place, Place::Link) {
        let _ = std::fs::remove_file(&tmp);
    }
    placed?;
    std::fs::File::open(dir)?.sync_all()
}

/// `.NAME.tmp.PID.N` in `dir`: unique per process and call, so concurrent writers of one
/// file never share a temporary file.
fn tmp_path(dir: &Path, path: &Path) -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!(
        ".{}.tmp.{}.{n}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

fn write_synced(tmp: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    fn entries(dir: &Path) -> usize {
        std::fs::read_dir(dir).expect("ls").count()
    }

    #[test]
    fn atomic_write_replaces_with_the_mode_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("spec.json");
        atomic_write(&p, b"one", 0o600).expect("write");
        atomic_write(&p, b"two", 0o600).expect("replace");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(entries(tmp.path()), 1, "no temp left");
        let e = atomic_write(&tmp.path().join("no/such/dir"), b"x", 0o600).expect_err("no dir");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(entries(tmp.path()), 1);
    }

    #[test]
    fn atomic_write_new_never_replaces() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("x.key");
        atomic_write_new(&p, b"one", 0o600).expect("write");
        let e = atomic_write_new(&p, b"two", 0o600).expect_err("exists");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).expect("read"), b"one");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(entries(tmp.path()), 1, "no temp left");
    }
}

//! A template's files and the memory the node keeps for its clones.
//!
//! `<data-dir>/templates/<name>/` (0700, root's):
//!
//! | file | what |
//! |---|---|
//! | `template.json` | [`TemplateMeta`]: the spec clones are made from, sizes and SHA-256s |
//! | `memory.ram` | the guest's RAM, byte for byte (sparse: zero pages are holes) |
//! | `devices.mig` | the device state: a QEMU migration stream saved with `x-ignore-shared` |
//! | `<disk>.qcow2` | the frozen base of each disk (0400): clones' disks are overlays of it |
//! | `seed.img`, `OVMF_VARS.fd` | the cloud-init seed (shared read-only) and the UEFI variable store (copied per clone) |
//!
//! Clones do not map `memory.ram` itself: QEMU 7.2 opens a file backend read-write, so a
//! QEMU given the file could write it under every other clone. The node copies it once (per
//! daemon start) into a memfd, checks its SHA-256, and seals it against writes
//! (`F_SEAL_WRITE|F_SEAL_GROW|F_SEAL_SHRINK|F_SEAL_SEAL`); every clone maps that memfd
//! privately, so they share its clean pages and nobody can change them.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use kcore_vmm::spec::VmSpec;
use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

pub const META: &str = "template.json";
pub const MEMORY: &str = "memory.ram";
pub const DEVICES: &str = "devices.mig";

/// A file of the template with what it must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    pub size: u64,
    pub sha256: String,
}

/// `template.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TemplateMeta {
    pub name: String,
    pub id: String,
    /// The VM it was taken from (its name and id then).
    pub source_vm: String,
    pub source_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// What clones run: the source's spec with the template's files (no NICs, no uid).
    pub spec: VmSpec,
    pub memory: FileSum,
    pub devices: FileSum,
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn io_err(op: &str, path: &Path, e: std::io::Error) -> ApiError {
    ApiError::Internal(format!("{op} {}: {e}", path.display()))
}

/// The SHA-256 and size of a file.
pub fn sum_file(path: &Path) -> ApiResult<FileSum> {
    let mut f = File::open(path).map_err(|e| io_err("open", path, e))?;
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err("read", path, e))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok(FileSum {
        size,
        sha256: hex(ctx.finish().as_ref()),
    })
}

/// A new memfd of `size` bytes that can be sealed later.
pub fn new_memfd(name: &str, size: u64) -> ApiResult<OwnedFd> {
    let cname = std::ffi::CString::new(format!("kcore-template-{name}"))
        .map_err(|e| ApiError::Internal(format!("memfd name: {e}")))?;
    // SAFETY: a valid NUL-terminated name and flags; the result is checked.
    let fd =
        unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(ApiError::Internal(format!(
            "memfd_create: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    File::from(
        owned
            .try_clone()
            .map_err(|e| ApiError::Internal(format!("dup memfd: {e}")))?,
    )
    .set_len(size)
    .map_err(|e| ApiError::Internal(format!("size memfd: {e}")))?;
    Ok(owned)
}

/// Seal a memfd: nobody (its holders included) can write, grow or shrink it any more.
pub fn seal(fd: &OwnedFd) -> ApiResult<()> {
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on a descriptor we own; the result is checked.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(ApiError::Internal(format!(
            "seal the template's memory: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

const CHUNK: usize = 1 << 20;

/// Copy `from` (a file or memfd) into `to` chunk by chunk, leaving the all-zero chunks of
/// `to` as holes; returns the SHA-256 and size of what was read.
fn copy_sparse(from: &File, to: &File, size: u64, what: &Path) -> ApiResult<FileSum> {
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < size {
        let n = (size - off).min(CHUNK as u64) as usize;
        from.read_exact_at(&mut buf[..n], off)
            .map_err(|e| io_err("read", what, e))?;
        ctx.update(&buf[..n]);
        if buf[..n].iter().any(|b| *b != 0) {
            to.write_all_at(&buf[..n], off)
                .map_err(|e| io_err("write", what, e))?;
        }
        off += n as u64;
    }
    Ok(FileSum {
        size,
        sha256: hex(ctx.finish().as_ref()),
    })
}

/// Write the helper QEMU's RAM (`memfd`) to `path` (0600), sparse.
pub fn save_memory(memfd: &OwnedFd, size: u64, path: &Path) -> ApiResult<FileSum> {
    let from = File::from(
        memfd
            .try_clone()
            .map_err(|e| ApiError::Internal(format!("dup memfd: {e}")))?,
    );
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_err("create", path, e))?;
    to.set_len(size).map_err(|e| io_err("size", path, e))?;
    let sum = copy_sparse(&from, &to, size, path)?;
    to.flush()
        .and_then(|()| to.sync_all())
        .map_err(|e| io_err("sync", path, e))?;
    Ok(sum)
}

/// The template's memory in a new sealed memfd, checked against `want`.
pub fn load_memory(name: &str, path: &Path, want: &FileSum) -> ApiResult<OwnedFd> {
    let from = File::open(path).map_err(|e| damaged(name, format!("{MEMORY}: {e}")))?;
    let len = from.metadata().map_err(|e| io_err("stat", path, e))?.len();
    if len != want.size {
        return Err(damaged(
            name,
            format!("{MEMORY} is {len} bytes, {} expected", want.size),
        ));
    }
    let memfd = new_memfd(name, len)?;
    let to = File::from(
        memfd
            .try_clone()
            .map_err(|e| ApiError::Internal(format!("dup memfd: {e}")))?,
    );
    let got = copy_sparse(&from, &to, len, path)?;
    if got.sha256 != want.sha256 {
        return Err(damaged(
            name,
            format!("{MEMORY} does not match its SHA-256 in {META}"),
        ));
    }
    seal(&memfd)?;
    Ok(memfd)
}

/// A template whose files are not what it recorded.
pub fn damaged(name: &str, what: String) -> ApiError {
    ApiError::FailedPrecondition(format!(
        "template {name} is damaged ({what}): delete it and take it again"
    ))
}

/// Read `template.json` of the template in `dir` and check what cheap checks can: every
/// file it names is there, the memory has its size, the device state its SHA-256.
pub fn load_meta(name: &str, dir: &Path) -> ApiResult<TemplateMeta> {
    let path = dir.join(META);
    let data = std::fs::read(&path).map_err(|e| damaged(name, format!("{META}: {e}")))?;
    let meta: TemplateMeta = serde_json::from_slice(&data)
        .map_err(|e| damaged(name, format!("{META} does not parse: {e}")))?;
    if meta.name != name {
        return Err(damaged(name, format!("{META} names {:?}", meta.name)));
    }
    let mut files: Vec<PathBuf> = meta.spec.disks.iter().map(|d| d.path.clone()).collect();
    files.extend(meta.spec.seed.clone());
    files.extend(meta.spec.uefi_vars.clone());
    for f in &files {
        if !f.starts_with(dir) || !f.is_file() {
            return Err(damaged(name, format!("{} is missing", f.display())));
        }
    }
    let mem = dir.join(MEMORY);
    match std::fs::metadata(&mem) {
        Ok(m) if m.len() == meta.memory.size => {}
        Ok(m) => {
            return Err(damaged(
                name,
                format!(
                    "{MEMORY} is {} bytes, {} expected",
                    m.len(),
                    meta.memory.size
                ),
            ));
        }
        Err(e) => return Err(damaged(name, format!("{MEMORY}: {e}"))),
    }
    check_devices(name, dir, &meta)?;
    Ok(meta)
}

/// The device state is what the template recorded (it is small: checked at every use).
pub fn check_devices(name: &str, dir: &Path, meta: &TemplateMeta) -> ApiResult<()> {
    let dev = dir.join(DEVICES);
    if !dev.is_file() {
        return Err(damaged(name, format!("{DEVICES} is missing")));
    }
    if sum_file(&dev)? != meta.devices {
        return Err(damaged(
            name,
            format!("{DEVICES} does not match its SHA-256 in {META}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_round_trips_sparse_and_sealed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = 3 * CHUNK as u64;
        let fd = new_memfd("t", size).expect("memfd");
        let f = File::from(fd.try_clone().expect("dup"));
        f.write_all_at(b"hello", CHUNK as u64 + 7).expect("write");
        let path = dir.path().join(MEMORY);
        let sum = save_memory(&fd, size, &path).expect("save");
        assert_eq!(sum.size, size);
        // Only the middle chunk holds data.
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&path).expect("stat").blocks() * 512;
        assert!(blocks <= CHUNK as u64, "{blocks} bytes allocated");
        let sealed = load_memory("t", &path, &sum).expect("load");
        let g = File::from(sealed.try_clone().expect("dup"));
        let mut buf = [0u8; 5];
        g.read_exact_at(&mut buf, CHUNK as u64 + 7).expect("read");
        assert_eq!(&buf, b"hello");
        assert!(
            g.write_all_at(b"x", 0).is_err(),
            "a sealed memfd took a write"
        );
        let mut bad = sum.clone();
        bad.sha256 = "00".into();
        let e = load_memory("t", &path, &bad)
            .expect_err("tampered")
            .to_string();
        assert!(e.contains("template t is damaged"), "{e}");
    }
}

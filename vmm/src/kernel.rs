//! The uncompressed kernel a fast-profile VM boots (PVH), made once per kernel file.
//!
//! A distribution kernel is a bzImage: real-mode set-up code plus the kernel compressed
//! (lz4, zstd, xz or gzip) and a decompressor. Under TCG the guest spends ~0.2-0.4 s
//! unpacking it on every boot. QEMU can instead load the kernel's ELF image itself and
//! enter it at its PVH entry point (the `XEN_ELFNOTE_PHYS32_ENTRY` note, in every x86
//! kernel built with `CONFIG_PVH`): no decompression, no real-mode set-up. The same
//! kernel code runs; what the guest gives up is the decompressor's KASLR (the kernel runs
//! at its link address), which docs/profiles.md says.
//!
//! [`KernelCache::pvh`] unpacks the bzImage's payload into `<cache>/<key>.vmlinux`
//! (written to a temporary file, synced and renamed, with the owner and mode of the
//! kernel it came from, so who could read one can read the other) and opens it. The key
//! is the kernel's path and its identity (device, inode, size, mtime): a kernel replaced
//! in place gets a new entry, and the entries of its old contents are removed. QEMU gets
//! the open file (`/proc/self/fd/N`), so removing an entry never races a start.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Why a kernel is booted as it is, not as an uncompressed PVH image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoPvh {
    /// Not a bzImage (e.g. already an ELF `vmlinux`, which QEMU boots by PVH itself).
    #[error("not a bzImage")]
    NotBzImage,
    /// A bzImage whose payload is compressed in a format kcore does not unpack.
    #[error("its payload is compressed with {0}, which kcore does not unpack")]
    Compression(String),
    /// The payload could not be unpacked.
    #[error("its {format} payload does not unpack: {error}")]
    Corrupt { format: &'static str, error: String },
    /// The unpacked kernel is not an x86-64 ELF image with a PVH entry point.
    #[error("the unpacked kernel has no PVH entry point (a kernel without CONFIG_PVH)")]
    NoEntry,
    /// Reading the kernel or writing the cache failed.
    #[error("{0}")]
    Io(String),
}

/// The cache of uncompressed kernels of one node.
#[derive(Debug)]
pub struct KernelCache {
    dir: PathBuf,
    /// Kernels found not to have a PVH image, by key: not read again until they change.
    refused: Mutex<HashMap<String, NoPvh>>,
    /// One unpacking at a time: two VMs starting on a new kernel unpack it once.
    making: Mutex<()>,
}

impl KernelCache {
    pub fn new(dir: PathBuf) -> Self {
        KernelCache {
            dir,
            refused: Mutex::new(HashMap::new()),
            making: Mutex::new(()),
        }
    }

    /// The uncompressed PVH image of `kernel`, opened read-only: from the cache, or made
    /// now (once per kernel). Blocking: call off the async runtime.
    pub fn pvh(&self, kernel: &Path) -> Result<File, NoPvh> {
        let meta = std::fs::metadata(kernel).map_err(|e| io("read", kernel, e))?;
        let prefix = format!("{:016x}", fnv1a(kernel.as_os_str().as_encoded_bytes()));
        let stamp = format!(
            "{}:{}:{}:{}:{}",
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec()
        );
        let key = format!("{prefix}-{:016x}", fnv1a(stamp.as_bytes()));
        if let Some(why) = self.refused().get(&key) {
            return Err(why.clone());
        }
        let path = self.dir.join(format!("{key}.vmlinux"));
        if let Ok(f) = File::open(&path) {
            return Ok(f);
        }
        let _one = self.making.lock().unwrap_or_else(PoisonError::into_inner);
        if let Ok(f) = File::open(&path) {
            return Ok(f);
        }
        let made = make(kernel, &meta, &self.dir, &path);
        if let Err(why) = &made
            && !matches!(why, NoPvh::Io(_))
        {
            self.refused().insert(key.clone(), why.clone());
        }
        let file = made?;
        self.remove_stale(&prefix, &key);
        Ok(file)
    }

    fn refused(&self) -> std::sync::MutexGuard<'_, HashMap<String, NoPvh>> {
        self.refused.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remove the entries of the same kernel path made from earlier contents.
    fn remove_stale(&self, prefix: &str, key: &str) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(prefix)
                && name.ends_with(".vmlinux")
                && !name.starts_with(key)
                && let Err(err) = std::fs::remove_file(e.path())
            {
                tracing::debug!(error = %err, path = %e.path().display(), "stale kernel");
            }
        }
    }
}

/// Unpack `kernel` into `dest`, with `meta`'s owner and mode.
fn make(kernel: &Path, meta: &std::fs::Metadata, dir: &Path, dest: &Path) -> Result<File, NoPvh> {
    let mut f = File::open(kernel).map_err(|e| io("open", kernel, e))?;
    // The set-up header first: an ELF kernel is not read whole to learn it is not a bzImage.
    let mut image = vec![0; 0x250];
    f.read_exact(&mut image).map_err(|_| NoPvh::NotBzImage)?;
    if image.get(0x202..0x206) != Some(b"HdrS") {
        return Err(NoPvh::NotBzImage);
    }
    f.read_to_end(&mut image)
        .map_err(|e| io("read", kernel, e))?;
    let started = std::time::Instant::now();
    let (format, payload) = payload(&image)?;
    let elf = unpack(format, payload)?;
    if !has_pvh_entry(&elf) {
        return Err(NoPvh::NoEntry);
    }
    // 0700: QEMU gets the image as a descriptor and never looks it up by path.
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| io("create", dir, e))?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&elf)?;
        f.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o644))?;
        nix::unistd::fchown(
            &f,
            Some(nix::unistd::Uid::from_raw(meta.uid())),
            Some(nix::unistd::Gid::from_raw(meta.gid())),
        )?;
        f.sync_all()?;
        std::fs::rename(&tmp, dest)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", dest, e));
    }
    tracing::info!(
        kernel = %kernel.display(),
        image = %dest.display(),
        format,
        mib = elf.len() >> 20,
        ms = started.elapsed().as_millis() as u64,
        "unpacked the kernel for PVH boot"
    );
    File::open(dest).map_err(|e| io("open", dest, e))
}

fn io(op: &str, p: &Path, e: std::io::Error) -> NoPvh {
    NoPvh::Io(format!("cannot {op} {}: {e}", p.display()))
}

/// FNV-1a, 64 bits: stable across Rust versions, so cache names survive an upgrade.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The compressed kernel inside a bzImage and its format, from the boot protocol's
/// set-up header (`payload_offset`/`payload_length`, boot protocol >= 2.08).
fn payload(image: &[u8]) -> Result<(&'static str, &[u8]), NoPvh> {
    if image.get(0x202..0x206) != Some(b"HdrS") || u16_at(image, 0x206).unwrap_or(0) < 0x0208 {
        return Err(NoPvh::NotBzImage);
    }
    let setup_sects = match image.get(0x1f1) {
        Some(0) => 4,
        Some(n) => usize::from(*n),
        None => return Err(NoPvh::NotBzImage),
    };
    let (Some(off), Some(len)) = (u32_at(image, 0x248), u32_at(image, 0x24c)) else {
        return Err(NoPvh::NotBzImage);
    };
    let start = (setup_sects + 1) * 512 + off as usize;
    let data = image
        .get(start..start + len as usize)
        .ok_or(NoPvh::NotBzImage)?;
    let format = match data {
        [0x1f, 0x8b, ..] => "gzip",
        [0x02, 0x21, 0x4c, 0x18, ..] => "lz4",
        [0x28, 0xb5, 0x2f, 0xfd, ..] => "zstd",
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => "xz",
        [b'B', b'Z', b'h', ..] => return Err(NoPvh::Compression("bzip2".into())),
        [0x5d, 0, 0, ..] => return Err(NoPvh::Compression("lzma".into())),
        [0x89, b'L', b'Z', b'O', ..] => return Err(NoPvh::Compression("lzo".into())),
        [a, b, c, d, ..] => {
            return Err(NoPvh::Compression(format!(
                "an unknown format (magic {a:02x}{b:02x}{c:02x}{d:02x})"
            )));
        }
        _ => return Err(NoPvh::NotBzImage),
    };
    Ok((format, data))
}

fn unpack(format: &'static str, data: &[u8]) -> Result<Vec<u8>, NoPvh> {
    let corrupt = |e: &dyn std::fmt::Display| NoPvh::Corrupt {
        format,
        error: e.to_string(),
    };
    let mut out = Vec::new();
    match format {
        // The kernel's build appends the uncompressed size (4 bytes) after each stream:
        // the readers stop at the end of the first stream and never see it.
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .map_err(|e| corrupt(&e))?;
        }
        "zstd" => {
            ruzstd::decoding::StreamingDecoder::new(data)
                .map_err(|e| corrupt(&e))?
                .read_to_end(&mut out)
                .map_err(|e| corrupt(&e))?;
        }
        "xz" => {
            lzma_rust2::XzReader::new(data, false)
                .read_to_end(&mut out)
                .map_err(|e| corrupt(&e))?;
        }
        "lz4" => out = unpack_lz4_legacy(data).map_err(|e| corrupt(&e))?,
        _ => return Err(NoPvh::Compression(format.into())),
    }
    Ok(out)
}

/// lz4's legacy frame (`lz4 -l`, what the kernel uses): the magic, then blocks of a
/// little-endian compressed size and the block, each unpacking to at most 8 MiB. The
/// kernel's appended size ends it (too short or too large to be a block).
fn unpack_lz4_legacy(data: &[u8]) -> Result<Vec<u8>, String> {
    const MAGIC: u32 = 0x184c_2102;
    const BLOCK: usize = 8 << 20;
    let mut out = Vec::new();
    let mut at = 4;
    while let Some(size) = u32_at(data, at) {
        if size == MAGIC {
            at += 4;
            continue;
        }
        let size = size as usize;
        let Some(block) = data.get(at + 4..at + 4 + size) else {
            break;
        };
        let done = out.len();
        out.resize(done + BLOCK, 0);
        let n = lz4_flex::block::decompress_into(block, &mut out[done..])
            .map_err(|e| format!("block at byte {at}: {e}"))?;
        out.truncate(done + n);
        at += 4 + size;
    }
    if out.is_empty() {
        return Err("no block".into());
    }
    Ok(out)
}

/// Whether `elf` is a 64-bit x86 ELF image with a Xen `PHYS32_ENTRY` note (type 18), the
/// entry point QEMU's PVH boot jumps to.
fn has_pvh_entry(elf: &[u8]) -> bool {
    const PT_NOTE: u32 = 4;
    const PHYS32_ENTRY: u32 = 18;
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || u16_at(elf, 18) != Some(62) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) =
        (u64_at(elf, 32), u16_at(elf, 54), u16_at(elf, 56))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        let ph = (phoff as usize).saturating_add(i * usize::from(phentsize));
        if u32_at(elf, ph) != Some(PT_NOTE) {
            return false;
        }
        let (Some(off), Some(size)) = (u64_at(elf, ph + 8), u64_at(elf, ph + 32)) else {
            return false;
        };
        let Some(notes) = elf.get(off as usize..off.saturating_add(size) as usize) else {
            return false;
        };
        let mut at = 0;
        while let (Some(namesz), Some(descsz), Some(kind)) = (
            u32_at(notes, at),
            u32_at(notes, at + 4),
            u32_at(notes, at + 8),
        ) {
            let name = notes.get(at + 12..(at + 12).saturating_add(namesz as usize));
            if kind == PHYS32_ENTRY && name == Some(b"Xen\0") {
                return true;
            }
            let pad = |n: u32| (n as usize).div_ceil(4) * 4;
            at += 12 + pad(namesz) + pad(descsz);
        }
        false
    })
}

#[cfg(test)]
#[path = "kernel_tests.rs"]
mod tests;

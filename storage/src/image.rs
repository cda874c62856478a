//! Images: read-only disk templates in a directory (a dir pool's `images/`), imported from
//! a local file or an http(s) URL.
//!
//! An image is `NAME.qcow2` or `NAME.raw`, with its sha256 beside it in `NAME.sha256`
//! (`sha256sum` format). An import streams into a temporary `.import-*` file in the same
//! directory while hashing, checks the checksum and the format, then renames the file into
//! place without clobbering: any failure drops the temporary file, so no half image is
//! ever visible under an image name.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::runner::Runner;
use crate::source::Source;
use crate::{StorageError, VolumeFormat, name, paths, qemu_img};

/// Prefix of the temporary files of imports in progress.
const TEMP_PREFIX: &str = ".import-";
/// The size of one read while importing.
const CHUNK: usize = 1 << 20;

/// What kcore knows about one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub name: String,
    pub path: PathBuf,
    pub format: VolumeFormat,
    pub virtual_size: u64,
    pub actual_size: u64,
    /// Lowercase hex; None for an image placed by hand without a `.sha256` file.
    pub sha256: Option<String>,
}

/// A directory of images.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    runner: Arc<dyn Runner>,
    /// `qemu-img info` results by image name, valid while the file's size and mtime stay:
    /// cloning a VM's disk from an image then runs qemu-img once, not twice.
    sizes: Arc<std::sync::Mutex<std::collections::HashMap<String, SizeEntry>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SizeEntry {
    len: u64,
    mtime: std::time::SystemTime,
    virtual_size: u64,
    actual_size: u64,
}

impl ImageStore {
    /// Open (and create if missing) the image directory `dir`.
    pub fn open(dir: &Path, runner: Arc<dyn Runner>) -> Result<Self, StorageError> {
        let dir = paths::canonical_dir(dir, None, true)?;
        Ok(Self::from_canonical(dir, runner))
    }

    pub(crate) fn from_canonical(dir: PathBuf, runner: Arc<dyn Runner>) -> Self {
        ImageStore {
            dir,
            runner,
            sizes: Arc::default(),
        }
    }

    /// Virtual and actual size of an image file, from the cache when the file is unchanged.
    fn sizes_of(
        &self,
        name: &str,
        path: &Path,
        format: VolumeFormat,
    ) -> Result<(u64, u64), StorageError> {
        let meta = std::fs::metadata(path).map_err(|e| StorageError::io("stat", path, e))?;
        let (len, mtime) = (meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH));
        let mut cache = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = cache.get(name)
            && e.len == len
            && e.mtime == mtime
        {
            return Ok((e.virtual_size, e.actual_size));
        }
        let info = qemu_img::info(self.runner.as_ref(), path, Some(format))?;
        cache.insert(
            name.to_string(),
            SizeEntry {
                len,
                mtime,
                virtual_size: info.virtual_size,
                actual_size: info.actual_size,
            },
        );
        Ok((info.virtual_size, info.actual_size))
    }

    /// The (canonical) image directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path an image of this name and format has (or would have).
    pub fn path_of(&self, name: &str, format: VolumeFormat) -> Result<PathBuf, StorageError> {
        name::validate("image", name)?;
        paths::contained(&self.dir, &format!("{name}.{format}"))
    }

    /// The path and format of an existing image, if any.
    pub fn find(&self, name: &str) -> Result<Option<(PathBuf, VolumeFormat)>, StorageError> {
        for format in VolumeFormat::ALL {
            let path = self.path_of(name, format)?;
            if paths::exists(&path)? {
                return Ok(Some((path, format)));
            }
        }
        Ok(None)
    }

    /// One image.
    pub fn get(&self, name: &str) -> Result<ImageInfo, StorageError> {
        let (path, format) = self.find(name)?.ok_or_else(|| StorageError::NotFound {
            kind: "image",
            name: name.to_string(),
        })?;
        let (virtual_size, actual_size) = self.sizes_of(name, &path, format)?;
        Ok(ImageInfo {
            name: name.to_string(),
            path,
            format,
            virtual_size,
            actual_size,
            sha256: self.read_sha256(name)?,
        })
    }

    /// Every image, sorted by name.
    pub fn list_images(&self) -> Result<Vec<ImageInfo>, StorageError> {
        let mut names = Vec::new();
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| StorageError::io("list", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("list", &self.dir, e))?;
            let file_name = entry.file_name();
            if let Some((stem, _)) = file_name.to_str().and_then(paths::split_file_name) {
                names.push(stem.to_string());
            }
        }
        names.sort();
        names.dedup();
        names.iter().map(|n| self.get(n)).collect()
    }

    /// Import an image from a path or URL; see [`import`].
    pub fn import(
        &self,
        name: &str,
        source: &str,
        expected_sha256: Option<&str>,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<ImageInfo, StorageError> {
        import(self, name, Source::parse(source), expected_sha256, progress)
    }

    /// Import an image from `source` (e.g. a file the caller opened); see [`import`].
    pub fn import_from(
        &self,
        name: &str,
        source: Source,
        expected_sha256: Option<&str>,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<ImageInfo, StorageError> {
        import(self, name, source, expected_sha256, progress)
    }

    /// Remove the temporary files that imports interrupted by a crash left behind. Call it
    /// at daemon start, before any import runs. Returns how many were removed.
    pub fn cleanup_stale_imports(&self) -> Result<usize, StorageError> {
        let mut removed = 0;
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| StorageError::io("list", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("list", &self.dir, e))?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                paths::remove_file(&entry.path())?;
                tracing::info!(path = %entry.path().display(), "removed stale import");
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Delete an image and its checksum. The caller has checked that nothing uses it
    /// ([`DirBackend::delete_image`](crate::DirBackend::delete_image) does).
    pub(crate) fn remove(&self, name: &str) -> Result<(), StorageError> {
        let (path, _) = self.find(name)?.ok_or_else(|| StorageError::NotFound {
            kind: "image",
            name: name.to_string(),
        })?;
        paths::remove_file(&path)?;
        paths::remove_file(&self.sha256_path(name)?)?;
        tracing::info!(image = name, "image deleted");
        Ok(())
    }

    fn sha256_path(&self, name: &str) -> Result<PathBuf, StorageError> {
        name::validate("image", name)?;
        paths::contained(&self.dir, &format!("{name}.sha256"))
    }

    fn read_sha256(&self, name: &str) -> Result<Option<String>, StorageError> {
        let path = self.sha256_path(name)?;
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(s
                .split_whitespace()
                .next()
                .and_then(|h| normalize_sha256(h).ok())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io("read", path, e)),
        }
    }

    fn write_sha256(&self, name: &str, file_name: &str, sha: &str) -> Result<(), StorageError> {
        let path = self.sha256_path(name)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&self.dir)
            .map_err(|e| StorageError::io("create temporary file in", &self.dir, e))?;
        writeln!(tmp, "{sha}  {file_name}")
            .map_err(|e| StorageError::io("write", tmp.path(), e))?;
        set_mode(tmp.path(), 0o600)?;
        tmp.persist(&path)
            .map_err(|e| StorageError::io("rename into", &path, e.error))?;
        Ok(())
    }
}

/// Lowercase a SHA-256 given as 64 hex digits; refuse anything else.
pub fn normalize_sha256(s: &str) -> Result<String, StorageError> {
    let t = s.trim();
    if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(StorageError::InvalidSha256(s.to_string()))
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StorageError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| StorageError::io("chmod", path, e))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Import `source` (a local path, an open file or an http(s) URL) as image `name` into
/// `store`.
///
/// The data is streamed into a temporary file in the image directory while its sha256 is
/// computed; `progress(done, total)` is called after each chunk (`total` is None when an
/// HTTP server sends no length). Then, in order: the sha256 must equal `expected_sha256`
/// if given; `qemu-img info` must call the file qcow2 or raw; a qcow2 must have no backing
/// file and no external data file (they would let a guest read host files); a raw file
/// must be at least one 512-byte sector and a whole number of sectors (else it is not a
/// disk image: qemu-img calls any file raw). Only then is it renamed into place (never
/// over an existing image) and its sha256 written beside it. On any failure the
/// temporary file is removed.
pub fn import(
    store: &ImageStore,
    name: &str,
    src: Source,
    expected_sha256: Option<&str>,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<ImageInfo, StorageError> {
    name::validate("image", name)?;
    let expected = expected_sha256.map(normalize_sha256).transpose()?;
    if store.find(name)?.is_some() {
        return Err(StorageError::AlreadyExists {
            kind: "image",
            name: name.to_string(),
        });
    }
    tracing::info!(image = name, source = %src, "importing image");

    // Dropped (and so removed) on every early return below.
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(&store.dir)
        .map_err(|e| StorageError::io("create temporary file in", &store.dir, e))?;
    let (mut reader, total) = src.open()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(src.read_error(e)),
        };
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .map_err(|e| StorageError::io("write", tmp.path(), e))?;
        done += n as u64;
        progress(done, total);
    }
    if let Some(total) = total
        && done != total
    {
        return Err(src.download_error(format!(
            "got {done} bytes, expected {total} (connection closed early?)"
        )));
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| StorageError::io("sync", tmp.path(), e))?;
    let sha = hex(&hasher.finalize());
    if let Some(expected) = expected
        && expected != sha
    {
        return Err(StorageError::ChecksumMismatch {
            name: name.to_string(),
            expected,
            actual: sha,
        });
    }

    let format = check_image(store.runner.as_ref(), name, tmp.path(), done)?;
    set_mode(tmp.path(), 0o600)?;
    let path = store.path_of(name, format)?;
    tmp.persist_noclobber(&path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            StorageError::AlreadyExists {
                kind: "image",
                name: name.to_string(),
            }
        } else {
            StorageError::io("rename into", &path, e.error)
        }
    })?;
    // The same name in the other format (a concurrent import) loses to neither: both go.
    let other_exists = VolumeFormat::ALL
        .iter()
        .filter(|f| **f != format)
        .map(|f| store.path_of(name, *f).and_then(|p| paths::exists(&p)))
        .collect::<Result<Vec<bool>, _>>();
    let file_name = format!("{name}.{format}");
    let written = match other_exists {
        Ok(v) if v.contains(&true) => Err(StorageError::AlreadyExists {
            kind: "image",
            name: name.to_string(),
        }),
        Ok(_) => store.write_sha256(name, &file_name, &sha),
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        if let Err(rm) = paths::remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %rm, "cannot remove image after failed import");
        }
        return Err(e);
    }
    tracing::info!(image = name, %format, bytes = done, sha256 = %sha, "image imported");
    store.get(name)
}

/// Check the imported file and return its format (see [`import`] for the rules).
fn check_image(
    runner: &dyn Runner,
    name: &str,
    path: &Path,
    len: u64,
) -> Result<VolumeFormat, StorageError> {
    let refuse = |reason: String| StorageError::ImageRefused {
        name: name.to_string(),
        reason,
    };
    let info = qemu_img::info(runner, path, None)?;
    let format: VolumeFormat =
        info.format
            .parse()
            .map_err(|_| StorageError::UnsupportedFormat {
                format: info.format.clone(),
                reason:
                    "kcore imports qcow2 and raw images only (convert it with qemu-img convert)"
                        .into(),
            })?;
    match format {
        VolumeFormat::Raw => {
            if len < 512 {
                return Err(refuse(format!(
                    "not a disk image: a raw image must be at least one 512-byte sector, this file has {len} bytes"
                )));
            }
            if !len.is_multiple_of(512) {
                return Err(refuse(format!(
                    "not a disk image: a raw image must be a multiple of 512 bytes, this file has {len} bytes"
                )));
            }
        }
        VolumeFormat::Qcow2 => {
            if let Some(backing) = &info.backing_filename {
                return Err(refuse(format!(
                    "the qcow2 has a backing file ({backing}): import a standalone image (qemu-img convert -O qcow2)"
                )));
            }
            if let Some(data_file) = info.data_file() {
                return Err(refuse(format!(
                    "the qcow2 has an external data file ({data_file})"
                )));
            }
        }
    }
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_normalized() {
        let upper = "A".repeat(64);
        assert_eq!(normalize_sha256(&upper).ok(), Some("a".repeat(64)));
        assert!(normalize_sha256("abc").is_err());
        assert!(normalize_sha256(&"g".repeat(64)).is_err());
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }
}

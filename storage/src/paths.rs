//! Keeping every computed path inside its pool directory.
//!
//! Names are validated first (one path component, no `..`), so `dir.join(name)` is lexically
//! inside `dir`. What remains is a symlink planted in the pool: an existing entry is
//! canonicalized and must still be under `dir` (itself canonical), else it is refused.
//! (A swap of the entry between this check and its use is not guarded against: the pool
//! directories belong to root.)

use std::path::{Path, PathBuf};

use crate::StorageError;

/// Canonicalize `dir`, creating it first if `create`, and check it is under `root` (when
/// given; `root` must already be canonical).
pub fn canonical_dir(
    dir: &Path,
    root: Option<&Path>,
    create: bool,
) -> Result<PathBuf, StorageError> {
    if create {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create directory", dir, e))?;
    }
    let canon = dir
        .canonicalize()
        .map_err(|e| StorageError::io("resolve", dir, e))?;
    if !canon.is_dir() {
        return Err(StorageError::io(
            "open directory",
            dir,
            std::io::Error::from(std::io::ErrorKind::NotADirectory),
        ));
    }
    if let Some(root) = root
        && !canon.starts_with(root)
    {
        return Err(StorageError::PathEscape {
            path: dir.to_path_buf(),
            root: root.to_path_buf(),
        });
    }
    Ok(canon)
}

/// `dir/file_name`, refused if an existing entry there resolves outside `dir` (or is a
/// dangling symlink). `dir` must be canonical and `file_name` a single validated component.
pub fn contained(dir: &Path, file_name: &str) -> Result<PathBuf, StorageError> {
    let path = dir.join(file_name);
    if path.parent() != Some(dir) {
        return Err(StorageError::PathEscape {
            path,
            root: dir.to_path_buf(),
        });
    }
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => match path.canonicalize() {
            Ok(target) if target.starts_with(dir) => Ok(path),
            _ => Err(StorageError::PathEscape {
                path,
                root: dir.to_path_buf(),
            }),
        },
        Ok(_) => Ok(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(path),
        Err(e) => Err(StorageError::io("stat", path, e)),
    }
}

/// True if `path` exists (a dangling symlink counts as existing).
pub fn exists(path: &Path) -> Result<bool, StorageError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StorageError::io("stat", path, e)),
    }
}

/// Remove a file; a file already gone is fine.
pub fn remove_file(path: &Path) -> Result<(), StorageError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("remove", path, e)),
    }
}

/// Split `NAME.EXT` for a file in a pool directory into the validated name and the format.
pub fn split_file_name(file_name: &str) -> Option<(&str, crate::VolumeFormat)> {
    let (stem, ext) = file_name.rsplit_once('.')?;
    let format = ext.parse().ok()?;
    crate::name::validate("volume", stem).ok()?;
    Some((stem, format))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names() {
        assert_eq!(
            split_file_name("a.b.qcow2"),
            Some(("a.b", crate::VolumeFormat::Qcow2))
        );
        assert_eq!(
            split_file_name("x.raw"),
            Some(("x", crate::VolumeFormat::Raw))
        );
        assert_eq!(split_file_name(".import-x.raw"), None);
        assert_eq!(split_file_name("x.sha256"), None);
        assert_eq!(split_file_name("x"), None);
    }
}

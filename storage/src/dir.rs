//! The dir backend: volumes are files under `<pool>/volumes/` made with `qemu-img`,
//! images live under `<pool>/images/` (an [`ImageStore`]).
//!
//! A volume is `NAME.qcow2` (default) or `NAME.raw`: the format is in the file name and
//! always passed to qemu-img with `-f`, never probed (a guest that writes a qcow2 header
//! into its raw disk must not turn it into a qcow2 with a backing file of its choosing).
//! A clone is a qcow2 overlay whose backing file is `../images/IMAGE.FMT` (relative, so the
//! pool can move): instant (written in-process, see `qcow2.rs`), and copy-on-write, so
//! clones never share writes.
//!
//! Sizes: 0 and anything above 64 TiB are refused. qcow2 volumes are thin: their virtual
//! size may exceed the free space (overcommit, as with thin LVs); a raw volume, which a
//! guest can fill entirely, must fit in the free space when created or grown.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{check_size, round_to_sector};
use crate::runner::Runner;
use crate::{
    Backend, Capacity, ImageInfo, ImageStore, StorageError, VolumeFormat, VolumeInfo, name, paths,
    qcow2, qemu_img,
};

/// A directory pool.
#[derive(Debug)]
pub struct DirBackend {
    root: PathBuf,
    volumes: PathBuf,
    images: ImageStore,
    runner: Arc<dyn Runner>,
    /// Serializes this process's operations on the pool, so an image cannot be deleted
    /// while a clone of it is being made, and list/info never see a volume half made.
    /// (Other processes are not excluded: the daemon is the pool's only user.)
    lock: Mutex<()>,
}

impl DirBackend {
    /// Open the pool at `root` (which must exist), creating `volumes/` and `images/`.
    pub fn open(root: &Path, runner: Arc<dyn Runner>) -> Result<Self, StorageError> {
        let root = paths::canonical_dir(root, None, false)?;
        let volumes = paths::canonical_dir(&root.join("volumes"), Some(&root), true)?;
        let images = paths::canonical_dir(&root.join("images"), Some(&root), true)?;
        // Guests' disks are nobody else's business: only the daemon opens them (QEMU gets
        // descriptors), so both directories are its own alone.
        for d in [&volumes, &images] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| StorageError::io("chmod", d, e))?;
        }
        Ok(DirBackend {
            root,
            volumes,
            images: ImageStore::from_canonical(images, runner.clone()),
            runner,
            lock: Mutex::new(()),
        })
    }

    /// The pool directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The pool's images.
    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    /// The volumes whose backing file is image `name`.
    pub fn image_users(&self, name: &str) -> Result<Vec<String>, StorageError> {
        let _guard = self.guard();
        self.image_users_locked(name)
    }

    fn image_users_locked(&self, name: &str) -> Result<Vec<String>, StorageError> {
        name::validate("image", name)?;
        Ok(self
            .list_locked()?
            .into_iter()
            .filter(|v| v.backing.as_deref() == Some(name))
            .map(|v| v.name)
            .collect())
    }

    /// Delete an image, refused while volumes are overlays of it.
    pub fn delete_image(&self, name: &str) -> Result<(), StorageError> {
        let _guard = self.guard();
        let users = self.image_users_locked(name)?;
        if !users.is_empty() {
            return Err(StorageError::ImageInUse {
                image: name.to_string(),
                volumes: users,
            });
        }
        self.images.remove(name)
    }

    fn list_locked(&self) -> Result<Vec<VolumeInfo>, StorageError> {
        let mut names = Vec::new();
        let entries = std::fs::read_dir(&self.volumes)
            .map_err(|e| StorageError::io("list", &self.volumes, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("list", &self.volumes, e))?;
            let file_name = entry.file_name();
            if let Some((stem, _)) = file_name.to_str().and_then(paths::split_file_name) {
                names.push(stem.to_string());
            }
        }
        names.sort();
        names.dedup();
        names.iter().map(|n| self.info_locked(n)).collect()
    }

    fn info_locked(&self, name: &str) -> Result<VolumeInfo, StorageError> {
        let (path, format) = self.find_existing(name)?;
        let info = qemu_img::info(self.runner.as_ref(), &path, Some(format))?;
        let backing = info
            .full_backing_filename
            .as_deref()
            .or(info.backing_filename.as_deref())
            .map(|full| {
                self.backing_image_name(full)
                    .unwrap_or_else(|| full.to_string())
            });
        Ok(VolumeInfo {
            name: name.to_string(),
            path,
            format,
            virtual_size: info.virtual_size,
            actual_size: info.actual_size,
            backing,
        })
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn volume_path(&self, name: &str, format: VolumeFormat) -> Result<PathBuf, StorageError> {
        name::validate("volume", name)?;
        paths::contained(&self.volumes, &format!("{name}.{format}"))
    }

    fn find(&self, name: &str) -> Result<Option<(PathBuf, VolumeFormat)>, StorageError> {
        for format in VolumeFormat::ALL {
            let path = self.volume_path(name, format)?;
            if paths::exists(&path)? {
                return Ok(Some((path, format)));
            }
        }
        Ok(None)
    }

    fn find_existing(&self, name: &str) -> Result<(PathBuf, VolumeFormat), StorageError> {
        self.find(name)?.ok_or_else(|| StorageError::NotFound {
            kind: "volume",
            name: name.to_string(),
        })
    }

    /// Atomically claim `name` by creating its file empty (O_EXCL), so that two creates of
    /// the same name cannot both run qemu-img on one file.
    fn reserve(&self, name: &str, format: VolumeFormat) -> Result<PathBuf, StorageError> {
        let exists = || StorageError::AlreadyExists {
            kind: "volume",
            name: name.to_string(),
        };
        if self.find(name)?.is_some() {
            return Err(exists());
        }
        let path = self.volume_path(name, format)?;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(_) => Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
            Err(e) => Err(StorageError::io("create", path, e)),
        }
    }

    /// Run `make` on a reserved file; on failure remove the file.
    fn build(
        &self,
        name: &str,
        path: &Path,
        make: impl FnOnce() -> Result<(), StorageError>,
    ) -> Result<VolumeInfo, StorageError> {
        if let Err(e) = make() {
            if let Err(rm) = paths::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %rm, "cannot remove failed volume");
            }
            return Err(e);
        }
        self.info_locked(name)
    }

    fn check_free(&self, needed: u64) -> Result<(), StorageError> {
        let free = self.capacity()?.free_bytes;
        if needed > free {
            return Err(StorageError::InsufficientSpace {
                requested: needed,
                available: free,
            });
        }
        Ok(())
    }

    /// The image name a backing file designates, if it is in this pool's image store.
    fn backing_image_name(&self, full_backing: &str) -> Option<String> {
        let canon = Path::new(full_backing).canonicalize().ok()?;
        if canon.parent() != Some(self.images.dir()) {
            return None;
        }
        let file_name = canon.file_name()?.to_str()?;
        paths::split_file_name(file_name).map(|(stem, _)| stem.to_string())
    }
}

impl Backend for DirBackend {
    fn capacity(&self) -> Result<Capacity, StorageError> {
        let st = nix::sys::statvfs::statvfs(&self.root).map_err(|e| {
            StorageError::io(
                "statvfs",
                &self.root,
                std::io::Error::from_raw_os_error(e as i32),
            )
        })?;
        let frsize = st.fragment_size() as u64;
        Ok(Capacity {
            total_bytes: (st.blocks() as u64).saturating_mul(frsize),
            free_bytes: (st.blocks_available() as u64).saturating_mul(frsize),
        })
    }

    fn create_volume(
        &self,
        name: &str,
        size_bytes: u64,
        format: VolumeFormat,
    ) -> Result<VolumeInfo, StorageError> {
        name::validate("volume", name)?;
        check_size(size_bytes)?;
        let size = round_to_sector(size_bytes);
        let _guard = self.guard();
        if format == VolumeFormat::Raw {
            self.check_free(size)?;
        }
        let path = self.reserve(name, format)?;
        let info = self.build(name, &path, || {
            qemu_img::create(self.runner.as_ref(), &path, format, size)
        })?;
        tracing::info!(volume = name, %format, size, "volume created");
        Ok(info)
    }

    fn clone_from_image(
        &self,
        image: &ImageInfo,
        name: &str,
        size_bytes: Option<u64>,
    ) -> Result<VolumeInfo, StorageError> {
        name::validate("volume", name)?;
        let size = match size_bytes {
            Some(s) => {
                check_size(s)?;
                let s = round_to_sector(s);
                if s < image.virtual_size {
                    return Err(StorageError::ShrinkRefused {
                        name: name.to_string(),
                        current: image.virtual_size,
                        requested: s,
                    });
                }
                Some(s)
            }
            None => None,
        };
        let _guard = self.guard();
        // Only an image of this pool may back a volume here: its in-use check covers it.
        let (image_path, image_format) = match self.images.find(&image.name)? {
            Some((p, f)) if p == image.path && f == image.format => (p, f),
            _ => {
                return Err(StorageError::ImageRefused {
                    name: image.name.clone(),
                    reason: format!(
                        "not an image of the pool at {}: dir pools clone only their own images",
                        self.root.display()
                    ),
                });
            }
        };
        let file_name = image_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let backing = format!("../images/{file_name}");
        let path = self.reserve(name, VolumeFormat::Qcow2)?;
        let virtual_size = size.unwrap_or(image.virtual_size);
        // Written in-process (what `qemu-img create -u -b` writes, without starting it).
        if let Err(e) = qcow2::write_overlay(&path, &backing, image_format, virtual_size) {
            if let Err(rm) = paths::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %rm, "cannot remove failed volume");
            }
            return Err(e);
        }
        // What qemu-img info would say, without running it again.
        let actual_size = std::fs::metadata(&path)
            .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
            .unwrap_or(0);
        let info = VolumeInfo {
            name: name.to_string(),
            path: path.clone(),
            format: VolumeFormat::Qcow2,
            virtual_size,
            actual_size,
            backing: Some(image.name.clone()),
        };
        tracing::info!(volume = name, image = %image.name, "volume cloned from image");
        Ok(info)
    }

    fn resize(&self, name: &str, new_size: u64) -> Result<VolumeInfo, StorageError> {
        name::validate("volume", name)?;
        check_size(new_size)?;
        let new_size = round_to_sector(new_size);
        let _guard = self.guard();
        let (path, format) = self.find_existing(name)?;
        let current = self.info_locked(name)?;
        if new_size < current.virtual_size {
            return Err(StorageError::ShrinkRefused {
                name: name.to_string(),
                current: current.virtual_size,
                requested: new_size,
            });
        }
        if new_size == current.virtual_size {
            return Ok(current);
        }
        if format == VolumeFormat::Raw {
            self.check_free(new_size - current.virtual_size)?;
        }
        qemu_img::resize(self.runner.as_ref(), &path, format, new_size)?;
        tracing::info!(
            volume = name,
            from = current.virtual_size,
            to = new_size,
            "volume resized"
        );
        self.info_locked(name)
    }

    fn delete(&self, name: &str) -> Result<(), StorageError> {
        name::validate("volume", name)?;
        let _guard = self.guard();
        let (path, _) = self.find_existing(name)?;
        paths::remove_file(&path)?;
        tracing::info!(volume = name, "volume deleted");
        Ok(())
    }

    fn list(&self) -> Result<Vec<VolumeInfo>, StorageError> {
        let _guard = self.guard();
        self.list_locked()
    }

    fn info(&self, name: &str) -> Result<VolumeInfo, StorageError> {
        name::validate("volume", name)?;
        let _guard = self.guard();
        self.info_locked(name)
    }

    fn path(&self, name: &str) -> Result<PathBuf, StorageError> {
        Ok(self.find_existing(name)?.0)
    }
}

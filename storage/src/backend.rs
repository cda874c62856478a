//! The `Backend` trait every pool kind implements, and the types it speaks.
//!
//! A backend owns volumes (disks for VMs). Images are read-only templates kept in an
//! [`ImageStore`](crate::ImageStore); a backend clones a volume from an image in the way
//! that suits it: a qcow2 overlay (dir), a full copy (lvm), later a `zfs clone` of a
//! cached snapshot keyed by the image's name and sha256 (zfs).
//!
//! All methods block (they run external tools): call them from `spawn_blocking`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{ImageInfo, StorageError};

/// The hard cap on a volume's virtual size: 64 TiB.
pub const MAX_VOLUME_BYTES: u64 = 64 << 40;

/// Disk image formats kcore handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VolumeFormat {
    #[default]
    Qcow2,
    Raw,
}

impl VolumeFormat {
    /// The name qemu-img uses (`-f`, `-O`, `-F`), also the file extension in dir pools.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeFormat::Qcow2 => "qcow2",
            VolumeFormat::Raw => "raw",
        }
    }

    pub const ALL: [VolumeFormat; 2] = [VolumeFormat::Qcow2, VolumeFormat::Raw];
}

impl std::fmt::Display for VolumeFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for VolumeFormat {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "qcow2" => Ok(VolumeFormat::Qcow2),
            "raw" => Ok(VolumeFormat::Raw),
            other => Err(StorageError::UnsupportedFormat {
                format: other.to_string(),
                reason: "kcore handles qcow2 and raw only".into(),
            }),
        }
    }
}

/// A pool's size and free space, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// What kcore knows about one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    /// What QEMU opens: a file (dir) or a block device (lvm).
    pub path: PathBuf,
    pub format: VolumeFormat,
    /// The size the guest sees.
    pub virtual_size: u64,
    /// The bytes allocated on the host.
    pub actual_size: u64,
    /// The image this volume is an overlay of: its name when it is in the pool's image
    /// store, otherwise the backing file as qemu-img reports it. None for full copies.
    pub backing: Option<String>,
}

/// A storage pool kind. Implementations are `Send + Sync`; mutating calls on one backend
/// object are serialized internally where the backend needs it.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The pool's size and free space.
    fn capacity(&self) -> Result<Capacity, StorageError>;

    /// Create an empty volume. Backends that hold only raw volumes (lvm) refuse qcow2.
    fn create_volume(
        &self,
        name: &str,
        size_bytes: u64,
        format: VolumeFormat,
    ) -> Result<VolumeInfo, StorageError>;

    /// Create a volume holding `image`'s content, of `size_bytes` (at least the image's
    /// virtual size) or the image's virtual size if None.
    fn clone_from_image(
        &self,
        image: &ImageInfo,
        name: &str,
        size_bytes: Option<u64>,
    ) -> Result<VolumeInfo, StorageError>;

    /// Grow a volume to `new_size` bytes. Shrinking is refused; the same size is a no-op.
    /// This is for a volume no running QEMU has open (a live resize goes through QMP).
    fn resize(&self, name: &str, new_size: u64) -> Result<VolumeInfo, StorageError>;

    /// Delete a volume.
    fn delete(&self, name: &str) -> Result<(), StorageError>;

    /// Every volume of this pool that kcore manages, sorted by name.
    fn list(&self) -> Result<Vec<VolumeInfo>, StorageError>;

    /// One volume.
    fn info(&self, name: &str) -> Result<VolumeInfo, StorageError>;

    /// The path QEMU should open for this (existing) volume.
    fn path(&self, name: &str) -> Result<PathBuf, StorageError>;
}

/// Refuse a size of 0 or above [`MAX_VOLUME_BYTES`].
pub fn check_size(size_bytes: u64) -> Result<(), StorageError> {
    if size_bytes == 0 {
        return Err(StorageError::InvalidSize(
            "a volume cannot be 0 bytes".into(),
        ));
    }
    if size_bytes > MAX_VOLUME_BYTES {
        return Err(StorageError::InvalidSize(format!(
            "{size_bytes} bytes is above the 64 TiB cap"
        )));
    }
    Ok(())
}

/// Round up to a multiple of 512 (qemu-img would, silently).
pub fn round_to_sector(size_bytes: u64) -> u64 {
    size_bytes.div_ceil(512) * 512
}

/// Parse a size like `10G`, `512M`, `4096`, `1T` (binary units: K = 1024) into bytes.
pub fn parse_size(s: &str) -> Result<u64, StorageError> {
    let bad = |why: &str| StorageError::InvalidSize(format!("{s:?}: {why}"));
    let t = s.trim();
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let (digits, shift) = match t.chars().last() {
        Some(c @ ('K' | 'k' | 'M' | 'm' | 'G' | 'g' | 'T' | 't')) => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                _ => 40,
            };
            (&t[..t.len() - 1], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| bad("expected a number with an optional K, M, G or T suffix"))?;
    n.checked_mul(1u64 << shift).ok_or_else(|| bad("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert!(check_size(0).is_err());
        assert!(check_size(1).is_ok());
        assert!(check_size(MAX_VOLUME_BYTES).is_ok());
        assert!(check_size(MAX_VOLUME_BYTES + 1).is_err());
        assert_eq!(round_to_sector(1), 512);
        assert_eq!(round_to_sector(1024), 1024);
        assert_eq!(parse_size("10G").ok(), Some(10 << 30));
        assert_eq!(parse_size("512M").ok(), Some(512 << 20));
        assert_eq!(parse_size("4096").ok(), Some(4096));
        assert_eq!(parse_size("1TiB").ok(), None);
        assert_eq!(parse_size("2kb").ok(), Some(2048));
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(
            "qcow2".parse::<VolumeFormat>().ok(),
            Some(VolumeFormat::Qcow2)
        );
        assert_eq!("raw".parse::<VolumeFormat>().ok(), Some(VolumeFormat::Raw));
        let err = "vmdk".parse::<VolumeFormat>().expect_err("vmdk");
        assert!(err.to_string().contains("vmdk"), "{err}");
    }
}

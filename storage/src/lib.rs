//! Storage for kcore: pools of volumes (VM disks) and images (read-only templates).
//!
//! Two pool kinds implement [`Backend`]: [`DirBackend`] (files made with `qemu-img`,
//! qcow2 overlays for clones) and [`LvmBackend`] (tagged logical volumes made with lvm2).
//! Images are imported into an [`ImageStore`] from a file or an http(s) URL, checksummed
//! and checked before they appear.
//!
//! Every external tool runs through a [`Runner`] (an argv, never a shell). The API is
//! blocking: the daemon calls it from `tokio::task::spawn_blocking`.
//!
//! This crate knows nothing of gRPC, SQLite, QEMU processes or networks.

mod backend;
mod dir;
pub mod error;
mod image;
pub mod lvm;
mod name;
mod paths;
mod pool;
pub mod qcow2;
mod qemu_img;
pub mod runner;
pub mod source;

pub use backend::{
    Backend, Capacity, MAX_VOLUME_BYTES, VolumeFormat, VolumeInfo, check_size, parse_size,
};
pub use dir::DirBackend;
pub use error::StorageError;
pub use image::{ImageInfo, ImageStore, import, normalize_sha256};
pub use lvm::{LvmBackend, LvmConfig};
pub use name::validate as validate_name;
pub use pool::{Pool, PoolConfig, PoolKind};
pub use qemu_img::flatten_to_qcow2;
pub use runner::{Output, Runner, SystemRunner};
pub use source::Source;

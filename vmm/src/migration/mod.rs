//! Live migration of a running VM to a QEMU on another host, with its disks (no shared
//! storage), all over QMP:
//!
//! - destination ([`Vm::start_incoming`], [`Vm::listen_incoming`]): QEMU started with
//!   `-incoming defer`, TLS credentials loaded (`tls-creds-x509`, the peer checked by
//!   `authz-simple`), an NBD server exporting each disk writable, `migrate-incoming` on
//!   `tcp:HOST:0` (QEMU picks the port, `query-migrate` tells it);
//! - source ([`Vm::migrate_out`]): `blockdev-add` an NBD client node per disk, then
//!   `blockdev-mirror` into it (`sync=top` for an overlay of an image both hosts have,
//!   `full` otherwise), wait until every job is ready, `migrate` with `pause-before-switchover`:
//!   at `pre-switchover` (the guest is paused) the mirror jobs are completed
//!   (`block-job-cancel` of a ready job), then `migrate-continue`;
//! - destination again ([`Vm::finish_incoming`]): once `query-migrate` says completed, the
//!   exports and the NBD server go, `cont`, `announce-self` (so switches learn the MACs'
//!   new port).
//!
//! A failure on the source before the switch is rolled back there (`migrate_cancel`, jobs
//! cancelled, NBD nodes and credentials removed, `cont` if we paused it): the source keeps
//! running. What to do with the destination is the owner's call (it kills it).
//!
//! TLS credentials: QEMU's `tls-creds-x509` reads PEM files from a directory by path. The
//! files are written to `<run-dir>/migration-tls/<vm-id>-<role>/` (the directory root's,
//! 0711; the files the VM's QEMU uid's, 0400) only for the `object-add`, and removed as
//! soon as QEMU has loaded them.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::VmmError;

mod incoming;
mod outgoing;
mod tls;

/// QMP ids of what a migration adds to QEMU.
pub(crate) const TLS_ID: &str = "kcore-mig-tls";
pub(crate) const AUTHZ_ID: &str = "kcore-mig-authz";
/// How often progress is polled.
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// PEM material of one side of a migration: the cluster CA and this side's certificate.
#[derive(Clone)]
pub struct TlsFiles {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsFiles { .. }")
    }
}

/// What the destination listens with.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The address to listen on (this node's address as the cluster knows it).
    pub host: String,
    /// The NBD server's port.
    pub nbd_port: u16,
    pub tls: TlsFiles,
    /// The source's certificate's distinguished name as gnutls prints it (`CN=...`): the
    /// only client the NBD server and the migration listener accept.
    pub client_dn: String,
    /// The disk ids (node names) to export.
    pub disks: Vec<String>,
}

/// A disk of the source to mirror.
#[derive(Debug, Clone)]
pub struct MirrorDisk {
    /// Node name and NBD export name.
    pub id: String,
    /// Only the overlay's own clusters (the destination has the same image below).
    pub top_only: bool,
}

/// Where and how the source sends the VM.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The destination's address; also the name its certificate must carry.
    pub host: String,
    pub migration_port: u16,
    pub nbd_port: u16,
    pub tls: TlsFiles,
    pub disks: Vec<MirrorDisk>,
    /// QEMU's `downtime-limit`.
    pub max_downtime_ms: u64,
    /// Bytes per second for RAM and each disk; 0: QEMU's defaults (RAM 128 MiB/s).
    pub bandwidth: u64,
    /// The whole migration, mirror included.
    pub timeout: Duration,
}

/// Where a migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPhase {
    Setup,
    DiskMirror,
    Ram,
    Switchover,
    Completed,
}

impl MigrationPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationPhase::Setup => "setup",
            MigrationPhase::DiskMirror => "disk-mirror",
            MigrationPhase::Ram => "ram",
            MigrationPhase::Switchover => "switchover",
            MigrationPhase::Completed => "completed",
        }
    }
}

/// One progress report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub phase: Option<MigrationPhase>,
    /// Bytes sent in this phase, and in all (for the disk phase: of the disks).
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// RAM bytes the guest dirties per second (0 when unknown).
    pub dirty_rate: u64,
    /// QEMU's expected downtime, milliseconds (RAM phase).
    pub expected_downtime_ms: u64,
    /// RAM passes so far.
    pub ram_passes: u64,
    /// The final figures, with phase Completed.
    pub downtime_ms: u64,
}

/// What a finished migration measured on the source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub setup_ms: u64,
    pub mirror_ms: u64,
    pub ram_ms: u64,
    /// QEMU's downtime (source paused to stream end).
    pub downtime_ms: u64,
    pub ram_bytes: u64,
    pub ram_passes: u64,
    /// When the source paused for the last pass.
    pub paused_at: Option<SystemTime>,
}

/// The owner's answer to a progress report: false means give up (it went away).
pub(crate) fn go_on(yes: bool) -> Result<(), VmmError> {
    if yes {
        Ok(())
    } else {
        Err(mig_err("cancelled", "the migration's owner gave up on it"))
    }
}

pub(crate) fn mig_err(what: &str, e: impl std::fmt::Display) -> VmmError {
    VmmError::Migration(format!("{what}: {e}"))
}

pub(crate) fn u64_at(v: &Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

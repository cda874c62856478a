//! Live migration as the controller asks for it and as nodes carry it out
//! (docs/migration.md).

use kcore_types::VmName;
use kcore_vmm::migration::TlsFiles;

use super::VmRequest;

/// Default of `--timeout`: the whole migration, disks included.
pub const DEFAULT_TIMEOUT_SECS: u32 = 600;
/// Default of `--max-downtime`.
pub const DEFAULT_MAX_DOWNTIME_MS: u32 = 300;

/// A migration as the public API asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrateVm {
    /// The VM's name or id.
    pub vm: String,
    pub to: String,
    pub timeout_secs: u32,
    pub max_downtime_ms: u32,
    /// MiB/s; 0: unlimited.
    pub bandwidth_mib: u32,
}

/// What the destination makes and listens with.
#[derive(Debug, Clone)]
pub struct PrepareIncoming {
    pub id: String,
    pub name: VmName,
    pub request: VmRequest,
    pub tls: TlsFiles,
    pub listen_host: String,
    /// The source's certificate's distinguished name: the one client accepted.
    pub client_dn: String,
    /// The migration's timeout (the destination gives up a minute after it).
    pub timeout_secs: u32,
}

/// Where the destination listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncomingPorts {
    pub migration: u16,
    pub nbd: u16,
}

/// What the source sends, and where.
#[derive(Debug, Clone)]
pub struct SendVm {
    pub id: String,
    pub host: String,
    pub ports: IncomingPorts,
    pub tls: TlsFiles,
    pub max_downtime_ms: u32,
    pub bandwidth_mib: u32,
    pub timeout_secs: u32,
}

/// How a migration is going (one message of the stream).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigrationProgress {
    pub vm: String,
    /// setup, disk-mirror, ram, switchover, completed.
    pub phase: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub dirty_rate: u64,
    pub expected_downtime_ms: u64,
    pub ram_passes: u32,
    pub downtime_ms: u64,
    pub elapsed_ms: u64,
    pub from_node: String,
    pub to_node: String,
}

/// What happened to one VM of a drain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrainedVm {
    pub name: String,
    /// migrated, stopped, left.
    pub action: String,
    pub to_node: String,
    pub reason: String,
    pub downtime_ms: u64,
}

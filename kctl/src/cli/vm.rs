//! `kctl vm ...`: the VM verbs, and the arguments of `vm set`, `vm disk`, `vm console`
//! and `vm qmp` (`vm create`'s are in [`super::create`]).

use clap::{Args, Subcommand};
use kcore_proto::v1::DiskRequest;

use super::{CloudInitArgs, CreateArgs, parse_disk, parse_mib};
use crate::network::NicCommand;

/// `kctl vm ...`.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Create (and, unless --start=false, start) a VM.
    Create(Box<CreateArgs>),
    /// List VMs.
    #[command(visible_alias = "ls")]
    List {
        /// Only VMs on this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Show one VM.
    Get {
        /// VM name or id.
        name: String,
    },
    /// Start a stopped VM.
    Start {
        /// VM name.
        name: String,
        /// Return at once instead of when RUNNING.
        #[arg(long)]
        no_wait: bool,
    },
    /// Stop a VM: ACPI power button, then quit, then kill.
    Stop {
        /// VM name.
        name: String,
        /// Kill QEMU at once, skipping the ACPI power button.
        #[arg(long)]
        force: bool,
        /// Seconds the guest gets to power off before QEMU is told to quit (default 30; 0:
        /// no grace, quit at once).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u32>,
        /// Return at once instead of when STOPPED.
        #[arg(long)]
        no_wait: bool,
    },
    /// Reboot a VM (system_reset).
    Reboot {
        /// VM name.
        name: String,
    },
    /// Pause a VM's vCPUs.
    Pause {
        /// VM name.
        name: String,
    },
    /// Resume a paused VM.
    Resume {
        /// VM name.
        name: String,
    },
    /// Delete a VM.
    #[command(visible_alias = "rm")]
    Delete {
        /// VM name.
        name: String,
        /// Delete even if it is not stopped (kills it first).
        #[arg(long)]
        force: bool,
        /// Keep the VM's volumes (they stay in their pools, listed without a VM).
        #[arg(long)]
        keep_disks: bool,
    },
    /// Attach to the serial console (Ctrl-] detaches).
    Console(ConsoleArgs),
    /// Send a QMP command, or open an interactive QMP shell.
    Qmp(QmpArgs),
    /// Show where the time of the last start went.
    Timeline {
        /// VM name.
        name: String,
    },
    /// Live-migrate a running VM to another node (its disks are copied; docs/migration.md).
    Migrate {
        /// VM name or id.
        name: String,
        /// The node to move it to.
        #[arg(long, value_name = "NODE")]
        to: String,
        /// Give up (the VM stays where it was) after this many seconds (default 600).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u32>,
        /// The longest pause of the guest to aim for, in milliseconds (default 300).
        #[arg(long, value_name = "MS")]
        max_downtime: Option<u32>,
        /// Copy bandwidth for RAM and disks, MiB/s (default unlimited).
        #[arg(long, value_name = "MiB/s")]
        bandwidth: Option<u32>,
    },
    /// Change a VM: vCPUs and memory (while it is STOPPED), cloud-init data and autostart
    /// (any time; a new cloud-init seed is what the guest sees from its next start).
    #[command(visible_alias = "update")]
    Set(SetArgs),
    /// Add, remove or grow a VM's disks (live when it runs).
    #[command(subcommand)]
    Disk(DiskCommand),
    /// Add or remove a VM's NICs (live when it runs).
    #[command(subcommand)]
    Nic(NicCommand),
}

/// `kctl vm disk ...`.
#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// Attach a new empty disk or an existing volume (hotplug when the VM runs).
    Attach {
        /// VM name.
        name: String,
        /// POOL:SIZE_GB for a new volume (e.g. default:10), or POOL:VOLUME for an existing
        /// one no VM uses.
        #[arg(value_parser = parse_disk)]
        disk: DiskRequest,
    },
    /// Detach a disk (waits for the guest to release it) and delete its volume.
    Detach {
        /// VM name.
        name: String,
        /// Volume name or guest device (vdb).
        disk: String,
        /// Keep the volume in its pool.
        #[arg(long)]
        keep: bool,
    },
    /// Grow a disk (live through QMP block_resize when the VM runs).
    Resize {
        /// VM name.
        name: String,
        /// Volume name or guest device (vda).
        disk: String,
        /// New size in GiB.
        size_gb: u32,
    },
}

/// `kctl vm set`.
#[derive(Debug, Args)]
#[command(
    after_help = "Each cloud-init option replaces that one file of the VM's seed and \
keeps the others; --no-cloud-init removes the seed. The new seed is made at once and the \
guest sees it from its next start (stop and start; a reboot keeps the running QEMU and its \
seed). cloud-init runs its once-per-instance modules again only for a new instance-id: give \
one in --cloud-init-meta-data for that."
)]
pub struct SetArgs {
    /// VM name or id.
    pub name: String,
    /// Number of vCPUs (the VM must be STOPPED).
    #[arg(long)]
    pub vcpu: Option<u32>,
    /// Memory in MiB (suffixes M/MiB, G/GiB are accepted too; the VM must be STOPPED).
    #[arg(long, value_name = "MiB", value_parser = parse_mib)]
    pub memory: Option<u32>,
    /// Start the VM when its node boots.
    #[arg(long, conflicts_with = "no_autostart")]
    pub autostart: bool,
    /// Do not start the VM when its node boots.
    #[arg(long)]
    pub no_autostart: bool,
    /// Remove the VM's cloud-init data (no seed disk from its next start).
    #[arg(
        long,
        conflicts_with_all = [
            "cloud_init_user_data",
            "cloud_init_meta_data",
            "cloud_init_network_config",
            "ssh_key",
            "hostname",
        ]
    )]
    pub no_cloud_init: bool,
    #[command(flatten)]
    pub cloud_init: CloudInitArgs,
}

/// `kctl vm console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// VM name.
    pub name: String,
    /// Read-only: print the console log, then live output until Ctrl-C.
    #[arg(long, conflicts_with = "tail")]
    pub follow: bool,
    /// Print the last N lines of the console log and exit.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
}

/// `kctl vm qmp`.
#[derive(Debug, Args)]
#[command(
    after_help = "Without JSON, reads commands from stdin: a JSON object, or the short \
form `command-name key=value ...` (values are parsed as JSON when they can be, else taken as \
strings; quote with '...' or \"...\"). `.exit` or end of input leaves the shell (`quit` is \
QMP's own command and stops QEMU)."
)]
pub struct QmpArgs {
    /// VM name.
    pub name: String,
    /// One QMP command object, e.g. '{"execute":"query-status"}'.
    pub json: Option<String>,
}

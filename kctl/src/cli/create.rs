//! `kctl vm create`: its arguments, the cloud-init options it shares with `vm set`, and
//! the value enums (machine, profile, restart policy, firmware) with their proto types.

use std::path::PathBuf;

use clap::{ArgAction, Args, ValueEnum};
use kcore_proto::v1::{DiskRequest, MachineType, NicRequest, Profile, RestartPolicy};

use super::{parse_disk, parse_mib};
use crate::network::parse_nic;

/// Machine types accepted by `--machine`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Machine {
    /// PCIe-based Q35 (default).
    Q35,
    /// i440FX PC.
    Pc,
    /// Minimal virtio-mmio machine.
    Microvm,
}

impl From<Machine> for MachineType {
    fn from(m: Machine) -> Self {
        match m {
            Machine::Q35 => MachineType::Q35,
            Machine::Pc => MachineType::Pc,
            Machine::Microvm => MachineType::Microvm,
        }
    }
}

/// Profiles accepted by `--profile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    /// Compatibility first (default).
    Standard,
    /// The fastest boot of a direct kernel boot.
    Fast,
}

impl From<ProfileArg> for Profile {
    fn from(p: ProfileArg) -> Self {
        match p {
            ProfileArg::Standard => Profile::Standard,
            ProfileArg::Fast => Profile::Fast,
        }
    }
}

/// Restart policies accepted by `--restart`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Restart {
    /// Never restart (default).
    Never,
    /// Restart when QEMU exits with an error or the guest crashes.
    OnFailure,
    /// Restart whenever it stops without being asked to.
    Always,
}

impl From<Restart> for RestartPolicy {
    fn from(r: Restart) -> Self {
        match r {
            Restart::Never => RestartPolicy::Never,
            Restart::OnFailure => RestartPolicy::OnFailure,
            Restart::Always => RestartPolicy::Always,
        }
    }
}

/// Firmware accepted by `--firmware`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Firmware {
    /// SeaBIOS (default).
    Bios,
    /// OVMF (UEFI).
    Uefi,
}

impl From<Firmware> for kcore_proto::v1::Firmware {
    fn from(f: Firmware) -> Self {
        match f {
            Firmware::Bios => Self::Bios,
            Firmware::Uefi => Self::Uefi,
        }
    }
}

/// `kctl vm create`.
#[derive(Debug, Args)]
#[command(
    after_help = "The VM boots from --image (a copy-on-write clone of the image becomes its \
first disk, vda), from --kernel (direct kernel boot), or both (an image as root disk with an \
external kernel); the server rejects a VM with neither."
)]
pub struct CreateArgs {
    /// VM name: [a-z0-9][a-z0-9-]{0,62}.
    pub name: String,
    /// Number of vCPUs (the server checks it against the node; with --template: the
    /// template's, which is the default).
    #[arg(long, required_unless_present = "template")]
    pub vcpu: Option<u32>,
    /// Memory in MiB (suffixes M/MiB, G/GiB are accepted too: 2G; with --template: the
    /// template's, which is the default).
    #[arg(long, value_name = "MiB", value_parser = parse_mib, required_unless_present = "template")]
    pub memory: Option<u32>,
    /// Start from this memory-snapshot template instead of booting (on its node; its
    /// machine, disks and memory; NICs of its own, hot-plugged): see `kctl template`.
    #[arg(long, value_name = "TEMPLATE", conflicts_with_all = ["image", "kernel", "disks", "machine", "firmware"])]
    pub template: Option<String>,
    /// Place the VM on this node (default: the scheduler picks).
    #[arg(long)]
    pub node: Option<String>,
    /// Boot disk: a clone of this image (see `kctl image list`).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Size of the boot disk in GiB (default: the image's size).
    #[arg(long, value_name = "GB", requires = "image")]
    pub disk_size: Option<u32>,
    /// A data disk (repeatable: vdb, vdc, ...): a new empty volume of SIZE_GB GiB in POOL,
    /// or POOL:VOLUME, an existing volume no VM uses (e.g. one kept by delete --keep-disks).
    #[arg(long = "disk", value_name = "POOL:SIZE_GB|POOL:VOLUME", value_parser = parse_disk)]
    pub disks: Vec<DiskRequest>,
    /// The pool the boot disk is created in (default: "default").
    #[arg(long, value_name = "POOL", requires = "image")]
    pub root_pool: Option<String>,
    /// Firmware (default: bios).
    #[arg(long, value_enum)]
    pub firmware: Option<Firmware>,
    /// A NIC on NETWORK (repeatable: eth0, eth1, ...); virtio-net, with a MAC unique in the
    /// cluster unless given.
    #[arg(long = "nic", value_name = "NETWORK[,mac=MAC][,model=virtio]", value_parser = parse_nic)]
    pub nics: Vec<NicRequest>,
    /// Kernel for direct boot (a path on the node; made absolute).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initrd for direct boot (a path on the node; made absolute).
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "STR", requires = "kernel")]
    pub cmdline: Option<String>,
    /// Machine type (default: the profile's).
    #[arg(long, value_enum)]
    pub machine: Option<Machine>,
    /// standard (q35, hotplug, UEFI possible) or fast (microvm, or pc for an e1000 NIC,
    /// without the devices a directly booted guest does not use; needs --kernel; no
    /// hotplug, no UEFI). See docs/profiles.md.
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,
    /// Start the VM after defining it (--start=false leaves it STOPPED).
    #[arg(
        long,
        num_args = 0..=1,
        default_value = "true",
        default_missing_value = "true",
        action = ArgAction::Set,
        value_parser = clap::value_parser!(bool),
        value_name = "BOOL",
    )]
    pub start: bool,
    /// Return at once instead of when RUNNING.
    #[arg(long)]
    pub no_wait: bool,
    /// Regex: the first console line matching it marks the guest ready (default "login:").
    #[arg(long, value_name = "REGEX")]
    pub ready_pattern: Option<String>,
    /// What to do when the VM stops on its own.
    #[arg(long, value_enum, value_name = "POLICY")]
    pub restart: Option<Restart>,
    /// Start the VM when its node boots.
    #[arg(long)]
    pub autostart: bool,
    #[command(flatten)]
    pub cloud_init: CloudInitArgs,
}

/// The cloud-init data of `vm create` and `vm set`: files for the VM's NoCloud seed (a
/// read-only disk labelled cidata), or the shorthands --ssh-key and --hostname.
#[derive(Debug, Args, Default)]
pub struct CloudInitArgs {
    /// cloud-init user-data: a #cloud-config YAML file, a #! script, or another cloud-init
    /// format (the VM gets a NoCloud seed disk labelled cidata).
    #[arg(long, value_name = "FILE", help_heading = "cloud-init")]
    pub cloud_init_user_data: Option<PathBuf>,
    /// cloud-init meta-data (YAML); instance-id and local-hostname default to the VM's id and
    /// name.
    #[arg(long, value_name = "FILE", help_heading = "cloud-init")]
    pub cloud_init_meta_data: Option<PathBuf>,
    /// cloud-init network-config (YAML, version 1 or 2).
    #[arg(long, value_name = "FILE", help_heading = "cloud-init")]
    pub cloud_init_network_config: Option<PathBuf>,
    /// SSH public keys (a file, one key a line) for the guest's default user: kctl writes
    /// the user-data, a #cloud-config with ssh_authorized_keys (put them in your own file
    /// instead when you give --cloud-init-user-data).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "cloud_init_user_data",
        help_heading = "cloud-init"
    )]
    pub ssh_key: Option<PathBuf>,
    /// The guest's hostname: meta-data's local-hostname (default: the VM's name).
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "cloud_init_meta_data",
        help_heading = "cloud-init"
    )]
    pub hostname: Option<String>,
}

//! The command line: `kctl [--endpoint URL] [-o table|json|yaml] <noun> <verb> ...`.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use kcore_proto::v1::{DiskRequest, MachineType, NicRequest, Profile, RestartPolicy};

use crate::network::{NetworkCommand, NicCommand, parse_nic};
use crate::output::Format;
pub use crate::parse::{parse_disk, parse_mib, parse_sha256};

/// kctl: manage kcore VMs, nodes and storage.
#[derive(Debug, Parser)]
#[command(name = "kctl", version, about, propagate_version = true)]
pub struct Cli {
    /// The controller: unix:///path/to/kcore.sock or https://host:port. Default:
    /// $KCORE_ENDPOINT, then the local socket if it exists ($KCORE_SOCKET, a path; default
    /// /run/kcore/kcore.sock), then `endpoint` in ~/.config/kcore/config.toml.
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint: Option<String>,

    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    #[command(subcommand)]
    pub command: Command,
}

/// The nouns.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Virtual machines.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Watch the event stream.
    Events(EventsArgs),
    /// Nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Storage pools (configured on the nodes).
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Disk images VMs boot from.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Volumes: the VMs' disks.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Networks VMs' NICs join (nat, or a host bridge).
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Memory-snapshot templates VMs start from (`vm create --template`).
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Client certificates of the cluster PKI (admin only).
    #[command(subcommand)]
    Cert(CertCommand),
    /// Print a shell completion script.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

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

/// `kctl events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep watching for new events until Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,
    /// Only events of this VM.
    #[arg(long, value_name = "NAME")]
    pub vm: Option<String>,
    /// How many past events to show first (server default: 50, or none with --follow).
    #[arg(long, value_name = "N")]
    pub history: Option<u32>,
}

/// `kctl node ...`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes.
    #[command(visible_alias = "ls")]
    List,
    /// Show one node.
    Get {
        /// Node name.
        node: String,
    },
    /// Place no new VMs on a node (its VMs keep running).
    Cordon {
        /// Node name.
        node: String,
    },
    /// Cordon a node and stop its VMs (gracefully; by force after --timeout).
    Drain {
        /// Node name.
        node: String,
        /// Seconds each VM gets to power off (default 30).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u32>,
        /// Kill the VMs at once (those that are stopped).
        #[arg(long)]
        force: bool,
        /// Stop every VM instead of live-migrating them to other nodes.
        #[arg(long)]
        stop: bool,
    },
    /// Let the scheduler use a cordoned node again.
    Uncordon {
        /// Node name.
        node: String,
    },
    /// Take a node without VMs out of the cluster and revoke its certificates (it may join
    /// again with a new token).
    #[command(visible_alias = "rm")]
    Remove {
        /// Node name.
        node: String,
    },
    /// Print a one-time token (alone on stdout) a new node joins with:
    /// `kcored node --controller HOST:PORT --join-token TOKEN --ca-cert ca.crt`.
    JoinToken {
        /// How long the token is valid, in seconds (default one hour).
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..))]
        ttl: Option<u32>,
    },
}

/// `kctl cert ...`.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Have the controller issue a client certificate: writes NAME.crt, NAME.key (0600) and
    /// ca.crt into --out and prints their paths.
    Issue {
        /// The certificate's name (its CN).
        name: String,
        /// What it may do: viewer (read-only) or admin (everything).
        #[arg(long, value_enum)]
        role: CertRole,
        /// The directory to write into (default: the current directory).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
    /// The certificates the controller issued, revoked ones included.
    #[command(visible_alias = "ls")]
    List,
    /// Revoke every certificate issued to NAME, or the one with --serial: refused from now
    /// on.
    Revoke {
        /// The certificates' name (CN).
        #[arg(required_unless_present = "serial", conflicts_with = "serial")]
        name: Option<String>,
        /// One certificate, by serial (hex, as `kctl cert list` shows it).
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
    },
}

/// The roles `kctl cert issue` can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertRole {
    Viewer,
    Admin,
}

impl CertRole {
    pub fn as_str(self) -> &'static str {
        match self {
            CertRole::Viewer => "viewer",
            CertRole::Admin => "admin",
        }
    }
}

/// `kctl pool ...`.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// List storage pools.
    #[command(visible_alias = "ls")]
    List {
        /// Only pools on this node.
        #[arg(long)]
        node: Option<String>,
    },
}

/// `kctl image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an image from a file on the node or an http(s) URL.
    Import(ImportArgs),
    /// List images.
    #[command(visible_alias = "ls")]
    List {
        /// Only images on this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Delete an image.
    #[command(visible_alias = "rm")]
    Delete {
        /// Image name.
        name: String,
        /// The node it is on (needed when several nodes have one by that name).
        #[arg(long)]
        node: Option<String>,
        /// The pool it is in (default: "default").
        #[arg(long)]
        pool: Option<String>,
    },
}

/// `kctl image import`.
#[derive(Debug, Args)]
#[command(
    after_help = "SOURCE is an http(s) URL or a path on the node. A path that exists on this \
machine is sent absolute (kcored all-in-one runs here); other paths are taken as the node's."
)]
pub struct ImportArgs {
    /// Image name: [a-z0-9][a-z0-9-]{0,62}.
    pub name: String,
    /// A path on the node, or an http(s) URL.
    pub source: String,
    /// Expected sha256 (64 hex digits); the import fails if the image's differs.
    #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
    pub sha256: Option<String>,
    /// Import on this node (default: the only node).
    #[arg(long)]
    pub node: Option<String>,
    /// The dir pool to keep it in (default: "default").
    #[arg(long)]
    pub pool: Option<String>,
}

/// `kctl volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List volumes.
    #[command(visible_alias = "ls")]
    List {
        /// Only volumes on this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Create an empty volume no VM uses yet (qcow2 in a dir pool, raw in an lvm pool),
    /// to attach later with `kctl vm disk attach VM --volume NAME`.
    Create {
        /// The volume's name.
        name: String,
        /// Its size in GiB.
        #[arg(long, value_name = "GIB")]
        size: u32,
        /// The pool to make it in.
        #[arg(long, default_value = "default")]
        pool: String,
        /// The node to make it on (needed when there are several).
        #[arg(long)]
        node: Option<String>,
    },
    /// Delete a volume no VM uses (refused while one does).
    #[command(visible_alias = "rm")]
    Delete {
        /// The volume's name.
        name: String,
        /// Its pool.
        #[arg(long, default_value = "default")]
        pool: String,
        /// The node it is on (needed only when several nodes have a volume of that name).
        #[arg(long)]
        node: Option<String>,
    },
}

/// `kctl template ...`.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Take a template of a RUNNING, ready VM without NICs: its memory, device state and a
    /// frozen copy of its disks, on its node. The VM pauses meanwhile, then runs on.
    Create {
        /// The template's name: [a-z0-9][a-z0-9-]{0,62}.
        name: String,
        /// The VM to take it of.
        #[arg(long, value_name = "VM")]
        from_vm: String,
        /// Stop the VM once its state is saved instead of letting it run on.
        #[arg(long)]
        stop_source: bool,
    },
    /// List templates.
    #[command(visible_alias = "ls")]
    List {
        /// Only templates on this node.
        #[arg(long)]
        node: Option<String>,
    },
    /// Show one template, with its clones.
    Get {
        /// The template's name.
        name: String,
    },
    /// Delete a template (refused while VMs cloned from it exist).
    #[command(visible_alias = "rm")]
    Delete {
        /// The template's name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kctl").chain(args.iter().copied()))
    }

    fn create(args: &[&str]) -> CreateArgs {
        let mut full = vec!["vm", "create", "web", "--vcpu", "2", "--memory", "512"];
        full.extend_from_slice(args);
        match parse(&full).expect("parses").command {
            Command::Vm(VmCommand::Create(c)) => *c,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn start_flag_forms() {
        assert!(create(&[]).start);
        assert!(create(&["--start"]).start);
        assert!(create(&["--start=true"]).start);
        assert!(!create(&["--start=false"]).start);
        assert!(!create(&["--start", "false"]).start);
        assert!(
            parse(&[
                "vm",
                "create",
                "w",
                "--vcpu",
                "1",
                "--memory",
                "1",
                "--start=maybe"
            ])
            .is_err()
        );
    }

    #[test]
    fn create_options() {
        let c = create(&[
            "--kernel",
            "vmlinuz",
            "--initrd",
            "initrd.img",
            "--cmdline",
            "console=ttyS0",
            "--machine",
            "microvm",
            "--restart",
            "on-failure",
            "--no-wait",
            "--node",
            "n1",
        ]);
        assert_eq!(c.kernel, Some(PathBuf::from("vmlinuz")));
        assert_eq!(c.machine, Some(Machine::Microvm));
        assert_eq!(c.restart, Some(Restart::OnFailure));
        assert!(c.no_wait);
        assert_eq!(c.node.as_deref(), Some("n1"));
        // --initrd needs --kernel.
        assert!(
            parse(&[
                "vm", "create", "w", "--vcpu", "1", "--memory", "1", "--initrd", "x"
            ])
            .is_err()
        );
        // --vcpu must be a number.
        assert!(parse(&["vm", "create", "w", "--vcpu", "x", "--memory", "1"]).is_err());
    }

    #[test]
    fn global_flags_anywhere() {
        let cli = parse(&["vm", "list", "-o", "json", "--endpoint", "unix:///x"]).expect("parses");
        assert_eq!(cli.output, Format::Json);
        assert_eq!(cli.endpoint.as_deref(), Some("unix:///x"));
        let cli = parse(&["-o", "yaml", "node", "list"]).expect("parses");
        assert_eq!(cli.output, Format::Yaml);
        assert!(parse(&["-o", "xml", "node", "list"]).is_err());
    }

    #[test]
    fn migrate_takes_a_node_and_its_limits() {
        assert!(parse(&["vm", "migrate", "w"]).is_err(), "--to is required");
        let cli = parse(&[
            "vm",
            "migrate",
            "w",
            "--to",
            "n2",
            "--timeout",
            "60",
            "--max-downtime",
            "100",
            "--bandwidth",
            "64",
        ])
        .expect("parses");
        match cli.command {
            Command::Vm(VmCommand::Migrate {
                name,
                to,
                timeout,
                max_downtime,
                bandwidth,
            }) => {
                assert_eq!((name.as_str(), to.as_str()), ("w", "n2"));
                assert_eq!(
                    (timeout, max_downtime, bandwidth),
                    (Some(60), Some(100), Some(64))
                );
            }
            _ => panic!("not vm migrate"),
        }
        assert!(parse(&["vm", "migrate", "w", "--to", "n2", "--bandwidth", "x"]).is_err());
    }

    #[test]
    fn console_modes() {
        assert!(parse(&["vm", "console", "w", "--follow", "--tail", "5"]).is_err());
        let cli = parse(&["vm", "console", "w", "--tail", "5"]).expect("parses");
        match cli.command {
            Command::Vm(VmCommand::Console(c)) => assert_eq!(c.tail, Some(5)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn stop_and_events() {
        let cli =
            parse(&["vm", "stop", "w", "--force", "--timeout", "5", "--no-wait"]).expect("parses");
        match cli.command {
            Command::Vm(VmCommand::Stop {
                force,
                timeout,
                no_wait,
                ..
            }) => assert!(force && timeout == Some(5) && no_wait),
            other => panic!("unexpected {other:?}"),
        }
        let cli = parse(&["events", "--follow", "--vm", "w", "--history", "10"]).expect("parses");
        match cli.command {
            Command::Events(e) => {
                assert!(e.follow);
                assert_eq!(e.vm.as_deref(), Some("w"));
                assert_eq!(e.history, Some(10));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn disk_specs() {
        assert_eq!(
            parse_disk("fast:20"),
            Ok(DiskRequest {
                pool: "fast".into(),
                size_gb: 20,
                volume: String::new(),
            })
        );
        assert_eq!(
            parse_disk("default:db-data"),
            Ok(DiskRequest {
                pool: "default".into(),
                size_gb: 0,
                volume: "db-data".into(),
            })
        );
        // Zero goes through: the server says why it is wrong.
        assert_eq!(parse_disk("fast:0").map(|d| d.size_gb), Ok(0));
        for bad in [
            "nocolon",
            "p:X",
            "p:",
            ":10",
            "p:-1",
            "p:1.5",
            "p:99999999999",
        ] {
            assert!(parse_disk(bad).is_err(), "{bad}");
        }
        let err = parse_disk("nocolon").expect_err("no colon");
        assert!(err.contains("POOL:SIZE_GB"), "{err}");
        let err = parse_disk("p:1.5").expect_err("bad size");
        assert!(err.contains("whole number of GiB"), "{err}");
    }

    #[test]
    fn create_storage_options() {
        let c = create(&[
            "--image",
            "debian-12",
            "--disk-size",
            "20",
            "--disk",
            "fast:10",
            "--disk",
            "default:0",
            "--root-pool",
            "fast",
            "--firmware",
            "uefi",
        ]);
        assert_eq!(c.image.as_deref(), Some("debian-12"));
        assert_eq!(c.kernel, None);
        assert_eq!(c.disk_size, Some(20));
        assert_eq!(c.disks.len(), 2);
        assert_eq!(c.disks[0].pool, "fast");
        assert_eq!(c.disks[1].size_gb, 0);
        assert_eq!(c.root_pool.as_deref(), Some("fast"));
        assert_eq!(c.firmware, Some(Firmware::Uefi));
        // --image combines with a kernel.
        let c = create(&[
            "--image",
            "i",
            "--kernel",
            "k",
            "--cmdline",
            "root=/dev/vda",
        ]);
        assert!(c.image.is_some() && c.kernel.is_some());
        // Neither is fine locally (the server says what is missing).
        assert!(create(&[]).image.is_none());
        let base = ["vm", "create", "w", "--vcpu", "1", "--memory", "1"];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
        };
        let err = with(&["--disk", "nocolon"]).expect_err("bad disk");
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("POOL:SIZE_GB"), "{err}");
        assert!(with(&["--disk", "p:X"]).is_err());
        assert!(
            with(&["--disk", "p:kept-vol"]).is_ok(),
            "an existing volume"
        );
        assert!(with(&["--firmware", "coreboot"]).is_err());
        // The boot disk options need an image.
        assert!(with(&["--disk-size", "10"]).is_err());
        assert!(with(&["--root-pool", "fast"]).is_err());
    }

    #[test]
    fn delete_keep_disks() {
        let cli = parse(&["vm", "rm", "w", "--keep-disks"]).expect("parses");
        match cli.command {
            Command::Vm(VmCommand::Delete {
                force, keep_disks, ..
            }) => assert!(keep_disks && !force),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn storage_commands() {
        let cli = parse(&[
            "image",
            "import",
            "debian",
            "./d.qcow2",
            "--sha256",
            &"AB".repeat(32),
            "--node",
            "n1",
            "--pool",
            "p",
        ])
        .expect("parses");
        match cli.command {
            Command::Image(ImageCommand::Import(a)) => {
                assert_eq!(a.name, "debian");
                assert_eq!(a.source, "./d.qcow2");
                assert_eq!(a.sha256, Some("ab".repeat(32)));
                assert_eq!(a.node.as_deref(), Some("n1"));
                assert_eq!(a.pool.as_deref(), Some("p"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["image", "import", "d", "x", "--sha256", "abc"]).is_err());
        assert!(parse(&["image", "import", "d"]).is_err());
        assert!(matches!(
            parse(&["image", "rm", "d", "--pool", "p"])
                .expect("parses")
                .command,
            Command::Image(ImageCommand::Delete {
                pool: Some(_),
                node: None,
                ..
            })
        ));
        assert!(matches!(
            parse(&["pool", "ls", "--node", "n"])
                .expect("parses")
                .command,
            Command::Pool(PoolCommand::List { node: Some(_) })
        ));
        assert!(matches!(
            parse(&["volume", "list"]).expect("parses").command,
            Command::Volume(VolumeCommand::List { node: None })
        ));
    }

    #[test]
    fn sha256_values() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(parse_sha256(&hex), Ok(hex.clone()));
        assert_eq!(parse_sha256(&hex.to_uppercase()), Ok(hex.clone()));
        assert!(parse_sha256(&hex[..63]).is_err());
        assert!(parse_sha256(&format!("{}g", &hex[..63])).is_err());
        assert!(parse_sha256("").is_err());
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_mib("512"), Ok(512));
        assert_eq!(parse_mib("512M"), Ok(512));
        assert_eq!(parse_mib("512MiB"), Ok(512));
        assert_eq!(parse_mib("2G"), Ok(2048));
        assert_eq!(parse_mib("2 GiB"), Ok(2048));
        assert_eq!(parse_mib("0"), Ok(0));
        assert!(parse_mib("1T").is_err());
        assert!(parse_mib("lots").is_err());
        assert!(parse_mib("99999999G").is_err());
    }
}

//! The command line: `kctl [--endpoint URL] [-o table|json|yaml] <noun> <verb> ...`.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use kcore_proto::v1::{MachineType, RestartPolicy};

use crate::output::Format;

/// kctl: manage kcore VMs and nodes.
#[derive(Debug, Parser)]
#[command(name = "kctl", version, about, propagate_version = true)]
pub struct Cli {
    /// The controller: unix:///path/to/kcore.sock or https://host:port. Default:
    /// $KCORE_ENDPOINT, then /run/kcore/kcore.sock if it exists, then `endpoint` in
    /// ~/.config/kcore/config.toml.
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
    Create(CreateArgs),
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
        /// Seconds to wait for the guest to power off before escalating (default 30).
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

/// `kctl vm create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// VM name: [a-z0-9][a-z0-9-]{0,62}.
    pub name: String,
    /// Number of vCPUs (the server checks it against the node).
    #[arg(long)]
    pub vcpu: u32,
    /// Memory in MiB (suffixes M/MiB, G/GiB are accepted too: 2G).
    #[arg(long, value_name = "MiB", value_parser = parse_mib)]
    pub memory: u32,
    /// Place the VM on this node (default: the scheduler picks).
    #[arg(long)]
    pub node: Option<String>,
    /// Kernel for direct boot (a path on the node; made absolute).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initrd for direct boot (a path on the node; made absolute).
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "STR", requires = "kernel")]
    pub cmdline: Option<String>,
    /// Machine type.
    #[arg(long, value_enum)]
    pub machine: Option<Machine>,
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
}

/// Parses a memory size in MiB: `512`, `512M`, `512MiB`, `2G`, `2GiB`.
pub fn parse_mib(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size in MiB (e.g. 512, 512M, 2G)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mi" | "mb" | "mib" => 1,
        "g" | "gi" | "gb" | "gib" => 1024,
        other => return Err(format!("unknown size unit {other:?} (use M or G)")),
    };
    let mib = value
        .checked_mul(factor)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("{s:?} is too large"))?;
    // Bounds (0, more than the host) are the server's to check, so every client gets the
    // same answer.
    Ok(mib)
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
            Command::Vm(VmCommand::Create(c)) => c,
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

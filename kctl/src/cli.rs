//! The command line: `kctl [--endpoint URL] [-o table|json|yaml] <noun> <verb> ...`.
//! The VM verbs are in [`vm`] (`vm create`'s arguments in [`create`]), the other nouns in
//! [`cluster`]; everything is re-exported here.

mod cluster;
mod create;
mod vm;

use clap::{Parser, Subcommand};

pub use self::cluster::{
    CertCommand, CertRole, EventsArgs, ImageCommand, ImportArgs, NodeCommand, PoolCommand,
    TemplateCommand, VolumeCommand,
};
pub use self::create::{CloudInitArgs, CreateArgs};
pub use self::vm::{ConsoleArgs, DiskCommand, SetArgs, VmCommand};
use crate::network::NetworkCommand;
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::CommandFactory;
    use kcore_proto::v1::DiskRequest;

    use super::create::{Firmware, Machine, Restart};
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

//! The nouns besides VMs: `kctl events`, `node`, `cert`, `pool`, `image`, `volume` and
//! `template`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::parse_sha256;

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

//! `kcored`'s command line: the roles (all-in-one, node, controller) and their flags. The
//! flags a role takes are checked here (`TuningArgs::tuning`) before anything is made.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kcore_vmm::host::AccelChoice;

use crate::controller;

#[derive(Parser, Debug)]
#[command(
    name = "kcored",
    version,
    about = "kcore daemon: QEMU/KVM VMs without libvirt"
)]
pub struct Cli {
    #[command(subcommand)]
    pub role: Role,
}

#[derive(Subcommand, Debug)]
pub enum Role {
    /// Controller and node agent in one process: one host, a laptop, the quickstart.
    AllInOne {
        #[command(flatten)]
        dirs: Dirs,
        #[command(flatten)]
        metrics: MetricsArgs,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        listen: ListenArgs,
        #[command(flatten)]
        tuning: TuningArgs,
    },
    /// A node agent alone, serving NodeAgent on <run-dir>/node.sock and, with --listen,
    /// on TCP with mutual TLS for a controller it joined (--controller).
    Node {
        #[command(flatten)]
        dirs: Dirs,
        #[command(flatten)]
        metrics: MetricsArgs,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        join: JoinArgs,
    },
    /// A controller alone, following the node agents given with --node and those that
    /// joined and registered over TCP.
    Controller {
        #[command(flatten)]
        dirs: Dirs,
        #[command(flatten)]
        metrics: MetricsArgs,
        /// A node agent's socket: unix:///run/kcore/node.sock (repeatable).
        #[arg(long = "node")]
        nodes: Vec<String>,
        #[command(flatten)]
        listen: ListenArgs,
        #[command(flatten)]
        tuning: TuningArgs,
    },
}

#[derive(Args, Debug)]
pub struct TuningArgs {
    /// Seconds between a node's heartbeats (capacity and VM states).
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub heartbeat_interval: f64,
    /// Seconds without a heartbeat after which a node is NotReady and its VMs UNKNOWN.
    #[arg(long, value_name = "SECS", default_value_t = 6.0)]
    pub node_timeout: f64,
    /// vCPUs placed on a node per cpu it has.
    #[arg(long, value_name = "RATIO", default_value_t = 4.0)]
    pub cpu_overcommit: f64,
    /// How long the certificates issued to nodes are valid, in seconds (they renew with a
    /// third of it left).
    #[arg(long, value_name = "SECS", default_value_t = 365 * 24 * 3600)]
    pub node_cert_lifetime: u64,
}

impl TuningArgs {
    pub fn tuning(&self) -> anyhow::Result<controller::Tuning> {
        let secs = |flag: &str, v: f64| {
            if v.is_finite() && (0.1..=3600.0).contains(&v) {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(anyhow::anyhow!("{flag} {v}: give 0.1 to 3600 seconds"))
            }
        };
        let heartbeat = secs("--heartbeat-interval", self.heartbeat_interval)?;
        let node_timeout = secs("--node-timeout", self.node_timeout)?;
        if node_timeout <= heartbeat {
            anyhow::bail!(
                "--node-timeout {} must be longer than --heartbeat-interval {}",
                self.node_timeout,
                self.heartbeat_interval
            );
        }
        if !(self.cpu_overcommit.is_finite() && (0.1..=64.0).contains(&self.cpu_overcommit)) {
            anyhow::bail!("--cpu-overcommit {}: give 0.1 to 64", self.cpu_overcommit);
        }
        if self.node_cert_lifetime < 10 {
            anyhow::bail!(
                "--node-cert-lifetime {}: give at least 10 seconds",
                self.node_cert_lifetime
            );
        }
        Ok(controller::Tuning {
            heartbeat,
            node_timeout,
            cpu_overcommit: self.cpu_overcommit,
            node_cert_lifetime: Duration::from_secs(self.node_cert_lifetime),
        })
    }
}

/// The opt-in Prometheus exposition.
#[derive(Args, Debug, Clone, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9100); off unless
    /// given. Plain HTTP: bind it to an address only your scraper reaches.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Args, Debug)]
pub struct Dirs {
    /// Persistent state: SQLite, VM specs.
    #[arg(long, default_value = "/var/lib/kcore", env = "KCORE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Runtime state: sockets, pidfiles, console logs.
    #[arg(long, default_value = "/run/kcore", env = "KCORE_RUN_DIR")]
    pub run_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct ListenArgs {
    /// Also serve the API on this TCP address (e.g. 127.0.0.1:9090 or 0.0.0.0:9090), with
    /// mutual TLS only: clients need a certificate signed by <data-dir>/pki/ca.crt.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// An extra DNS name or IP for the server certificate (repeatable). A server
    /// certificate that lacks one is issued again at start, keeping its other names.
    #[arg(long = "tls-san", value_name = "NAME")]
    pub tls_sans: Vec<String>,
}

/// A node joining a controller over TCP.
#[derive(Args, Debug)]
pub struct JoinArgs {
    /// The controller's TLS API address, HOST:PORT (its --listen).
    #[arg(long, value_name = "HOST:PORT", requires = "listen")]
    pub controller: Option<String>,
    /// A token from `kctl node join-token`, needed on the first start only (the node
    /// keeps its certificate in <data-dir>/pki/node.crt).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "KCORE_JOIN_TOKEN",
        requires = "controller"
    )]
    pub join_token: Option<String>,
    /// A file holding the join token (its first line), read only when the node joins (no
    /// certificate yet): keeps the token off the command line, which every local user can
    /// read. Once joined, the file is not needed (the token is spent: delete it).
    #[arg(
        long,
        value_name = "FILE",
        env = "KCORE_JOIN_TOKEN_FILE",
        requires = "controller",
        conflicts_with = "join_token"
    )]
    pub join_token_file: Option<PathBuf>,
    /// The cluster CA to trust (a copy of the controller's <data-dir>/pki/ca.crt); needed
    /// to join. Later starts use <data-dir>/pki/ca.crt.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Serve NodeAgent on this TCP address with mutual TLS (only the controller's
    /// certificate, OU=controller, is accepted).
    #[arg(long, value_name = "ADDR", requires = "controller")]
    pub listen: Option<SocketAddr>,
    /// The address the controller dials (default: --listen; required when --listen is
    /// 0.0.0.0 or ::).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// This node's name (default: the host name).
    #[arg(long, visible_alias = "name")]
    pub node_name: Option<String>,
    /// auto (KVM when /dev/kvm is usable), kvm or tcg.
    #[arg(long, default_value = "auto")]
    pub accel: AccelChoice,
    /// The unprivileged user QEMU runs as; "root" runs QEMU as root (not recommended).
    /// Each VM's QEMU gets a uid of its own after this user's (see --qemu-uids), with the
    /// user's group and supplementary groups (kvm).
    #[arg(long, default_value = "kcore-qemu")]
    pub qemu_user: String,
    /// How many uids after --qemu-user's are this node's per-VM QEMU uids (the most VMs
    /// it holds); 0 runs every QEMU as --qemu-user itself (weaker: QEMUs can then reach
    /// each other).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub qemu_uids: u32,
    #[arg(long, default_value = "qemu-system-x86_64")]
    pub qemu_binary: PathBuf,
    /// Run QEMU without its seccomp sandbox.
    #[arg(long)]
    pub no_sandbox: bool,
    /// A storage pool: NAME=dir:PATH or NAME=lvm:VG[/THINPOOL] (repeatable). Every node has
    /// a dir pool "default" under <data-dir>/pools/default unless one is given.
    #[arg(long = "pool", value_name = "NAME=TYPE:SOURCE")]
    pub pools: Vec<kcore_storage::PoolConfig>,
    /// Firmware for direct kernel boot on q35/pc; "" for QEMU's default (SeaBIOS).
    #[arg(long, default_value = "/usr/share/qemu/qboot.rom")]
    pub kernel_boot_bios: String,
    /// The cpus this node offers to VMs (default: the host's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub cpus: Option<u32>,
    /// The memory this node offers to VMs, in MiB (default: the host's).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(64..))]
    pub memory: Option<u32>,
    /// A directory whose files requests over TLS may name (image import sources, kernels,
    /// initrds; repeatable). Over the local socket, a caller may name any file it can read
    /// itself. Without one, TLS clients may import from http(s) URLs only.
    #[arg(long = "import-dir", value_name = "DIR")]
    pub import_dirs: Vec<PathBuf>,
    /// Seconds between samples of every VM's resource use (CPU, memory, disks, NICs); the
    /// node keeps the last hour of them in memory for GetVMStats.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub stats_interval: f64,
}

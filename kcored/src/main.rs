//! `kcored`: the kcore daemon. `all-in-one` runs the controller and a node agent in one
//! process (the controller still talks to the node through the `NodeAgent` API, over a
//! local unix socket); `node` and `controller` run one role each.

mod atomic_file;
mod auth;
mod caller;
mod cli;
mod controller;
mod convert;
mod dirs;
mod error;
mod hostpath;
mod memory;
mod metrics;
mod model;
mod netdef;
mod node;
mod node_tls;
mod pki;
mod server;
mod uds_h2;
#[cfg(test)]
mod validate_props;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Dirs, ListenArgs, MetricsArgs, NodeArgs, Role};
use kcore_proto::v1::node_agent_server::NodeAgentServer;
use kcore_vmm::host::{self, HostConfig};
use node::grpc::NodeAgentService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};

fn main() -> anyhow::Result<()> {
    // Before any thread exists (see memory.rs).
    memory::tune_allocator();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(memory::worker_threads())
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    dirs::private_umask();
    let dirs = match &cli.role {
        Role::AllInOne { dirs, .. } | Role::Node { dirs, .. } | Role::Controller { dirs, .. } => {
            dirs
        }
    };
    // Flags are checked before anything is made.
    if let Role::AllInOne { tuning, .. } | Role::Controller { tuning, .. } = &cli.role {
        tuning.tuning()?;
    }
    let pools = match &cli.role {
        Role::AllInOne { node, .. } | Role::Node { node, .. } => node.pools.clone(),
        Role::Controller { .. } => Vec::new(),
    };
    if let Role::AllInOne { node, .. } | Role::Node { node, .. } = &cli.role {
        stats_interval(node.stats_interval)?;
    }
    // Before anything in them is read or changed: one daemon per data dir and run dir.
    let _locks = dirs::take(&dirs.data_dir, &dirs.run_dir, &pools)?;
    let role = match &cli.role {
        Role::AllInOne { .. } => "all-in-one",
        Role::Node { .. } => "node",
        Role::Controller { .. } => "controller",
    };
    let mut m = metrics::Metrics::new(role, server::known_rpc_paths());
    // Code that ran once (start-up, a VM's start or stop) is let go whenever the daemon has
    // been quiet for a while: no request on its servers, no VM change (memory.rs).
    tokio::spawn(memory::release_when_quiet(m.rpc.activity().clone()));
    match cli.role {
        Role::AllInOne {
            dirs,
            metrics,
            node,
            listen,
            tuning,
        } => all_in_one(dirs, node, listen, tuning.tuning()?, m, metrics).await,
        Role::Node {
            dirs,
            metrics,
            node,
            join,
        } => {
            let Some(controller) = join.controller.clone() else {
                let n = start_node(&dirs, node, &mut m).await?;
                let serve = serve_node(&dirs, n, &m).await?;
                serve_metrics(m, &metrics).await?;
                return wait_for_signal(serve).await;
            };
            let name = node_name(node.node_name.clone())?;
            let pki_dir = node_tls::node_identity(
                &dirs.data_dir,
                &name,
                &controller,
                node_tls::JoinToken::from_args(
                    join.join_token.clone(),
                    join.join_token_file.clone(),
                ),
                join.ca_cert.as_deref(),
            )
            .await?;
            let n = start_node(&dirs, node, &mut m).await?;
            let unix = serve_node(&dirs, n.clone(), &m).await?;
            let listen = join
                .listen
                .context("--listen is required with --controller")?;
            let advertise = match &join.advertise {
                Some(a) => a.clone(),
                None if listen.ip().is_unspecified() => {
                    anyhow::bail!("--listen {listen} is a wildcard: give --advertise HOST:PORT")
                }
                None => listen.to_string(),
            };
            let (tcp, mut tcp_failed) =
                node_tls::NodeTlsServer::start(listen, &pki_dir, n, m.rpc.clone()).await?;
            serve_metrics(m, &metrics).await?;
            tokio::spawn(node_tls::renew_loop(controller.clone(), tcp));
            tokio::spawn(node_tls::register_loop(
                controller, pki_dir, name, advertise,
            ));
            tokio::select! {
                r = wait_for_signal(unix) => r,
                Some(e) = tcp_failed.recv() => Err(e),
            }
        }
        Role::Controller {
            dirs,
            metrics,
            nodes,
            listen,
            tuning,
        } => {
            let ctl = open_controller(&dirs, tuning.tuning()?)?;
            if nodes.is_empty() && listen.listen.is_none() {
                anyhow::bail!(
                    "a controller needs --node unix:///path/to/node.sock or --listen ADDR (for \
                     nodes that join)"
                );
            }
            for n in nodes {
                let path = n
                    .strip_prefix("unix://")
                    .context("--node must be unix:///path/to/node.sock")?;
                let ch = server::dial_unix(path.into()).await?;
                ctl.add_node(n.clone(), ch).await?;
            }
            let serve = serve_controller(&dirs, ctl, &listen, &mut m).await?;
            serve_metrics(m, &metrics).await?;
            wait_for_signal(serve).await
        }
    }
}

/// `--stats-interval`, checked.
fn stats_interval(secs: f64) -> anyhow::Result<Duration> {
    if secs.is_finite() && (0.2..=600.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        anyhow::bail!("--stats-interval {secs}: give 0.2 to 600 seconds")
    }
}

/// Serve `/metrics` when `--metrics-listen` was given.
async fn serve_metrics(m: metrics::Metrics, args: &MetricsArgs) -> anyhow::Result<()> {
    match args.metrics_listen {
        Some(addr) => m.serve(addr).await,
        None => Ok(()),
    }
}

fn find_binary(name: &std::path::Path) -> anyhow::Result<PathBuf> {
    if name.is_absolute() {
        return Ok(name.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{} not found in PATH: install QEMU (apt-get install qemu-system-x86)",
                name.display()
            )
        })
}

/// Start the node agent: its VMs, and the service answering NodeAgent calls.
async fn start_node(
    dirs: &Dirs,
    a: NodeArgs,
    m: &mut metrics::Metrics,
) -> anyhow::Result<NodeAgentService> {
    let qemu_binary = find_binary(&a.qemu_binary)?;
    let run_as = if a.qemu_user == "root" {
        None
    } else {
        Some(host::lookup_user(&a.qemu_user)?)
    };
    let bios = (!a.kernel_boot_bios.is_empty())
        .then(|| PathBuf::from(&a.kernel_boot_bios))
        .filter(|p| p.is_file());
    let qemu_uids = match &run_as {
        Some(r) if a.qemu_uids > 0 => {
            let range = node::uids::UidRange::after(r.uid, a.qemu_uids);
            let defs = std::fs::read_to_string("/etc/login.defs").unwrap_or_default();
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            range
                .check(&a.qemu_user, &defs, &passwd)
                .map_err(|e| anyhow::anyhow!("--qemu-user {}: {e}", a.qemu_user))?;
            Some(range)
        }
        _ => None,
    };
    let accel = host::resolve_accel(a.accel, run_as.as_ref())?;
    let host_cfg = HostConfig {
        qemu_binary: qemu_binary.clone(),
        accel,
        run_as,
        sandbox: !a.no_sandbox,
        kernel_boot_bios: bios,
        tsc_khz: host::host_tsc_khz(),
        kernel_cache: Some(Arc::new(kcore_vmm::kernel::KernelCache::new(
            dirs.data_dir.join("kernels"),
        ))),
        run_root: dirs.run_dir.join("vms"),
        qmp_greeting_timeout: Duration::from_secs(30),
        qmp_observer: Some(m.qmp.observer()),
    };
    let name = node_name(a.node_name)?;
    let paths = hostpath::HostPaths::new(&name, &a.import_dirs)?;
    let cfg = node::NodeConfig {
        pools: a.pools,
        name,
        data_dir: dirs.data_dir.clone(),
        run_dir: dirs.run_dir.clone(),
        host: Arc::new(host_cfg),
        limits: {
            let host = host::host_limits();
            kcore_vmm::spec::HostLimits {
                cpus: a.cpus.unwrap_or(host.cpus),
                memory_mib: a.memory.unwrap_or(host.memory_mib),
            }
        },
        qemu_version: host::qemu_version(&qemu_binary)?,
        qemu_uids,
        stats_interval: stats_interval(a.stats_interval)?,
    };
    tracing::info!(accel = accel.as_str(), qemu = %cfg.qemu_version, "starting node");
    let node = node::Node::start(cfg).await?;
    m.rpc.activity().watch(node.subscribe());
    m.registry()
        .register_collector(Box::new(metrics::vm::VmCollector::new(node.clone())));
    Ok(NodeAgentService::new(node, paths))
}

/// The node's name: --node-name, else the host name.
fn node_name(given: Option<String>) -> anyhow::Result<String> {
    let name = match given {
        Some(n) => n,
        None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
    };
    kcore_types::NodeName::parse(&name).map_err(|e| anyhow::anyhow!("--node-name: {e}"))?;
    Ok(name)
}

type Serving = tokio::task::JoinHandle<Result<(), tonic::transport::Error>>;

async fn serve_node(
    dirs: &Dirs,
    n: NodeAgentService,
    m: &metrics::Metrics,
) -> anyhow::Result<Serving> {
    let path = dirs.run_dir.join("node.sock");
    let incoming = server::bind_unix(&path, 0o600).await?;
    let svc = NodeAgentServer::new(n);
    Ok(tokio::spawn(
        Server::builder()
            .layer(m.rpc.layer())
            .add_service(svc)
            .serve_with_incoming(incoming),
    ))
}

fn open_controller(
    dirs: &Dirs,
    tuning: controller::Tuning,
) -> anyhow::Result<Arc<controller::Controller>> {
    std::fs::create_dir_all(&dirs.data_dir)
        .with_context(|| format!("create {}", dirs.data_dir.display()))?;
    let db = dirs.data_dir.join("controller.db");
    // The message names the file and the problem (a newer schema, a damaged file, ...).
    let store = controller::store::Store::open(&db).map_err(anyhow::Error::new)?;
    let ctl = controller::Controller::new(store, tuning);
    ctl.load_revoked()?;
    Ok(ctl)
}

async fn serve_controller(
    dirs: &Dirs,
    ctl: Arc<controller::Controller>,
    listen: &ListenArgs,
    m: &mut metrics::Metrics,
) -> anyhow::Result<Serving> {
    ctl.metrics.register(m.registry());
    m.registry()
        .register_collector(Box::new(metrics::cluster::ClusterCollector::new(
            ctl.clone(),
        )));
    let mut sans = listen.tls_sans.clone();
    if let Some(addr) = listen.listen.filter(|a| !a.ip().is_unspecified()) {
        sans.push(addr.ip().to_string());
    }
    let pki = pki::ensure_pki(&dirs.data_dir.join("pki"), &sans)?;
    // The certificates made here are on the list too (revocable, shown by kctl cert list).
    for f in [pki::ADMIN_CERT, pki::CONTROLLER_CERT] {
        if let Ok(pem) = pki.read(f) {
            ctl.record_issued(&String::from_utf8_lossy(&pem));
        }
    }
    match (
        pki.read(pki::CONTROLLER_CERT),
        pki.read(pki::CONTROLLER_KEY),
    ) {
        (Ok(cert), Ok(key)) => {
            let _ = ctl.node_tls.set(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(pki.read(pki::CA_CERT)?))
                    .identity(Identity::from_pem(cert, key)),
            );
            ctl.follow_registered_nodes()?;
        }
        _ => tracing::warn!("no controller certificate: joined nodes are not followed"),
    }
    tracing::info!(
        cert = %pki.path(pki::ADMIN_CERT).display(),
        key = %pki.path(pki::ADMIN_KEY).display(),
        ca = %pki.path(pki::CA_CERT).display(),
        "admin client certificate"
    );
    let routes = server::api_routes(ctl.clone(), pki.dir.clone()).await?;
    let tcp = match listen.listen {
        Some(addr) => Some(serve_tls(addr, &pki, &ctl, routes.clone(), &m.rpc).await?),
        None => None,
    };
    let path = dirs.run_dir.join("kcore.sock");
    let incoming = server::bind_unix(&path, 0o660).await?;
    server::chgrp_if_exists(&path, "kcore");
    tracing::info!(socket = %path.display(), "serving KcoreService");
    let unix = Server::builder()
        .layer(m.rpc.layer())
        .add_routes(routes)
        .serve_with_incoming(incoming);
    Ok(tokio::spawn(async move {
        match tcp {
            None => unix.await,
            Some(tcp) => tokio::select! {
                r = unix => r,
                r = tcp => r,
            },
        }
    }))
}

/// `routes` (KcoreService, health and reflection) on TCP with mutual TLS: a client
/// certificate signed by our CA is required, and its role (see [`auth`]) decides what it
/// may call. JoinService alone answers without a client certificate.
async fn serve_tls(
    addr: SocketAddr,
    pki: &pki::Pki,
    ctl: &Arc<controller::Controller>,
    routes: tonic::service::Routes,
    rpc: &metrics::rpc::RpcMetrics,
) -> anyhow::Result<impl Future<Output = Result<(), tonic::transport::Error>> + use<>> {
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            pki.read(pki::SERVER_CERT)?,
            pki.read(pki::SERVER_KEY)?,
        ))
        .client_ca_root(Certificate::from_pem(pki.read(pki::CA_CERT)?))
        // A certificate, when given, must be signed by the CA; without one only JoinService
        // answers (auth.rs refuses everything else with UNAUTHENTICATED).
        .client_auth_optional(true)
        .timeout(Duration::from_secs(10));
    if !addr.ip().is_unspecified()
        && let Ok(sans) = pki.server_sans()
        && !sans.contains(&addr.ip().to_string())
    {
        tracing::warn!(
            listen = %addr, sans = ?sans,
            "the existing server certificate does not name the --listen IP: clients must \
             connect by a name it has (or remove pki/server.crt and server.key to re-issue)"
        );
    }
    let incoming = TcpIncoming::bind(addr)
        .with_context(|| format!("--listen {addr}: bind"))?
        .with_nodelay(Some(true));
    let join = kcore_proto::v1::join_service_server::JoinServiceServer::new(
        controller::join::JoinApi::new(ctl.clone(), pki.dir.clone()),
    );
    tracing::info!(listen = %addr, "serving KcoreService with mutual TLS");
    Ok(Server::builder()
        .tls_config(tls)
        .context("--listen: TLS configuration")?
        // Outermost, so calls the auth layer refuses are counted too.
        .layer(rpc.layer())
        .layer(auth::AuthLayer {
            policy: auth::Policy::Api,
            revoked: ctl.revoked.clone(),
        })
        .add_routes(routes)
        .add_service(join)
        .serve_with_incoming(incoming))
}

async fn all_in_one(
    dirs: Dirs,
    node_args: NodeArgs,
    listen: ListenArgs,
    tuning: controller::Tuning,
    mut m: metrics::Metrics,
    metrics: MetricsArgs,
) -> anyhow::Result<()> {
    // The store first: a controller.db this build cannot serve stops the daemon before the
    // node makes anything (sockets, run dirs, networks).
    let ctl = open_controller(&dirs, tuning)?;
    let n = start_node(&dirs, node_args, &mut m).await?;
    let node_serving = serve_node(&dirs, n, &m).await?;
    let ch = server::dial_unix(dirs.run_dir.join("node.sock")).await?;
    let address = format!("unix://{}", dirs.run_dir.join("node.sock").display());
    ctl.add_node(address, ch).await?;
    let api_serving = serve_controller(&dirs, ctl, &listen, &mut m).await?;
    serve_metrics(m, &metrics).await?;
    tokio::select! {
        r = wait_for_signal(api_serving) => r,
        r = node_serving => {
            r??;
            anyhow::bail!("node agent server stopped")
        }
    }
}

/// Run until SIGINT/SIGTERM (QEMU processes keep running) or the server fails.
async fn wait_for_signal(serving: Serving) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: exiting, VMs keep running"),
        _ = term.recv() => tracing::info!("SIGTERM: exiting, VMs keep running"),
        r = serving => {
            r??;
            anyhow::bail!("server stopped");
        }
    }
    Ok(())
}

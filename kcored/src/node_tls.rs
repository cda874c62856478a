//! A joined node's TCP side: joining (a join token traded for a certificate), registering
//! its address with the controller, `NodeAgent` served with mutual TLS on its certificate,
//! and the renewal of that certificate before it expires.
//!
//! Renewal (a third of the lifetime left, checked every tenth of it, at most hourly): a new
//! key and CSR go to the controller's `RenewNodeCertificate` over mTLS with the current
//! certificate; the new pair replaces the files, and the listener is served again with it.
//! Serving again binds a second listener on the same port (SO_REUSEPORT) before the old
//! server stops accepting, so no connection is refused, and the old server's open
//! connections (the controller's channel, authenticated when it was made) carry on.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use kcore_proto::v1::node_agent_server::NodeAgentServer;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

use crate::{auth, node, pki};

/// The NodeAgent TLS listener, which can be served again with new certificate files.
pub struct NodeTlsServer {
    addr: SocketAddr,
    pki_dir: PathBuf,
    service: node::grpc::NodeAgentService,
    rpc: crate::metrics::rpc::RpcMetrics,
    stop_current: tokio::sync::Mutex<Option<oneshot::Sender<()>>>,
    failed: mpsc::UnboundedSender<anyhow::Error>,
}

impl NodeTlsServer {
    /// Bind `addr` and serve; a server that fails is reported on the returned channel.
    pub async fn start(
        addr: SocketAddr,
        pki_dir: &Path,
        service: node::grpc::NodeAgentService,
        rpc: crate::metrics::rpc::RpcMetrics,
    ) -> anyhow::Result<(Arc<NodeTlsServer>, mpsc::UnboundedReceiver<anyhow::Error>)> {
        // SO_REUSEPORT would let a second daemon share the port unnoticed: probe first.
        drop(
            std::net::TcpListener::bind(addr)
                .with_context(|| format!("--listen {addr}: bind (is another kcored there?)"))?,
        );
        let (failed, failures) = mpsc::unbounded_channel();
        let s = Arc::new(NodeTlsServer {
            addr,
            pki_dir: pki_dir.to_path_buf(),
            service,
            rpc,
            stop_current: tokio::sync::Mutex::new(None),
            failed,
        });
        s.serve().await?;
        tracing::info!(listen = %addr, "serving NodeAgent with mutual TLS");
        Ok((s, failures))
    }

    /// Serve with the certificate files as they are now; the previous server stops
    /// accepting once the new one listens.
    async fn serve(&self) -> anyhow::Result<()> {
        let read = |f: &str| {
            std::fs::read(self.pki_dir.join(f))
                .with_context(|| format!("read {}", self.pki_dir.join(f).display()))
        };
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                read(pki::NODE_CERT)?,
                read(pki::NODE_KEY)?,
            ))
            .client_ca_root(Certificate::from_pem(read(pki::CA_CERT)?))
            .timeout(Duration::from_secs(10));
        let socket = match self.addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }?;
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket
            .bind(self.addr)
            .with_context(|| format!("--listen {}: bind", self.addr))?;
        let incoming = TcpIncoming::from(socket.listen(1024)?).with_nodelay(Some(true));
        let svc = NodeAgentServer::new(self.service.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = Server::builder()
            .tls_config(tls)
            .context("--listen: TLS configuration")?
            .layer(self.rpc.layer())
            .layer(auth::AuthLayer {
                policy: auth::Policy::NodeAgent,
                // Only the controller's certificate is accepted here; the revocation list
                // lives on the controller.
                revoked: auth::Revoked::default(),
            })
            .add_service(svc)
            // Told to stop, the accept loop ends and the listener closes; the connections
            // it accepted are served on (no GOAWAY), so the controller's channel and its
            // stream keep working.
            .serve_with_incoming(futures::StreamExt::take_until(incoming, async {
                let _ = stopped.await;
            }));
        let failed = self.failed.clone();
        tokio::spawn(async move {
            if let Err(e) = server.await {
                let _ = failed.send(anyhow::Error::new(e).context("NodeAgent TLS server"));
            }
        });
        if let Some(old) = self.stop_current.lock().await.replace(stop) {
            let _ = old.send(());
        }
        Ok(())
    }
}

/// How long until the next look at the certificate: a tenth of its lifetime, 1 s to 1 h.
fn check_every(cert_pem: &[u8]) -> Duration {
    pki::validity_of(cert_pem)
        .ok()
        .and_then(|(from, to)| to.duration_since(from).ok())
        .map_or(Duration::from_secs(3600), |l| {
            (l / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
        })
}

/// Renew the node certificate whenever it is due, for as long as the node runs.
pub async fn renew_loop(controller: String, server: Arc<NodeTlsServer>) {
    loop {
        let cert_path = server.pki_dir.join(pki::NODE_CERT);
        let wait = match std::fs::read(&cert_path) {
            Ok(pem) => {
                match pki::renewal_due(&pem) {
                    Ok(true) => match renew_once(&controller, &server).await {
                        Ok(until) => tracing::info!(
                            valid_until = %crate::convert::rfc3339(until),
                            "renewed the node certificate"
                        ),
                        Err(e) => tracing::warn!(
                            error = %format!("{e:#}"),
                            "cannot renew the node certificate yet"
                        ),
                    },
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, path = %cert_path.display(), "bad node certificate")
                    }
                }
                check_every(&pem)
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %cert_path.display(), "cannot read");
                Duration::from_secs(60)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// A channel to the controller's API over mutual TLS with this node's certificate, and the
/// CA certificate (PEM) it trusts.
pub async fn dial_controller(
    controller: &str,
    pki_dir: &Path,
) -> anyhow::Result<(tonic::transport::Channel, Vec<u8>)> {
    let read = |f: &str| {
        std::fs::read(pki_dir.join(f))
            .with_context(|| format!("read {}", pki_dir.join(f).display()))
    };
    let ca = read(pki::CA_CERT)?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca))
        .identity(Identity::from_pem(
            read(pki::NODE_CERT)?,
            read(pki::NODE_KEY)?,
        ));
    let ch = Endpoint::from_shared(format!("https://{controller}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("connect to the controller at {controller}"))?;
    Ok((ch, ca))
}

/// One renewal; returns the new certificate's end of validity.
async fn renew_once(controller: &str, server: &NodeTlsServer) -> anyhow::Result<SystemTime> {
    let dir = &server.pki_dir;
    let (ch, ca) = dial_controller(controller, dir).await?;
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    let resp = kcore_proto::v1::kcore_service_client::KcoreServiceClient::new(ch)
        .renew_node_certificate(kcore_proto::v1::RenewNodeCertificateRequest { csr_pem: csr })
        .await
        .map_err(|s| anyhow::anyhow!("{} ({:?})", s.message(), s.code()))?
        .into_inner();
    if resp.ca_pem.trim() != String::from_utf8_lossy(&ca).trim() {
        anyhow::bail!("the controller answered with another CA");
    }
    let (_, until) = pki::validity_of(resp.cert_pem.as_bytes())?;
    pki::replace_pair(
        dir,
        pki::NODE_CERT,
        pki::NODE_KEY,
        resp.cert_pem.as_bytes(),
        key.serialize_pem().as_bytes(),
    )?;
    server.serve().await?;
    Ok(until)
}

/// Where a node's join token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinToken {
    None,
    /// --join-token (or $KCORE_JOIN_TOKEN).
    Given(String),
    /// --join-token-file: read only when the node joins.
    File(PathBuf),
}

impl JoinToken {
    pub fn from_args(token: Option<String>, file: Option<PathBuf>) -> JoinToken {
        match (token, file) {
            (_, Some(f)) => JoinToken::File(f),
            (Some(t), None) => JoinToken::Given(t),
            (None, None) => JoinToken::None,
        }
    }

    /// The token, read from its file now if it is in one.
    fn read(&self, pki_dir: &Path) -> anyhow::Result<String> {
        let token = match self {
            JoinToken::None => anyhow::bail!(
                "no node certificate in {}: give --join-token or --join-token-file (from kctl \
                 node join-token) and --ca-cert to join",
                pki_dir.display()
            ),
            JoinToken::Given(t) => t.trim().to_string(),
            JoinToken::File(f) => std::fs::read_to_string(f)
                .with_context(|| format!("--join-token-file {}: cannot read it", f.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        if token.is_empty() {
            match self {
                JoinToken::File(f) => anyhow::bail!(
                    "--join-token-file {} is empty: put a token from kctl node join-token in it",
                    f.display()
                ),
                _ => anyhow::bail!("the join token is empty"),
            }
        }
        Ok(token)
    }
}

/// The node's certificate in <data-dir>/pki (node.crt, node.key, ca.crt): kept from an
/// earlier join, else made now by redeeming the join token at the controller (the key is
/// made here; the controller signs a CSR). Returns the directory.
pub async fn node_identity(
    data_dir: &Path,
    name: &str,
    controller: &str,
    join_token: JoinToken,
    ca_cert: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join("pki");
    if dir.join(pki::NODE_CERT).exists() && dir.join(pki::NODE_KEY).exists() {
        if pki::repair_pair(&dir, pki::NODE_CERT, pki::NODE_KEY)? {
            tracing::warn!("the last certificate renewal was cut short: using the previous pair");
        }
        return Ok(dir);
    }
    let token = join_token.read(&dir)?;
    let ca_path =
        ca_cert.context("--ca-cert is required to join (a copy of the controller's pki/ca.crt)")?;
    let ca =
        std::fs::read_to_string(ca_path).with_context(|| format!("read {}", ca_path.display()))?;
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca));
    let ch = Endpoint::from_shared(format!("https://{controller}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("--controller {controller}: connect"))?;
    let resp = kcore_proto::v1::join_service_client::JoinServiceClient::new(ch)
        .join(kcore_proto::v1::JoinRequest {
            token,
            node_name: name.to_string(),
            csr_pem: csr,
        })
        .await
        .map_err(|s| anyhow::anyhow!("join {controller}: {} ({:?})", s.message(), s.code()))?
        .into_inner();
    if resp.ca_pem.trim() != ca.trim() {
        anyhow::bail!("the controller's CA is not {}", ca_path.display());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let ca_file = dir.join(pki::CA_CERT);
    if !ca_file.exists() {
        pki::write_new(&ca_file, resp.ca_pem.as_bytes(), 0o644)?;
    }
    pki::write_new(
        &dir.join(pki::NODE_KEY),
        key.serialize_pem().as_bytes(),
        0o600,
    )?;
    pki::write_new(&dir.join(pki::NODE_CERT), resp.cert_pem.as_bytes(), 0o644)?;
    tracing::info!(node = name, controller, "joined the cluster");
    Ok(dir)
}

/// Tell the controller where this node listens, with the node's certificate; retried
/// every 2 s until it succeeds (the controller may be down, or not yet able to dial back).
pub async fn register_loop(controller: String, pki_dir: PathBuf, name: String, advertise: String) {
    loop {
        match register_once(&controller, &pki_dir, &name, &advertise).await {
            Ok(()) => {
                tracing::info!(
                    controller,
                    address = advertise,
                    "registered with the controller"
                );
                return;
            }
            Err(e) => tracing::warn!(controller, error = %format!("{e:#}"), "cannot register yet"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn register_once(
    controller: &str,
    pki_dir: &Path,
    name: &str,
    advertise: &str,
) -> anyhow::Result<()> {
    let (ch, _) = dial_controller(controller, pki_dir).await?;
    kcore_proto::v1::kcore_service_client::KcoreServiceClient::new(ch)
        .register_node(kcore_proto::v1::RegisterNodeRequest {
            name: name.to_string(),
            address: advertise.to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{} ({:?})", s.message(), s.code()))?;
    Ok(())
}

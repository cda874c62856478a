//! The mock served as kcored serves its API: on a unix socket (no roles), or over TCP with
//! mutual TLS where a client certificate is optional at the handshake and every call
//! without one, or outside its role, is refused the way kcored/src/auth.rs refuses it.

use std::process::{Command, Output};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use kcore_proto::v1::kcore_service_server::KcoreServiceServer;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::Status;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::texts::{CERT_REQUIRED, ROLE_MAY_NOT};
use super::{Mock, Pki, Records, World, kctl_command, run};

/// The methods a viewer may call (kcored/src/auth.rs, READ_METHODS; the texts test checks
/// the two lists agree).
pub const VIEWER_METHODS: &[&str] = &[
    "ListVMs",
    "GetVM",
    "ListNodes",
    "GetNodeStatus",
    "WatchEvents",
    "GetConsoleLog",
    "ListPools",
    "ListImages",
    "ListVolumes",
    "ListNetworks",
    "GetNetwork",
    "GetVMStats",
    "ListTemplates",
    "GetTemplate",
];

/// A running mock, alive until dropped.
pub struct Server {
    _runtime: tokio::runtime::Runtime,
    /// A temp dir: kctl's HOME and working directory, and the unix socket's dir.
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    /// What clients sent.
    pub records: Records,
}

impl Server {
    /// On `<dir>/kcore.sock`, answering from the default world.
    pub fn unix() -> Self {
        Self::unix_with(|_| {})
    }

    /// On `<dir>/kcore.sock`, answering from the default world as `change` leaves it.
    pub fn unix_with(change: impl FnOnce(&mut World)) -> Self {
        let mut world = World::default();
        change(&mut world);
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("kcore.sock");
        let mock = Mock::new(world, Arc::new(Pki::new()));
        let records = mock.records.clone();
        let listener = {
            let _guard = runtime.enter();
            tokio::net::UnixListener::bind(&socket).expect("bind")
        };
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(KcoreServiceServer::new(mock))
                .serve_with_incoming(UnixListenerStream::new(listener)),
        );
        Self {
            _runtime: runtime,
            endpoint: format!("unix://{}", socket.display()),
            dir,
            records,
        }
    }

    /// On 127.0.0.1 with mutual TLS by `pki`'s CA; the endpoint names `localhost`.
    pub fn tls(pki: Arc<Pki>) -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(
                pki.read("server.pem"),
                pki.read("server.key"),
            ))
            .client_ca_root(Certificate::from_pem(pki.read("ca.pem")))
            .client_auth_optional(true);
        let mock = Mock::new(World::default(), pki);
        let records = mock.records.clone();
        let server = tonic::transport::Server::builder()
            .tls_config(tls)
            .expect("tls config")
            .layer(tower::layer::layer_fn(|inner| Auth { inner }))
            .add_service(KcoreServiceServer::new(mock))
            .serve_with_incoming(TcpListenerStream::new(listener));
        runtime.spawn(server);
        Self {
            _runtime: runtime,
            dir: tempfile::tempdir().expect("tempdir"),
            endpoint: format!("https://localhost:{port}"),
            records,
        }
    }

    pub fn kctl(&self, args: &[&str]) -> Output {
        run(self.command(args), b"")
    }

    /// kctl with `--endpoint` this server.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = kctl_command(self.dir.path());
        command.arg("--endpoint").arg(&self.endpoint).args(args);
        command
    }
}

/// kcored's check of a TLS request (kcored/src/auth.rs, check_with and authorize; the
/// mock's certificates are neither revoked nor of other roles).
fn check<B>(req: &http::Request<B>) -> Result<(), Status> {
    let required = || Status::unauthenticated(CERT_REQUIRED.fill(&[]));
    let certs = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .ok_or_else(required)?;
    let leaf = certs.first().ok_or_else(required)?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).expect("rustls checked it");
    let role = cert
        .subject()
        .iter_organizational_unit()
        .find_map(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let path = req.uri().path();
    let method = path.strip_prefix("/kcore.v1.KcoreService/");
    if role == "admin" || (role == "viewer" && method.is_some_and(|m| VIEWER_METHODS.contains(&m)))
    {
        return Ok(());
    }
    Err(Status::permission_denied(
        ROLE_MAY_NOT.fill(&[&role, method.unwrap_or(path)]),
    ))
}

/// The tower service applying [`check`] to every request.
#[derive(Clone)]
struct Auth<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match check(&req) {
            Ok(()) => Either::Left(self.inner.call(req)),
            Err(status) => Either::Right(ready(Ok(status.into_http()))),
        }
    }
}

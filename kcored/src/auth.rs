//! Who may call what on the TCP (mutual TLS) listener.
//!
//! The role comes from the client certificate, which the TLS layer has already verified
//! against our CA: subject `O=kcore, OU=<role>`. `admin` may call everything, `viewer` only
//! the read methods of `kcore.v1.KcoreService`, `node` nothing of the public API. Health and
//! reflection are open to any valid certificate. `kcore.v1.JoinService` (a node trading a
//! join token for its certificate) is the only service open without a certificate: the TLS
//! layer makes client certificates optional, and every other call without one is refused
//! here with UNAUTHENTICATED. Connections over the unix socket carry no
//! certificate and are not checked here (the socket's file mode controls access).
//!
//! This is a tower layer on the HTTP request rather than a tonic interceptor, because an
//! interceptor does not see the method (the URI path `/kcore.v1.KcoreService/CreateVM`).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use tonic::Status;
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The Organization every kcore client certificate carries.
pub const ORGANIZATION: &str = "kcore";

/// The public API's path prefix.
const API_PREFIX: &str = "/kcore.v1.KcoreService/";

/// Methods of `kcore.v1.KcoreService` a viewer may call.
pub const READ_METHODS: &[&str] = &[
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

/// Methods of `kcore.v1.KcoreService` a node may call.
pub const NODE_METHODS: &[&str] = &["RegisterNode", "RenewNodeCertificate"];

/// The service callable without a client certificate.
const JOIN_PREFIX: &str = "/kcore.v1.JoinService/";

/// Services any valid certificate may call.
const OPEN_PREFIXES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// A client's role, from the OrganizationalUnit of its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read-only methods.
    Viewer,
    /// A node agent: of the public API only `RegisterNode` (itself).
    Node,
    /// The controller, calling node agents' `NodeAgent` over TCP.
    Controller,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Node => "node",
            Role::Controller => "controller",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            "node" => Ok(Role::Node),
            "controller" => Ok(Role::Controller),
            other => Err(format!(
                "unknown role {other:?}: use admin, viewer, node or controller"
            )),
        }
    }
}

/// The role in a DER client certificate: `O=kcore`, `OU=<role>`.
pub fn role_of_cert(der: &[u8]) -> Result<Role, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("cannot parse the client certificate: {e}"))?;
    let subject = cert.subject();
    let org = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .collect::<Vec<_>>();
    if org != [ORGANIZATION] {
        return Err(format!(
            "the client certificate ({subject}) is not a kcore certificate (O={ORGANIZATION})"
        ));
    }
    let ou = subject
        .iter_organizational_unit()
        .filter_map(|a| a.as_str().ok())
        .collect::<Vec<_>>();
    match ou.as_slice() {
        [one] => one
            .parse()
            .map_err(|e| format!("the client certificate ({subject}) has an {e}")),
        _ => Err(format!(
            "the client certificate ({subject}) names no single role (OU=admin|viewer|node)"
        )),
    }
}

/// The CommonName of a DER certificate.
pub fn cn_of_cert(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string)
}

/// Whether `role` may call the gRPC method at `path` (`/package.Service/Method`).
pub fn authorize(path: &str, role: Role) -> Result<(), Status> {
    if role == Role::Admin || OPEN_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return Ok(());
    }
    let method = path.strip_prefix(API_PREFIX);
    if role == Role::Viewer && method.is_some_and(|m| READ_METHODS.contains(&m)) {
        return Ok(());
    }
    if role == Role::Node && method.is_some_and(|m| NODE_METHODS.contains(&m)) {
        return Ok(());
    }
    let what = method.unwrap_or(path);
    Err(Status::permission_denied(format!(
        "role {role} may not call {what}"
    )))
}

/// Serials (lowercase hex) of revoked certificates, shared with the controller.
pub type Revoked = Arc<RwLock<HashSet<String>>>;

/// The serial of a DER certificate, as [`crate::pki::serial_hex`] writes it.
pub fn serial_of_cert(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(crate::pki::serial_hex(cert.raw_serial()))
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The controller's API port: roles as in [`authorize`], JoinService open.
    #[default]
    Api,
    /// A node agent's TCP port: only the controller's certificate (OU=controller).
    NodeAgent,
}

/// Checks one request by its connection: TLS with a client certificate is checked by
/// role; a connection without connect info of TCP kind (the unix socket) passes.
#[cfg(test)]
pub fn check<B>(req: &http::Request<B>) -> Result<(), Status> {
    check_with(req, Policy::Api, &Revoked::default())
}

/// [`check`] for the listener `policy` names, refusing revoked certificates.
pub fn check_with<B>(
    req: &http::Request<B>,
    policy: Policy,
    revoked: &Revoked,
) -> Result<(), Status> {
    let ext = req.extensions();
    if let Some(tls) = ext.get::<TlsConnectInfo<TcpConnectInfo>>() {
        if policy == Policy::Api && req.uri().path().starts_with(JOIN_PREFIX) {
            // The join token authenticates (the TLS layer still checks any certificate).
            return Ok(());
        }
        let required =
            || Status::unauthenticated("a client certificate signed by the cluster CA is required");
        let certs = tls.peer_certs().ok_or_else(required)?;
        let leaf = certs.first().ok_or_else(required)?;
        if let Some(serial) = serial_of_cert(leaf)
            && revoked
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&serial)
        {
            return Err(Status::unauthenticated(format!(
                "this certificate ({}, serial {serial}) was revoked",
                cn_of_cert(leaf).unwrap_or_default()
            )));
        }
        let role = role_of_cert(leaf).map_err(Status::permission_denied)?;
        if policy == Policy::NodeAgent {
            if role == Role::Controller {
                return Ok(());
            }
            return Err(Status::permission_denied(format!(
                "role {role} may not call a node agent: only the controller may"
            )));
        }
        if role == Role::Controller {
            return Err(Status::permission_denied(
                "role controller may not call the public API",
            ));
        }
        return authorize(req.uri().path(), role);
    }
    if ext.get::<TcpConnectInfo>().is_some() {
        // Not served: TCP is always TLS. Refuse rather than trust if that ever changes.
        return Err(Status::unauthenticated(
            "plain TCP is not allowed: use mutual TLS",
        ));
    }
    Ok(())
}

/// The tower layer applying [`check_with`] to every request.
#[derive(Debug, Clone, Default)]
pub struct AuthLayer {
    pub policy: Policy,
    pub revoked: Revoked,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            policy: self.policy,
            revoked: self.revoked.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    policy: Policy,
    revoked: Revoked,
}

impl<S, B, R> tower::Service<http::Request<B>> for AuthService<S>
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
        match check_with(&req, self.policy, &self.revoked) {
            Ok(()) => Either::Left(self.inner.call(req)),
            Err(status) => {
                tracing::info!(path = req.uri().path(), error = status.message(), "denied");
                Either::Right(ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_calls_everything() {
        for p in [
            "/kcore.v1.KcoreService/CreateVM",
            "/kcore.v1.KcoreService/ListVMs",
            "/grpc.health.v1.Health/Check",
            "/kcore.v1.NodeAgent/DefineVM",
        ] {
            assert!(authorize(p, Role::Admin).is_ok(), "{p}");
        }
    }

    #[test]
    fn viewer_reads_only() {
        for m in READ_METHODS {
            let p = format!("{API_PREFIX}{m}");
            assert!(authorize(&p, Role::Viewer).is_ok(), "{p}");
        }
        let e = authorize("/kcore.v1.KcoreService/CreateVM", Role::Viewer).expect_err("create");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert_eq!(e.message(), "role viewer may not call CreateVM");
        for m in [
            "DeleteVM",
            "AttachConsole",
            "ExecQMP",
            "StopVM",
            "CreateNetwork",
            "DeleteNetwork",
            "AttachNic",
            "DetachNic",
            "IssueCertificate",
            "UpdateVM",
        ] {
            let p = format!("{API_PREFIX}{m}");
            assert!(authorize(&p, Role::Viewer).is_err(), "{p}");
        }
        assert!(
            authorize(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                Role::Viewer
            )
            .is_ok()
        );
    }

    #[test]
    fn node_gets_no_public_api() {
        let e = authorize("/kcore.v1.KcoreService/ListVMs", Role::Node).expect_err("list");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(authorize("/kcore.v1.KcoreService/RegisterNode", Role::Node).is_ok());
        assert!(authorize("/kcore.v1.KcoreService/RegisterNode", Role::Viewer).is_err());
        assert!(authorize("/kcore.v1.KcoreService/CreateJoinToken", Role::Node).is_err());
        assert!(authorize("/grpc.health.v1.Health/Check", Role::Node).is_ok());
    }

    #[test]
    fn unix_socket_passes_plain_tcp_does_not() {
        let req = http::Request::builder()
            .uri("/kcore.v1.KcoreService/CreateVM")
            .body(())
            .expect("request");
        assert!(check(&req).is_ok());
        let mut req = req;
        req.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: None,
        });
        let e = check(&req).expect_err("plain tcp");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn roles_parse() {
        assert_eq!("viewer".parse::<Role>(), Ok(Role::Viewer));
        assert!("root".parse::<Role>().is_err());
    }
}

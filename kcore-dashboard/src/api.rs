//! The dashboard's connection to kcored, made exactly as kctl makes its own (kcore-client:
//! `--endpoint`, `KCORE_*`, the local socket, the config file; mutual TLS). The endpoint is
//! resolved once at start; the connection is made at the first page and kept (tonic
//! reconnects it), so the dashboard starts, and explains itself, while kcored is away.
//! Every call is bounded by [`CALL_TIMEOUT`].

use std::future::Future;
use std::time::Duration;

use kcore_client::{Client, Resolved, TlsFiles};
use kcore_proto::v1::kcore_service_client::KcoreServiceClient;
use tokio::sync::Mutex;
use tonic::transport::Channel;

use crate::error::DashError;

/// The longest a page waits for one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// The API, connected on first use.
#[derive(Debug)]
pub struct Api {
    endpoint: Resolved,
    client: Mutex<Option<Client>>,
    identity: String,
}

impl Api {
    pub fn new(endpoint: Resolved) -> Api {
        let identity = describe_identity(&endpoint);
        Api {
            endpoint,
            client: Mutex::new(None),
            identity,
        }
    }

    /// Which identity the dashboard uses, for every page's header.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The endpoint as resolved.
    pub fn endpoint(&self) -> &str {
        &self.endpoint.raw
    }

    async fn client(&self) -> Result<Client, DashError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = tokio::time::timeout(CALL_TIMEOUT, kcore_client::connect(self.endpoint.clone()))
            .await
            .map_err(|_| DashError::Timeout(CALL_TIMEOUT.as_secs()))??;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// One call: `f` gets the gRPC client; a failed status becomes an error that names the
    /// endpoint when the transport failed.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, DashError>
    where
        F: FnOnce(KcoreServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client().await?;
        match tokio::time::timeout(CALL_TIMEOUT, f(client.api())).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(DashError::Api(client.error(status))),
            Err(_) => Err(DashError::Timeout(CALL_TIMEOUT.as_secs())),
        }
    }

    /// The gRPC client for a long call (the event stream), without the call timeout.
    pub async fn raw(&self) -> Result<Client, DashError> {
        self.client().await
    }
}

/// "a viewer certificate (CN=dash, OU=viewer) over mutual TLS to https://...", or "the
/// local socket /run/kcore/kcore.sock as uid 1000 (alice)".
pub fn describe_identity(endpoint: &Resolved) -> String {
    match &endpoint.target {
        kcore_client::endpoint::Target::Unix(path) => {
            let uid = nix::unistd::getuid();
            let user = nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| format!(" ({})", u.name))
                .unwrap_or_default();
            format!(
                "the local socket {} as uid {}{user}: every call is allowed there; a \
                 viewer certificate over TLS is recommended",
                path.display(),
                uid.as_raw()
            )
        }
        kcore_client::endpoint::Target::Https { .. } => match cert_subject(&endpoint.tls) {
            Some((cn, role)) => format!(
                "the {role} certificate CN={cn} (OU={role}) over mutual TLS to {}",
                endpoint.raw
            ),
            None => format!(
                "no client certificate over TLS to {}: kcored will refuse it (set \
                 KCORE_CLIENT_CERT and KCORE_CLIENT_KEY to a viewer certificate)",
                endpoint.raw
            ),
        },
        kcore_client::endpoint::Target::Http(_) => {
            format!("plain HTTP to {} (no identity)", endpoint.raw)
        }
    }
}

/// CommonName and role (OrganizationalUnit) of the client certificate.
fn cert_subject(tls: &TlsFiles) -> Option<(String, String)> {
    let pem = match tls.client_cert.as_ref()? {
        kcore_client::Pem::File(p) => std::fs::read(p).ok()?,
        kcore_client::Pem::Inline(t) => t.as_bytes().to_vec(),
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or("?")
        .to_string();
    let role = subject
        .iter_organizational_unit()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or("unknown")
        .to_string();
    Some((cn, role))
}

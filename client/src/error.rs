//! Turning gRPC failures into messages a person can act on.
//!
//! A status the server sent prints as `<message> (<Code>)`. A status tonic made up locally
//! from a transport failure (connection refused, TLS handshake rejected, connection closed
//! because the server refused our client certificate, ...) names the endpoint and suggests
//! what to check instead.

use std::error::Error as _;
use std::fmt;
use std::path::PathBuf;

use tonic::{Code, Status};

/// Everything that can go wrong finding, reaching or calling kcore.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing said where kcore is.
    #[error("{0}")]
    NoEndpoint(String),
    /// An endpoint string that is not one of the accepted forms.
    #[error("{0}")]
    Endpoint(String),
    /// An endpoint that is not a URI.
    #[error("invalid endpoint {raw:?}")]
    InvalidUri {
        /// The endpoint as given.
        raw: String,
        /// Why it does not parse.
        #[source]
        source: tonic::codegen::http::uri::InvalidUri,
    },
    /// The config file exists but cannot be read.
    #[error("reading {}", path.display())]
    ReadConfig {
        /// The config file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML of the expected shape.
    #[error("parsing {}", path.display())]
    ParseConfig {
        /// The config file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A certificate or key file cannot be read.
    #[error("reading the {what} {}", path.display())]
    ReadPem {
        /// Which one (CA certificate, client certificate, client key).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS material is incomplete.
    #[error("{0}")]
    Tls(String),
    /// tonic refused the TLS configuration.
    #[error("configuring TLS: {0}")]
    TlsConfig(String),
    /// The endpoint could not be reached, or the connection failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The server answered with an error status.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ClientError {
    /// The gRPC code the server answered with, for an [`ClientError::Api`] error.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Api(e) => Some(e.code),
            _ => None,
        }
    }
}

/// An error status returned by the kcore API.
#[derive(Debug)]
pub struct ApiError {
    /// The gRPC status code.
    pub code: Code,
    /// The server's message.
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = if self.message.is_empty() {
            self.code.description()
        } else {
            &self.message
        };
        write!(f, "{message} ({:?})", self.code)
    }
}

impl std::error::Error for ApiError {}

/// What kind of endpoint a transport error happened on, for the hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A local unix socket.
    Unix,
    /// Plain HTTP/2 over TCP.
    Plain,
    /// mTLS over TCP.
    Tls {
        /// Whether a client certificate was configured.
        client_cert: bool,
    },
}

/// A failure to talk to the endpoint at all.
#[derive(Debug)]
pub struct TransportError {
    /// The endpoint as the user gave it (or as it was resolved).
    pub endpoint: String,
    /// The transport kind.
    pub transport: Transport,
    /// The error and its causes, joined.
    pub detail: String,
    /// The status code tonic chose, when the failure surfaced as a status.
    pub code: Option<Code>,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot talk to kcore at {}: {}",
            self.endpoint, self.detail
        )?;
        if let Some(code) = self.code {
            write!(f, " ({code:?})")?;
        }
        let hint = match self.transport {
            Transport::Unix => {
                "is kcored running, and may you open the socket (try sudo, or the kcore group)?"
            }
            Transport::Plain => "is kcored running and listening there?",
            Transport::Tls { client_cert: false } => {
                "no client certificate is configured, and kcored requires one: set \
                 KCORE_CLIENT_CERT and KCORE_CLIENT_KEY (or client_cert and client_key in \
                 ~/.config/kcore/config.toml)"
            }
            Transport::Tls { client_cert: true } => {
                "check that kcored is reachable and that your client certificate and key \
                 (KCORE_CLIENT_CERT / KCORE_CLIENT_KEY or client_cert / client_key in \
                 ~/.config/kcore/config.toml) are valid and signed by the cluster CA \
                 (KCORE_CA_CERT / ca_cert)"
            }
        };
        write!(f, "\nhint: {hint}")
    }
}

impl std::error::Error for TransportError {}

/// Whether a status was produced locally from a transport failure rather than sent by the
/// server. Statuses decoded from a response never carry a source error; those tonic builds
/// from connection errors do.
pub fn is_transport(status: &Status) -> bool {
    status.source().is_some() || status.message().starts_with("Service was not ready")
}

/// Maps a status from an RPC to an [`ApiError`] or a [`TransportError`].
pub fn from_status(status: Status, endpoint: &str, transport: Transport) -> ClientError {
    // kcored's TLS port accepts connections without a client certificate (for nodes that
    // join) and refuses their calls: explain that like a refused handshake.
    let no_cert = transport == Transport::Tls { client_cert: false }
        && status.code() == Code::Unauthenticated;
    if is_transport(&status) || no_cert {
        TransportError {
            endpoint: endpoint.to_string(),
            transport,
            detail: status_detail(&status),
            code: Some(status.code()),
        }
        .into()
    } else {
        ApiError {
            code: status.code(),
            message: status.message().to_string(),
        }
        .into()
    }
}

/// A locally made status's message followed by its causes (a status's own `Display` is a
/// debugging dump).
fn status_detail(status: &Status) -> String {
    let mut out = status.message().to_string();
    let mut source = status.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// Joins an error's message with those of its sources, skipping repeats (tonic and hyper
/// often embed the cause in the outer message).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_status_prints_message_and_code() {
        let err = from_status(
            Status::not_found("vm \"web\" not found"),
            "unix:///run/kcore/kcore.sock",
            Transport::Unix,
        );
        assert_eq!(err.to_string(), "vm \"web\" not found (NotFound)");
        let err = from_status(Status::new(Code::Internal, ""), "x", Transport::Unix);
        assert_eq!(err.to_string(), "Internal error (Internal)");
    }

    #[test]
    fn local_transport_status_names_endpoint() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection closed");
        let status = Status::from_error(Box::new(io));
        assert!(is_transport(&status));
        let err = from_status(
            status,
            "https://kc.example:7443",
            Transport::Tls { client_cert: true },
        );
        let text = err.to_string();
        assert!(
            text.starts_with("cannot talk to kcore at https://kc.example:7443: connection closed"),
            "{text}"
        );
        assert!(text.contains("client certificate"), "{text}");
    }
}

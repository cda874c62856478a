//! Finding the kcore controller and connecting to it.
//!
//! The endpoint is, in order: `--endpoint`, `$KCORE_ENDPOINT`, the local controller socket
//! when it exists (`$KCORE_SOCKET`, by default `/run/kcore/kcore.sock`), then `endpoint` in
//! `~/.config/kcore/config.toml` (`$XDG_CONFIG_HOME/kcore/config.toml` when that is set). Endpoints are
//! `unix:///path/to/kcore.sock` (or a bare absolute path), `https://host:port` (mutual TLS)
//! or `http://host:port` (plain, for development).
//!
//! For `https`, the CA certificate and the client certificate and key come from
//! `$KCORE_CA_CERT`, `$KCORE_CLIENT_CERT` and `$KCORE_CLIENT_KEY`, else from `ca_cert`,
//! `client_cert` and `client_key` in the config file (relative paths there are relative to
//! the file's directory). A client that takes them from elsewhere (the Terraform provider's
//! configuration) puts them in [`Resolved::tls`] before [`connect`]; each is a file or the
//! PEM text itself ([`Pem`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use kcore_proto::v1::kcore_service_client::KcoreServiceClient;
use serde::Deserialize;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

use crate::error::{self, ClientError, Transport, TransportError};

type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The controller's local socket, used when it exists and nothing else was given (unless
/// `$KCORE_SOCKET` names another).
pub const LOCAL_SOCKET: &str = "/run/kcore/kcore.sock";

/// The local socket to try: `$KCORE_SOCKET` (a path; a kcored started with another
/// `--run-dir` listens at `<run-dir>/kcore.sock`), else [`LOCAL_SOCKET`].
pub fn local_socket(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("KCORE_SOCKET")
        .filter(|s| !s.is_empty())
        .map_or_else(|| PathBuf::from(LOCAL_SOCKET), PathBuf::from)
}

/// The error when no endpoint resolves, naming the local socket that was tried.
pub fn no_endpoint(local_socket: &Path) -> String {
    format!(
        "no kcore endpoint: pass --endpoint, set KCORE_ENDPOINT, or run kcored locally ({})",
        local_socket.display()
    )
}

/// The URI handed to tonic for unix sockets; the connector ignores it.
const UNIX_DUMMY_URI: &str = "http://[::]:50051";

/// `~/.config/kcore/config.toml`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ConfigFile {
    /// The endpoint to use when no other is given.
    pub endpoint: Option<String>,
    /// PEM CA certificate that signed the controller's certificate.
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate.
    pub client_cert: Option<PathBuf>,
    /// PEM client key.
    pub client_key: Option<PathBuf>,
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A unix socket path.
    Unix(PathBuf),
    /// `https://host:port` with mutual TLS; `host` is the TLS server name.
    Https {
        /// The URI as given.
        uri: String,
        /// The host part, without IPv6 brackets.
        host: String,
    },
    /// `http://host:port`, no TLS.
    Http(String),
}

/// Where the endpoint came from (for tests and diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--endpoint`.
    Flag,
    /// `$KCORE_ENDPOINT`.
    Env,
    /// The local controller socket.
    LocalSocket,
    /// The config file at this path.
    Config(PathBuf),
}

/// A PEM certificate or key: a file to read, or the text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    /// A file holding the PEM text.
    File(PathBuf),
    /// The PEM text (`-----BEGIN ...`).
    Inline(String),
}

impl Pem {
    /// The PEM text itself when `value` holds a `-----BEGIN` line, else a file path.
    pub fn parse(value: &str) -> Pem {
        if value.contains("-----BEGIN ") {
            Pem::Inline(value.to_string())
        } else {
            Pem::File(PathBuf::from(value))
        }
    }

    fn read(&self, what: &'static str) -> Result<Vec<u8>> {
        match self {
            Pem::File(path) => std::fs::read(path).map_err(|source| ClientError::ReadPem {
                what,
                path: path.clone(),
                source,
            }),
            Pem::Inline(text) => Ok(text.as_bytes().to_vec()),
        }
    }
}

impl From<PathBuf> for Pem {
    fn from(path: PathBuf) -> Pem {
        Pem::File(path)
    }
}

impl From<&str> for Pem {
    fn from(path: &str) -> Pem {
        Pem::File(PathBuf::from(path))
    }
}

/// Certificates and key for mutual TLS.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate.
    pub ca_cert: Option<Pem>,
    /// Client certificate.
    pub client_cert: Option<Pem>,
    /// Client key.
    pub client_key: Option<Pem>,
}

/// A resolved endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The endpoint string, for messages.
    pub raw: String,
    /// Where to connect.
    pub target: Target,
    /// Where it came from.
    pub source: Source,
    /// TLS files (only filled for `https`).
    pub tls: TlsFiles,
}

impl Resolved {
    /// The transport kind, for error hints.
    pub fn transport(&self) -> Transport {
        match self.target {
            Target::Unix(_) => Transport::Unix,
            Target::Https { .. } => Transport::Tls {
                client_cert: self.tls.client_cert.is_some(),
            },
            Target::Http(_) => Transport::Plain,
        }
    }
}

/// The config file path: `$XDG_CONFIG_HOME/kcore/config.toml` or
/// `$HOME/.config/kcore/config.toml`.
pub fn default_config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = env("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(Path::new(&dir).join("kcore/config.toml"));
    }
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".config/kcore/config.toml"))
}

/// Reads the process environment (empty values count as unset).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Resolves the endpoint from the flag, the environment, the local socket and the config
/// file, in that order. `env` looks up environment variables; `local_socket` and
/// `config_path` are parameters so tests can point them elsewhere.
pub fn resolve(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    local_socket: &Path,
    config_path: Option<&Path>,
) -> Result<Resolved> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let mut config: Option<ConfigFile> = None;

    let (raw, source) = if let Some(flag) = flag.filter(|f| !f.is_empty()) {
        (flag.to_string(), Source::Flag)
    } else if let Some(value) = env("KCORE_ENDPOINT") {
        (value, Source::Env)
    } else if local_socket.exists() {
        (
            format!("unix://{}", local_socket.display()),
            Source::LocalSocket,
        )
    } else {
        let none = || ClientError::NoEndpoint(no_endpoint(local_socket));
        let path = config_path.ok_or_else(none)?;
        let file = load_config(path)?.unwrap_or_default();
        let endpoint = file
            .endpoint
            .clone()
            .filter(|e| !e.is_empty())
            .ok_or_else(none)?;
        config = Some(file);
        (endpoint, Source::Config(path.to_path_buf()))
    };

    let target = parse_target(&raw)?;
    let mut tls = TlsFiles::default();
    if matches!(target, Target::Https { .. }) {
        if config.is_none()
            && let Some(path) = config_path
        {
            config = load_config(path)?;
        }
        let file = config.unwrap_or_default();
        let base = config_path.and_then(Path::parent);
        let pick = |var: &str, from_file: Option<PathBuf>| -> Option<Pem> {
            env(var)
                .map(|v| expand_home(Path::new(&v), &env))
                .or_else(|| from_file.map(|p| relative_to(&expand_home(&p, &env), base)))
                .map(Pem::File)
        };
        tls = TlsFiles {
            ca_cert: pick("KCORE_CA_CERT", file.ca_cert),
            client_cert: pick("KCORE_CLIENT_CERT", file.client_cert),
            client_key: pick("KCORE_CLIENT_KEY", file.client_key),
        };
    }
    Ok(Resolved {
        raw,
        target,
        source,
        tls,
    })
}

/// Reads and parses the config file; `None` when it does not exist.
fn load_config(path: &Path) -> Result<Option<ConfigFile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ClientError::ReadConfig {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let file = toml::from_str(&text).map_err(|source| ClientError::ParseConfig {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    Ok(Some(file))
}

fn expand_home(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match (path.strip_prefix("~"), env("HOME")) {
        (Ok(rest), Some(home)) => Path::new(&home).join(rest),
        _ => path.to_path_buf(),
    }
}

fn relative_to(path: &Path, base: Option<&Path>) -> PathBuf {
    match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    }
}

/// Parses an endpoint string.
pub fn parse_target(raw: &str) -> Result<Target> {
    if let Some(rest) = raw
        .strip_prefix("unix://")
        .or_else(|| raw.strip_prefix("unix:"))
    {
        if rest.is_empty() {
            return Err(ClientError::Endpoint(format!(
                "invalid endpoint {raw:?}: no socket path (use unix:///path/to/kcore.sock)"
            )));
        }
        return Ok(Target::Unix(PathBuf::from(rest)));
    }
    if raw.starts_with('/') {
        return Ok(Target::Unix(PathBuf::from(raw)));
    }
    if raw.starts_with("https://") || raw.starts_with("http://") {
        let uri: Uri = raw.parse().map_err(|source| ClientError::InvalidUri {
            raw: raw.to_string(),
            source,
        })?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| ClientError::Endpoint(format!("invalid endpoint {raw:?}: no host")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        return Ok(if uri.scheme_str() == Some("https") {
            Target::Https {
                uri: raw.to_string(),
                host,
            }
        } else {
            Target::Http(raw.to_string())
        });
    }
    Err(ClientError::Endpoint(format!(
        "unsupported endpoint {raw:?}: use unix:///path/to/kcore.sock or https://host:port"
    )))
}

/// A connected API client that knows its endpoint, to explain transport errors.
#[derive(Debug, Clone)]
pub struct Client {
    api: KcoreServiceClient<Channel>,
    endpoint: Resolved,
}

impl Client {
    /// A handle for one or more calls (cheap: the channel is shared).
    pub fn api(&self) -> KcoreServiceClient<Channel> {
        self.api.clone()
    }

    /// Maps an RPC status to an error naming the endpoint when the transport failed.
    pub fn error(&self, status: tonic::Status) -> ClientError {
        error::from_status(status, &self.endpoint.raw, self.endpoint.transport())
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &Resolved {
        &self.endpoint
    }
}

/// Connects to a resolved endpoint.
pub async fn connect(endpoint: Resolved) -> Result<Client> {
    let transport_error = |detail: String| TransportError {
        endpoint: endpoint.raw.clone(),
        transport: endpoint.transport(),
        detail,
        code: None,
    };
    let channel = match &endpoint.target {
        Target::Unix(path) => {
            let path = path.clone();
            Endpoint::from_static(UNIX_DUMMY_URI)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(&path).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream))
                    }
                }))
                .await
                .map_err(|e| ClientError::from(transport_error(error::chain(&e))))?
        }
        Target::Http(uri) => endpoint_of(uri)?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| transport_error(error::chain(&e)))?,
        Target::Https { uri, host } => {
            let tls = tls_config(&endpoint.tls, host)?;
            endpoint_of(uri)?
                .tls_config(tls)
                .map_err(|e| ClientError::TlsConfig(error::chain(&e)))?
                .connect_timeout(Duration::from_secs(10))
                .connect()
                .await
                .map_err(|e| ClientError::from(transport_error(error::chain(&e))))?
        }
    };
    Ok(Client {
        api: KcoreServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
        endpoint,
    })
}

fn endpoint_of(uri: &str) -> Result<Endpoint> {
    Endpoint::from_shared(uri.to_string()).map_err(|e| {
        ClientError::Endpoint(format!("invalid endpoint {uri:?}: {}", error::chain(&e)))
    })
}

fn tls_config(files: &TlsFiles, host: &str) -> Result<ClientTlsConfig> {
    let ca = files.ca_cert.as_ref().ok_or_else(|| {
        ClientError::Tls(
            "an https endpoint needs the cluster CA certificate: set KCORE_CA_CERT or ca_cert \
             in ~/.config/kcore/config.toml"
                .to_string(),
        )
    })?;
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.read("CA certificate")?))
        .domain_name(host.to_string());
    match (&files.client_cert, &files.client_key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                cert.read("client certificate")?,
                key.read("client key")?,
            ));
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(ClientError::Tls(
                "a client certificate was given without its key (KCORE_CLIENT_KEY / client_key)"
                    .to_string(),
            ));
        }
        (None, Some(_)) => {
            return Err(ClientError::Tls(
                "a client key was given without its certificate (KCORE_CLIENT_CERT / client_cert)"
                    .to_string(),
            ));
        }
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }
        fn socket(&self) -> PathBuf {
            self.dir.path().join("kcore.sock")
        }
        fn config(&self) -> PathBuf {
            self.dir.path().join("config.toml")
        }
        fn write_config(&self, text: &str) {
            std::fs::write(self.config(), text).expect("write config");
        }
        fn make_socket(&self) {
            std::fs::write(self.socket(), "").expect("touch socket");
        }
    }

    #[test]
    fn nothing_resolves_gives_the_clear_error() {
        let f = Fixture::new();
        let none = no_endpoint(&f.socket());
        assert!(
            none.ends_with(&format!("({})", f.socket().display())),
            "{none}"
        );
        let err =
            resolve(None, &env_of(&[]), &f.socket(), Some(&f.config())).expect_err("must fail");
        assert_eq!(err.to_string(), none);
        let err = resolve(None, &env_of(&[]), &f.socket(), None).expect_err("must fail");
        assert_eq!(err.to_string(), none);
        f.write_config("ca_cert = \"/x\"\n");
        let err =
            resolve(None, &env_of(&[]), &f.socket(), Some(&f.config())).expect_err("must fail");
        assert_eq!(err.to_string(), none);
    }

    #[test]
    fn kcore_socket_overrides_the_local_socket() {
        assert_eq!(local_socket(&env_of(&[])), PathBuf::from(LOCAL_SOCKET));
        assert_eq!(
            local_socket(&env_of(&[("KCORE_SOCKET", "")])),
            PathBuf::from(LOCAL_SOCKET)
        );
        assert_eq!(
            local_socket(&env_of(&[("KCORE_SOCKET", "/tmp/kc/run/kcore.sock")])),
            PathBuf::from("/tmp/kc/run/kcore.sock")
        );
        assert_eq!(
            no_endpoint(Path::new(LOCAL_SOCKET)),
            "no kcore endpoint: pass --endpoint, set KCORE_ENDPOINT, or run kcored locally \
             (/run/kcore/kcore.sock)"
        );
    }

    #[test]
    fn precedence_flag_env_socket_config() {
        let f = Fixture::new();
        f.make_socket();
        f.write_config("endpoint = \"unix:///from/config.sock\"\n");
        let env = env_of(&[("KCORE_ENDPOINT", "unix:///from/env.sock")]);

        let r = resolve(
            Some("/from/flag.sock"),
            &env,
            &f.socket(),
            Some(&f.config()),
        )
        .expect("flag");
        assert_eq!(r.source, Source::Flag);
        assert_eq!(r.target, Target::Unix("/from/flag.sock".into()));

        let r = resolve(None, &env, &f.socket(), Some(&f.config())).expect("env");
        assert_eq!(r.source, Source::Env);
        assert_eq!(r.target, Target::Unix("/from/env.sock".into()));

        let r = resolve(
            None,
            &env_of(&[("KCORE_ENDPOINT", "")]),
            &f.socket(),
            Some(&f.config()),
        )
        .expect("socket");
        assert_eq!(r.source, Source::LocalSocket);
        assert_eq!(r.target, Target::Unix(f.socket()));

        std::fs::remove_file(f.socket()).expect("rm socket");
        let r = resolve(None, &env_of(&[]), &f.socket(), Some(&f.config())).expect("config");
        assert_eq!(r.source, Source::Config(f.config()));
        assert_eq!(r.target, Target::Unix("/from/config.sock".into()));
    }

    #[test]
    fn tls_files_from_env_override_config() {
        let f = Fixture::new();
        f.write_config(
            "endpoint = \"https://kc.example:7443\"\nca_cert = \"ca.pem\"\n\
             client_cert = \"/etc/kcore/me.pem\"\nclient_key = \"~/me.key\"\n",
        );
        let env = env_of(&[("HOME", "/home/op")]);
        let r = resolve(None, &env, &f.socket(), Some(&f.config())).expect("config");
        assert_eq!(
            r.target,
            Target::Https {
                uri: "https://kc.example:7443".into(),
                host: "kc.example".into()
            }
        );
        assert_eq!(r.tls.ca_cert, Some(f.dir.path().join("ca.pem").into()));
        assert_eq!(r.tls.client_cert, Some("/etc/kcore/me.pem".into()));
        assert_eq!(r.tls.client_key, Some("/home/op/me.key".into()));

        let env = env_of(&[
            ("HOME", "/home/op"),
            ("KCORE_ENDPOINT", "https://[fd00::1]:7443"),
            ("KCORE_CLIENT_CERT", "/env/cert.pem"),
        ]);
        let r = resolve(None, &env, &f.socket(), Some(&f.config())).expect("env");
        assert_eq!(
            r.target,
            Target::Https {
                uri: "https://[fd00::1]:7443".into(),
                host: "fd00::1".into()
            }
        );
        assert_eq!(r.tls.client_cert, Some("/env/cert.pem".into()));
        assert_eq!(r.tls.ca_cert, Some(f.dir.path().join("ca.pem").into()));
    }

    #[test]
    fn malformed_config_names_the_file() {
        let f = Fixture::new();
        f.write_config("endpoint = [unclosed\n");
        let err =
            resolve(None, &env_of(&[]), &f.socket(), Some(&f.config())).expect_err("must fail");
        assert!(format!("{err:#}").contains("config.toml"), "{err:#}");
    }

    #[test]
    fn endpoint_forms() {
        assert_eq!(
            parse_target("unix:///run/kcore/kcore.sock").expect("unix"),
            Target::Unix("/run/kcore/kcore.sock".into())
        );
        assert_eq!(
            parse_target("http://127.0.0.1:50051").expect("http"),
            Target::Http("http://127.0.0.1:50051".into())
        );
        assert!(parse_target("unix://").is_err());
        assert!(parse_target("kc.example:7443").is_err());
        assert!(parse_target("https://").is_err());
    }

    #[test]
    fn pem_text_or_file() {
        assert_eq!(
            Pem::parse("/etc/kcore/ca.crt"),
            Pem::File("/etc/kcore/ca.crt".into())
        );
        let text = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(Pem::parse(text), Pem::Inline(text.to_string()));
        assert_eq!(
            Pem::Inline("x".into())
                .read("CA certificate")
                .expect("inline"),
            b"x".to_vec()
        );
        let err = Pem::File("/nonexistent/ca.crt".into())
            .read("CA certificate")
            .expect_err("missing");
        assert_eq!(
            err.to_string(),
            "reading the CA certificate /nonexistent/ca.crt"
        );
    }

    #[test]
    fn config_paths() {
        assert_eq!(
            default_config_path(&env_of(&[("HOME", "/home/op")])),
            Some(PathBuf::from("/home/op/.config/kcore/config.toml"))
        );
        assert_eq!(
            default_config_path(&env_of(&[("HOME", "/home/op"), ("XDG_CONFIG_HOME", "/x")])),
            Some(PathBuf::from("/x/kcore/config.toml"))
        );
        assert_eq!(default_config_path(&env_of(&[])), None);
    }
}

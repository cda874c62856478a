//! The test harness: the mock server on a unix socket or over mutual TLS, and running kctl.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcore_proto::v1::ConsoleInput;
use kcore_proto::v1::kcore_service_server::KcoreServiceServer;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};

mod mock;

pub use mock::*;

pub const KCTL: &str = env!("CARGO_BIN_EXE_kctl");

/// A mock server on a unix socket in a temp dir, alive until dropped.
pub struct Server {
    pub _runtime: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    pub console_first: Arc<Mutex<Vec<ConsoleInput>>>,
    /// Shares the running mock's records.
    pub mock: Mock,
}

impl Server {
    pub fn unix() -> Self {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("kcore.sock");
        let mock = Mock::default();
        let console_first = mock.console_first.clone();
        let records = mock.clone();
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
            console_first,
            mock: records,
        }
    }

    pub fn kctl(&self, args: &[&str]) -> Output {
        run(self.command(args), b"")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = kctl_command(self.dir.path());
        command.arg("--endpoint").arg(&self.endpoint).args(args);
        command
    }
}

/// The local socket kctl tries in the tests: none is there (the machine's own
/// /run/kcore/kcore.sock is never tried).
pub fn no_local_socket(home: &Path) -> PathBuf {
    home.join("run/kcore.sock")
}

/// kctl with a clean environment: no KCORE_* variables but KCORE_SOCKET (a path in the
/// temp dir where no kcored listens), HOME in a temp dir.
pub fn kctl_command(home: &Path) -> Command {
    let mut command = Command::new(KCTL);
    command
        .env_clear()
        .env("HOME", home)
        .env("KCORE_SOCKET", no_local_socket(home))
        .current_dir(home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs a command with the given stdin, failing the test if it takes over 20 s.
pub fn run(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command.spawn().expect("spawn kctl");
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).expect("write stdin");
    }
    wait(child, Duration::from_secs(20))
}

pub fn wait(mut child: Child, limit: Duration) -> Output {
    // Drain the pipes while waiting: a child writing more than a pipe holds (a completion
    // script) would otherwise never exit.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = Output {
        status: status.unwrap_or_else(|| child.wait().expect("wait")),
        stdout: stdout.join().expect("stdout thread"),
        stderr: stderr.join().expect("stderr thread"),
    };
    assert!(
        status.is_some(),
        "kctl did not exit in time; stdout: {}; stderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// Collects a child's stdout on a thread; each receive gives everything read so far.
pub fn stdout_watcher(child: &mut Child) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut seen = Vec::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if tx.send(seen.clone()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits until the watched stdout contains `needle`.
pub fn wait_for(rx: &std::sync::mpsc::Receiver<Vec<u8>>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let seen = text(&rx.recv_timeout(left).expect("output in time"));
        if seen.contains(needle) {
            return seen;
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "kctl failed: {:?}\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[track_caller]
pub fn failed(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected exit 1; stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

/// Certificates for the mTLS tests.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write pem");
        };
        write("ca.pem", ca.pem());
        for (name, san) in [("server", "localhost"), ("client", "operator")] {
            let key = KeyPair::generate().expect("key");
            let cert = CertificateParams::new(vec![san.to_string()])
                .expect("params")
                .signed_by(&key, &ca)
                .expect("sign");
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("read pem")
    }
}

pub fn tls_server(pki: &Pki) -> (tokio::runtime::Runtime, String) {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
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
        .client_ca_root(Certificate::from_pem(pki.read("ca.pem")));
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .expect("tls config")
        .add_service(KcoreServiceServer::new(Mock::default()))
        .serve_with_incoming(TcpListenerStream::new(listener));
    runtime.spawn(server);
    (runtime, format!("https://localhost:{port}"))
}

//! A scripted fake QMP peer (the QEMU side of the socket) for tests.

use std::path::PathBuf;

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::Receiver;

use crate::qmp::{QmpClient, QmpEvent, QmpOptions};

/// The greeting of Debian 12's QEMU 7.2, byte for byte.
pub(super) const QEMU_7_2_GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18"}, "capabilities": ["oob"]}}"#;

/// A listening socket in a fresh temporary directory.
pub(super) struct Listening {
    pub(super) dir: TempDir,
    pub(super) path: PathBuf,
    pub(super) listener: UnixListener,
}

pub(super) fn listen() -> Listening {
    let dir = tempfile::tempdir().expect("create tempdir");
    let path = dir.path().join("qmp.sock");
    let listener = UnixListener::bind(&path).expect("bind fake QMP socket");
    Listening {
        dir,
        path,
        listener,
    }
}

/// The peer end of one accepted QMP connection.
pub(super) struct FakePeer {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl FakePeer {
    pub(super) async fn accept(listener: &UnixListener) -> FakePeer {
        let (stream, _) = listener.accept().await.expect("accept QMP client");
        FakePeer::new(stream)
    }

    pub(super) fn new(stream: UnixStream) -> FakePeer {
        let (read, writer) = stream.into_split();
        FakePeer {
            reader: BufReader::new(read),
            writer,
        }
    }

    /// Send one raw line (a newline is added).
    pub(super) async fn send_raw(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("fake peer write");
    }

    pub(super) async fn send(&mut self, message: Value) {
        self.send_raw(&message.to_string()).await;
    }

    /// Answer `request` with `body` (`{"return":..}` or `{"error":..}`) plus its id.
    pub(super) async fn reply(&mut self, request: &Value, mut body: Value) {
        body["id"] = request["id"].clone();
        self.send(body).await;
    }

    /// Receive the next request the client sent.
    pub(super) async fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .await
            .expect("fake peer read");
        assert!(n > 0, "client closed the connection");
        serde_json::from_str(&line).expect("client sent JSON")
    }

    /// True once the client has closed its side (reads return end of stream), within 5 s.
    pub(super) async fn at_eof(&mut self) -> bool {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_to_end(&mut self.reader, &mut rest),
        )
        .await;
        matches!(read, Ok(Ok(_)))
    }

    /// Greet and answer `qmp_capabilities`, as QEMU does.
    pub(super) async fn handshake(&mut self) {
        self.send_raw(QEMU_7_2_GREETING).await;
        let request = self.recv().await;
        assert_eq!(request["execute"], "qmp_capabilities");
        self.reply(&request, json!({"return": {}})).await;
    }
}

/// A connected client and the fake QEMU it talks to.
pub(super) struct Session {
    pub(super) qmp: QmpClient,
    pub(super) events: Receiver<QmpEvent>,
    pub(super) peer: FakePeer,
    pub(super) _dir: TempDir,
}

/// Connect a client to a fake peer that completes the handshake.
pub(super) async fn session(opts: QmpOptions) -> Session {
    let Listening {
        dir,
        path,
        listener,
    } = listen();
    // The client connects before the peer accepts, as with QEMU's pre-bound socket.
    let connecting = tokio::spawn(QmpClient::connect_path(path, opts));
    let mut peer = FakePeer::accept(&listener).await;
    peer.handshake().await;
    let (qmp, events) = connecting
        .await
        .expect("connect task")
        .expect("connect to fake peer");
    Session {
        qmp,
        events,
        peer,
        _dir: dir,
    }
}

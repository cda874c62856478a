//! [`QmpClient`]: connecting (greeting + capabilities negotiation) and executing commands.

use std::io::ErrorKind;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::AbortHandle;

use super::reader::{CommandId, LineRead, Pending, Shared, read_line_bounded, read_loop, too_long};
use super::transcript::{Direction, Transcript};
use super::types::{QmpEvent, QmpGreeting, QmpObserver, QmpOptions, QmpOutcome, parse_greeting};
use crate::VmmError;

/// A connected, negotiated QMP client. Cheap to clone (all clones share one connection);
/// `Send + Sync`. Dropping the last clone stops the reader task and closes the socket.
#[derive(Clone)]
pub struct QmpClient {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Shared with the reader task, which shuts the socket down when reading ends.
    writer: Arc<Mutex<OwnedWriteHalf>>,
    next_id: AtomicU64,
    command_timeout: Duration,
    transcript_skip: Vec<String>,
    greeting: QmpGreeting,
    /// The socket path, for error messages.
    peer: PathBuf,
    reader_task: AbortHandle,
    observer: Option<QmpObserver>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader_task.abort();
    }
}

/// Removes a command from the pending map when its caller stops waiting (reply, timeout,
/// error or cancellation alike).
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: CommandId,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.unregister(self.id);
    }
}

impl QmpClient {
    /// Connect to the QMP socket at `path`, then proceed as [`QmpClient::connect`].
    pub async fn connect_path(
        path: impl AsRef<Path>,
        opts: QmpOptions,
    ) -> Result<(QmpClient, mpsc::Receiver<QmpEvent>), VmmError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| VmmError::io("connect to QMP socket", path, e))?;
        Self::connect(stream, opts).await
    }

    /// Take over a connected QMP socket: wait for QEMU's greeting (at most
    /// `opts.greeting_timeout`; the peer may not have accepted yet), negotiate with
    /// `qmp_capabilities`, and return the client with its event channel.
    ///
    /// Fails with [`VmmError::QmpTimeout`] (command `"greeting"`) if no greeting comes,
    /// [`VmmError::QmpClosed`] if the peer closes first, [`VmmError::QmpProtocol`] if the
    /// first line is not a QMP greeting.
    pub async fn connect(
        stream: UnixStream,
        opts: QmpOptions,
    ) -> Result<(QmpClient, mpsc::Receiver<QmpEvent>), VmmError> {
        let peer = stream
            .peer_addr()
            .ok()
            .and_then(|addr| addr.as_pathname().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("<QMP socket>"));
        let transcript = opts
            .transcript
            .as_deref()
            .map(Transcript::open)
            .transpose()?;
        let shared = Arc::new(Shared::new(transcript));
        let (read_half, write_half) = stream.into_split();
        let mut reader = BufReader::new(read_half);

        let greeting = read_greeting(
            &mut reader,
            &peer,
            opts.greeting_timeout,
            opts.max_line,
            &shared,
        )
        .await?;
        tracing::debug!(peer = %peer.display(), version = ?greeting.version, "QMP greeting");

        let (events_tx, events_rx) = mpsc::channel(opts.event_capacity.max(2));
        let writer = Arc::new(Mutex::new(write_half));
        let reader_task = tokio::spawn({
            let (shared, writer) = (Arc::clone(&shared), Arc::clone(&writer));
            async move {
                read_loop(reader, shared, events_tx, opts.max_line).await;
                // Reading is over (EOF, error, or a line over the limit): close our side
                // too, so the peer sees the connection end. A command still writing holds
                // the lock at most until its timeout.
                let _ = writer.lock().await.shutdown().await;
            }
        });
        let client = QmpClient {
            inner: Arc::new(Inner {
                shared,
                writer,
                next_id: AtomicU64::new(0),
                command_timeout: opts.command_timeout,
                transcript_skip: opts.transcript_skip,
                greeting,
                peer,
                reader_task: reader_task.abort_handle(),
                observer: opts.observer,
            }),
        };
        client.execute("qmp_capabilities", None).await?;
        Ok((client, events_rx))
    }

    /// The greeting QEMU sent (version, capabilities).
    pub fn greeting(&self) -> &QmpGreeting {
        &self.inner.greeting
    }

    /// Whether the connection is closed (all commands now fail with `QmpClosed`, or with
    /// `QmpProtocol` if the peer broke the protocol, e.g. a line over the limit).
    pub fn is_closed(&self) -> bool {
        self.inner.shared.is_closed()
    }

    /// How many events were dropped because the event channel was full (its consumer was
    /// behind); see [`QmpOptions::event_capacity`].
    pub fn dropped_events(&self) -> u64 {
        self.inner.shared.dropped_events()
    }

    /// Execute `command` with the default timeout; returns the `return` member of the reply.
    /// A QMP error reply becomes [`VmmError::QmpCommand`].
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, VmmError> {
        self.execute_with_timeout(command, arguments, self.inner.command_timeout)
            .await
    }

    /// [`QmpClient::execute`] with an explicit timeout.
    pub async fn execute_with_timeout(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, VmmError> {
        let mut request = Map::new();
        request.insert("execute".to_owned(), Value::from(command));
        if let Some(arguments) = arguments {
            request.insert("arguments".to_owned(), arguments);
        }
        let reply = self.round_trip(command, request, timeout, None).await?;
        reply_result(command, reply)
    }

    /// Execute `command` with a file descriptor passed along (SCM_RIGHTS), as `getfd` and
    /// `add-fd` expect: how an unprivileged QEMU gets a tap or a disk it cannot open.
    pub async fn execute_with_fd(
        &self,
        command: &str,
        arguments: Option<Value>,
        fd: BorrowedFd<'_>,
    ) -> Result<Value, VmmError> {
        let mut request = Map::new();
        request.insert("execute".to_owned(), Value::from(command));
        if let Some(arguments) = arguments {
            request.insert("arguments".to_owned(), arguments);
        }
        let timeout = self.inner.command_timeout;
        let reply = self
            .round_trip(command, request, timeout, Some(fd.as_raw_fd()))
            .await?;
        reply_result(command, reply)
    }

    /// Passthrough: send a request as a user typed it (`{"execute": .., "arguments": ..}`)
    /// with the default timeout, and return QEMU's whole reply object, `{"return": ..}` or
    /// `{"error": ..}`; a QMP error is *not* turned into an `Err`. The client sets its own
    /// `id` on the wire; a user-supplied `id` is put back into the reply.
    pub async fn execute_raw(&self, request: Value) -> Result<Value, VmmError> {
        self.execute_raw_with_timeout(request, self.inner.command_timeout)
            .await
    }

    /// [`QmpClient::execute_raw`] with an explicit timeout.
    pub async fn execute_raw_with_timeout(
        &self,
        request: Value,
        timeout: Duration,
    ) -> Result<Value, VmmError> {
        let Value::Object(mut request) = request else {
            return Err(VmmError::QmpProtocol(format!(
                "a QMP request must be a JSON object like {{\"execute\":\"query-status\"}}, not {request}"
            )));
        };
        let user_id = request.remove("id");
        let command = request
            .get("execute")
            .or_else(|| request.get("exec-oob"))
            .and_then(Value::as_str)
            .unwrap_or("<no execute>")
            .to_owned();
        let mut reply = self.round_trip(&command, request, timeout, None).await?;
        if let (Value::Object(reply), Some(id)) = (&mut reply, user_id) {
            reply.insert("id".to_owned(), id);
        }
        Ok(reply)
    }

    /// Send `request` (with a fresh `id`) and wait for the reply object; the observer, if
    /// any, is told how long it took and how it ended.
    async fn round_trip(
        &self,
        command: &str,
        request: Map<String, Value>,
        timeout: Duration,
        fd: Option<RawFd>,
    ) -> Result<Value, VmmError> {
        let Some(observer) = &self.inner.observer else {
            return self.exchange(command, request, timeout, fd).await;
        };
        let started = std::time::Instant::now();
        let result = self.exchange(command, request, timeout, fd).await;
        let outcome = match &result {
            Ok(Value::Object(reply)) if reply.contains_key("error") => QmpOutcome::Error,
            Ok(_) => QmpOutcome::Ok,
            Err(VmmError::QmpTimeout { .. }) => QmpOutcome::Timeout,
            Err(VmmError::QmpClosed) => QmpOutcome::Closed,
            Err(_) => QmpOutcome::Error,
        };
        (observer.0)(command, started.elapsed(), outcome);
        result
    }

    async fn exchange(
        &self,
        command: &str,
        mut request: Map<String, Value>,
        timeout: Duration,
        fd: Option<RawFd>,
    ) -> Result<Value, VmmError> {
        let inner = &*self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        request.insert("id".to_owned(), Value::from(id));
        let line = serde_json::to_string(&request)
            .map_err(|e| VmmError::QmpProtocol(format!("cannot encode {command}: {e}")))?;
        let logged = !inner.transcript_skip.iter().any(|skip| skip == command);

        let (reply_tx, reply_rx) = oneshot::channel();
        inner.shared.register(
            id,
            Pending {
                reply: reply_tx,
                logged,
            },
        )?;
        let _guard = PendingGuard {
            shared: &inner.shared,
            id,
        };
        tracing::debug!(command, id, "QMP command");

        let exchange = async {
            self.send_line(&line, logged, fd).await?;
            reply_rx.await.map_err(|_| inner.shared.closed_error())
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(reply) => reply,
            Err(_) => {
                tracing::warn!(command, id, ?timeout, "QMP command got no reply in time");
                Err(VmmError::QmpTimeout {
                    command: command.to_owned(),
                    timeout,
                })
            }
        }
    }

    /// Write one request line. The transcript line is written under the writer lock so the
    /// transcript shows requests in wire order.
    async fn send_line(&self, line: &str, logged: bool, fd: Option<RawFd>) -> Result<(), VmmError> {
        let inner = &*self.inner;
        let mut writer = inner.writer.lock().await;
        if logged {
            inner.shared.record(Direction::Sent, line);
        }
        let wire = format!("{line}\n");
        let written = match fd {
            None => writer.write_all(wire.as_bytes()).await,
            Some(fd) => send_with_fd(&writer, wire.as_bytes(), fd).await,
        };
        written.map_err(|e| io_or_closed("write QMP command to", &inner.peer, e))
    }
}

/// Write `data` with `fd` attached to its first byte (SCM_RIGHTS).
async fn send_with_fd(writer: &OwnedWriteHalf, data: &[u8], fd: RawFd) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let stream: &UnixStream = writer.as_ref();
    let mut sent = 0;
    while sent < data.len() {
        stream.writable().await?;
        let fds = [fd];
        let with_fd = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 { &with_fd } else { &[] };
        let iov = [std::io::IoSlice::new(&data[sent..])];
        let res = stream.try_io(tokio::io::Interest::WRITABLE, || {
            sendmsg::<()>(
                stream.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)
        });
        match res {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read and parse the greeting line (at most `max_line` bytes).
async fn read_greeting<R>(
    reader: &mut R,
    peer: &Path,
    timeout: Duration,
    max_line: usize,
    shared: &Shared,
) -> Result<QmpGreeting, VmmError>
where
    R: AsyncBufRead + Unpin,
{
    let mut line = Vec::new();
    let read = tokio::time::timeout(timeout, read_line_bounded(reader, &mut line, max_line)).await;
    match read {
        Err(_) => {
            return Err(VmmError::QmpTimeout {
                command: "greeting".to_owned(),
                timeout,
            });
        }
        Ok(Err(e)) => return Err(io_or_closed("read QMP greeting from", peer, e)),
        Ok(Ok(LineRead::Eof)) => return Err(VmmError::QmpClosed),
        Ok(Ok(LineRead::TooLong)) => return Err(VmmError::QmpProtocol(too_long(max_line))),
        Ok(Ok(LineRead::Line)) => {}
    }
    shared.record(Direction::Received, String::from_utf8_lossy(&line).trim());
    parse_greeting(&line)
}

/// A socket error that means "the peer is gone" is `QmpClosed`; anything else is I/O.
fn io_or_closed(op: &'static str, peer: &Path, error: std::io::Error) -> VmmError {
    match error.kind() {
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::NotConnected => {
            VmmError::QmpClosed
        }
        _ => VmmError::io(op, peer, error),
    }
}

/// Turn a reply object into the `return` value or a [`VmmError::QmpCommand`].
fn reply_result(command: &str, reply: Value) -> Result<Value, VmmError> {
    let Value::Object(mut reply) = reply else {
        return Err(VmmError::QmpProtocol(format!(
            "reply to {command} is not an object: {reply}"
        )));
    };
    if let Some(value) = reply.remove("return") {
        return Ok(value);
    }
    if let Some(error) = reply.remove("error") {
        let field = |name: &str| {
            error
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        return Err(VmmError::QmpCommand {
            command: command.to_owned(),
            class: field("class"),
            desc: field("desc"),
        });
    }
    Err(VmmError::QmpProtocol(format!(
        "reply to {command} has neither return nor error: {}",
        Value::Object(reply)
    )))
}

#[cfg(test)]
impl QmpClient {
    /// Number of commands waiting for a reply.
    pub(crate) fn pending_len(&self) -> usize {
        self.inner.shared.pending_len()
    }
}

//! The receiving side of a QMP connection.
//!
//! One task per connection reads newline-delimited JSON and splits it into replies (routed by
//! `id` to the command waiting for them) and events (sent on the event channel). Lines that
//! are not QMP (not JSON, not an object, a reply nobody waits for) are logged and skipped:
//! QEMU never sends them, and one bad line must not take the VM's monitor down.
//!
//! At EOF or on a read error the connection is marked closed, every pending command fails
//! with [`VmmError::QmpClosed`] (its reply sender is dropped), and a final
//! [`QmpEvent::Closed`] is sent.
//!
//! Memory is bounded on both paths out of the reader:
//!
//! - **Lines**: a line is read into a buffer that may grow to the connection's `max_line`
//!   (16 MiB by default, [`super::types::DEFAULT_MAX_LINE`]) and no further. A longer line
//!   is a protocol violation: the reader stops there (the rest is never read), the
//!   connection is closed, pending and later commands fail with [`VmmError::QmpProtocol`]
//!   saying so, and `Closed` carries the same message.
//! - **Events**: the event channel is bounded. The reader never waits for the consumer
//!   (replies must still flow while nobody reads events): when the channel is full, the
//!   event is dropped, counted ([`Shared::dropped_events`]), logged with a warning once per
//!   burst and noted in the transcript; when events flow again the count of the burst is
//!   logged. One slot is always kept free for the final `Closed`, so it is never dropped.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::{mpsc, oneshot};

use super::transcript::{Direction, Transcript};
use super::types::{QmpEvent, QmpTimestamp};
use crate::VmmError;

/// The `id` the client puts in every command.
pub(crate) type CommandId = u64;

/// A command waiting for its reply.
pub(crate) struct Pending {
    /// Gets the whole reply object (`{"return": ..}` or `{"error": ..}`).
    pub(crate) reply: oneshot::Sender<Value>,
    /// Whether the reply goes to the transcript.
    pub(crate) logged: bool,
}

#[derive(Default)]
struct State {
    pending: HashMap<CommandId, Pending>,
    closed: bool,
    /// Why the connection was closed, when the peer broke the protocol (a line too long).
    violation: Option<String>,
    /// Events dropped in the current burst (the consumer was behind).
    burst: u64,
}

/// What the reader task and the command side of a connection share.
pub(crate) struct Shared {
    state: Mutex<State>,
    transcript: Option<Transcript>,
    dropped: AtomicU64,
}

impl Shared {
    pub(crate) fn new(transcript: Option<Transcript>) -> Self {
        Shared {
            state: Mutex::new(State::default()),
            transcript,
            dropped: AtomicU64::new(0),
        }
    }

    /// The error a command gets on a closed connection: the protocol violation that closed
    /// it, else [`VmmError::QmpClosed`].
    pub(crate) fn closed_error(&self) -> VmmError {
        match &self.state().violation {
            Some(why) => VmmError::QmpProtocol(why.clone()),
            None => VmmError::QmpClosed,
        }
    }

    /// Events dropped so far because the consumer of the event channel was behind.
    pub(crate) fn dropped_events(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Register a command waiting for its reply; fails if the connection is already closed.
    pub(crate) fn register(&self, id: CommandId, pending: Pending) -> Result<(), VmmError> {
        let mut state = self.state();
        if state.closed {
            return Err(match &state.violation {
                Some(why) => VmmError::QmpProtocol(why.clone()),
                None => VmmError::QmpClosed,
            });
        }
        state.pending.insert(id, pending);
        Ok(())
    }

    /// Forget a command (timed out or cancelled); a late reply is then logged and dropped.
    pub(crate) fn unregister(&self, id: CommandId) {
        self.state().pending.remove(&id);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state().closed
    }

    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.state().pending.len()
    }

    pub(crate) fn record(&self, direction: Direction, text: &str) {
        if let Some(transcript) = &self.transcript {
            transcript.record(direction, text);
        }
    }

    /// Mark the connection closed and fail every pending command.
    fn close(&self, violation: Option<String>) {
        let mut state = self.state();
        state.closed = true;
        state.violation = violation;
        state.pending.clear();
    }

    fn take(&self, id: CommandId) -> Option<Pending> {
        self.state().pending.remove(&id)
    }
}

/// What [`read_line_bounded`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// A line (without its newline) is in the buffer; at EOF, the last unterminated bytes.
    Line,
    /// End of stream, nothing read.
    Eof,
    /// The line is longer than the limit; the buffer holds its first `max` bytes and the
    /// rest is left unread.
    TooLong,
}

/// Read one `\n`-terminated line into `buf` (cleared first, newline not kept), never
/// holding more than `max` bytes of it: memory stays bounded whatever the peer sends.
pub(crate) async fn read_line_bounded<R>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead>
where
    R: AsyncBufRead + Unpin,
{
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        if buf.len() + chunk.len() > max {
            let room = max - buf.len();
            buf.extend_from_slice(&chunk[..room]);
            reader.consume(room);
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(found);
        reader.consume(used);
        if found {
            return Ok(LineRead::Line);
        }
    }
}

/// The message of a line over the limit.
pub(crate) fn too_long(max: usize) -> String {
    let size = if max >= 1 << 20 && max.is_multiple_of(1 << 20) {
        format!("{} MiB", max >> 20)
    } else {
        format!("{max} bytes")
    };
    format!("the peer sent a line longer than {size}: connection closed")
}

/// Read the connection until EOF, a read error or a line over `max_line` bytes, then
/// report [`QmpEvent::Closed`].
pub(crate) async fn read_loop<R>(
    mut reader: R,
    shared: Arc<Shared>,
    events: mpsc::Sender<QmpEvent>,
    max_line: usize,
) where
    R: AsyncBufRead + Unpin,
{
    let mut line = Vec::new();
    let (error, violation) = loop {
        match read_line_bounded(&mut reader, &mut line, max_line).await {
            Ok(LineRead::Eof) => break (None, None),
            Ok(LineRead::Line) => handle_line(&line, &shared, &events),
            Ok(LineRead::TooLong) => {
                let why = too_long(max_line);
                break (
                    Some(VmmError::QmpProtocol(why.clone()).to_string()),
                    Some(why),
                );
            }
            // QEMU exiting with unread input resets the socket: that is a close, not a fault.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break (None, None),
            Err(e) => break (Some(e.to_string()), None),
        }
    };
    // Do not keep a too-long line's 16 MiB while the task winds down.
    drop(line);
    match &error {
        None => tracing::debug!("QMP connection closed by peer"),
        Some(error) => tracing::warn!(%error, "QMP connection failed"),
    }
    shared.close(violation);
    let note = match &error {
        None => "connection closed".to_owned(),
        Some(error) => format!("connection failed: {error}"),
    };
    shared.record(Direction::Note, &note);
    // A slot is always kept for this (see `deliver`); the receiver may be gone, and then
    // nobody is interested.
    if let Err(mpsc::error::TrySendError::Full(_)) = events.try_send(QmpEvent::Closed { error }) {
        tracing::error!("QMP event channel full: Closed not delivered");
    }
}

/// Dispatch one line from the peer.
fn handle_line(raw: &[u8], shared: &Shared, events: &mpsc::Sender<QmpEvent>) {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let message = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(message)) => message,
        Ok(_) => return skip(shared, text, "not a JSON object"),
        Err(_) => return skip(shared, text, "not JSON"),
    };
    if message.contains_key("return") || message.contains_key("error") {
        handle_reply(message, text, shared);
    } else if message.contains_key("event") {
        shared.record(Direction::Received, text);
        handle_event(message, text, shared, events);
    } else {
        skip(shared, text, "neither a reply nor an event");
    }
}

fn skip(shared: &Shared, text: &str, why: &str) {
    tracing::warn!(line = text, "QMP peer sent a line that is {why}; skipped");
    shared.record(Direction::Received, text);
}

fn handle_reply(mut message: Map<String, Value>, text: &str, shared: &Shared) {
    let pending = message
        .get("id")
        .and_then(Value::as_u64)
        .and_then(|id| shared.take(id));
    let Some(pending) = pending else {
        tracing::warn!(
            line = text,
            "QMP reply for no pending command (timed out?); dropped"
        );
        shared.record(Direction::Received, text);
        return;
    };
    if pending.logged {
        shared.record(Direction::Received, text);
    }
    if message.contains_key("error") {
        tracing::debug!(reply = text, "QMP error reply");
    }
    // The id is the client's business; the waiter gets `{"return":..}` / `{"error":..}`.
    message.remove("id");
    // The waiter may have given up just now (timeout); nothing to do then.
    let _ = pending.reply.send(Value::Object(message));
}

fn handle_event(
    mut message: Map<String, Value>,
    text: &str,
    shared: &Shared,
    events: &mpsc::Sender<QmpEvent>,
) {
    let Some(Value::String(name)) = message.remove("event") else {
        tracing::warn!(line = text, "QMP event without a name; skipped");
        return;
    };
    let data = message.remove("data").unwrap_or(Value::Null);
    let timestamp = message
        .remove("timestamp")
        .and_then(|t| serde_json::from_value::<QmpTimestamp>(t).ok());
    tracing::debug!(event = %name, %data, "QMP event");
    deliver(
        shared,
        events,
        QmpEvent::Event {
            name,
            data,
            timestamp,
        },
    );
}

/// Hand an event to the consumer without ever waiting: dropped (and counted) when the
/// channel is full. The last free slot is kept for `Closed`.
fn deliver(shared: &Shared, events: &mpsc::Sender<QmpEvent>, event: QmpEvent) {
    let event = if events.capacity() > 1 {
        match events.try_send(event) {
            Ok(()) => {
                let mut state = shared.state();
                if state.burst > 0 {
                    tracing::warn!(
                        dropped = state.burst,
                        "QMP events flow again; events were dropped while the consumer was \
                         behind"
                    );
                    state.burst = 0;
                }
                return;
            }
            // Nobody listens for events any more.
            Err(mpsc::error::TrySendError::Closed(_)) => return,
            Err(mpsc::error::TrySendError::Full(event)) => event,
        }
    } else if events.is_closed() {
        return;
    } else {
        event
    };
    shared.dropped.fetch_add(1, Ordering::Relaxed);
    let first = {
        let mut state = shared.state();
        state.burst += 1;
        state.burst == 1
    };
    if first {
        let name = match &event {
            QmpEvent::Event { name, .. } => name.as_str(),
            QmpEvent::Closed { .. } => "Closed",
        };
        tracing::warn!(
            event = name,
            capacity = events.max_capacity(),
            "QMP event channel full (the consumer is behind): dropping events"
        );
        shared.record(
            Direction::Note,
            &format!("event channel full: {name} and later events dropped until it drains"),
        );
    }
}

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

use std::collections::HashMap;
use std::io::ErrorKind;
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
}

/// What the reader task and the command side of a connection share.
pub(crate) struct Shared {
    state: Mutex<State>,
    transcript: Option<Transcript>,
}

impl Shared {
    pub(crate) fn new(transcript: Option<Transcript>) -> Self {
        Shared {
            state: Mutex::new(State::default()),
            transcript,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Register a command waiting for its reply; fails if the connection is already closed.
    pub(crate) fn register(&self, id: CommandId, pending: Pending) -> Result<(), VmmError> {
        let mut state = self.state();
        if state.closed {
            return Err(VmmError::QmpClosed);
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
    fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.pending.clear();
    }

    fn take(&self, id: CommandId) -> Option<Pending> {
        self.state().pending.remove(&id)
    }
}

/// Read the connection until EOF, then report [`QmpEvent::Closed`].
pub(crate) async fn read_loop<R>(
    mut reader: R,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<QmpEvent>,
) where
    R: AsyncBufRead + Unpin,
{
    let mut line = Vec::new();
    let error = loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) => break None,
            Ok(_) => handle_line(&line, &shared, &events),
            // QEMU exiting with unread input resets the socket: that is a close, not a fault.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break None,
            Err(e) => break Some(e.to_string()),
        }
    };
    match &error {
        None => tracing::debug!("QMP connection closed by peer"),
        Some(error) => tracing::warn!(%error, "QMP connection failed"),
    }
    shared.close();
    let note = match &error {
        None => "connection closed".to_owned(),
        Some(error) => format!("connection failed: {error}"),
    };
    shared.record(Direction::Note, &note);
    // The receiver may be gone; nobody is interested then.
    let _ = events.send(QmpEvent::Closed { error });
}

/// Dispatch one line from the peer.
fn handle_line(raw: &[u8], shared: &Shared, events: &mpsc::UnboundedSender<QmpEvent>) {
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
        handle_event(message, text, events);
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
    events: &mpsc::UnboundedSender<QmpEvent>,
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
    let _ = events.send(QmpEvent::Event {
        name,
        data,
        timestamp,
    });
}

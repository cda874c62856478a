//! An asynchronous QMP (QEMU Machine Protocol) client on tokio and serde_json.
//!
//! QMP is newline-delimited JSON over a Unix socket: QEMU greets with `{"QMP": {...}}`, the
//! client negotiates with `qmp_capabilities`, then sends `{"execute": .., "arguments": ..,
//! "id": ..}` and gets `{"return": .., "id": ..}` or `{"error": {"class": .., "desc": ..},
//! "id": ..}`, interleaved with unsolicited `{"event": .., "data": .., "timestamp": ..}`.
//!
//! [`QmpClient::connect`] reads the greeting, negotiates and returns the client together
//! with an event channel. Internally:
//!
//! - one reader task per connection splits incoming lines into replies (matched by `id` to
//!   the waiting command, so replies may arrive in any order) and events;
//! - commands get unique numeric ids, wait on a oneshot channel, and are bounded by a
//!   timeout: a hung QEMU gives [`VmmError::QmpTimeout`](crate::VmmError::QmpTimeout), never
//!   a hang, and the command is forgotten (a late reply is logged and dropped);
//! - at EOF the event channel yields [`QmpEvent::Closed`], pending commands fail with
//!   [`VmmError::QmpClosed`](crate::VmmError::QmpClosed), and so does every later command;
//! - a line from QEMU longer than [`QmpOptions::max_line`] (16 MiB) closes the connection
//!   with [`VmmError::QmpProtocol`](crate::VmmError::QmpProtocol): memory never grows with
//!   what the peer sends;
//! - the event channel is bounded ([`QmpOptions::event_capacity`]); the reader never waits
//!   for its consumer, so replies keep flowing: events that find it full are dropped,
//!   counted ([`QmpClient::dropped_events`]) and logged, and `Closed` always gets through;
//! - if [`QmpOptions::transcript`] is set, every exchange is appended to that file as
//!   `2026-11-28T12:00:00.123Z -> {json}` / `<- {json}` lines (plus `--` notes), except the
//!   commands in [`QmpOptions::transcript_skip`] and their replies; events are always kept.
//!
//! A timeout that fires while a request is still being written (QEMU not reading and the
//! socket buffer full) may leave a partial line on the wire; such a QEMU is hung anyway and
//! the connection should be considered lost.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kcore_vmm::VmmError> {
//! use kcore_vmm::qmp::{QmpClient, QmpOptions};
//! let (qmp, mut events) = QmpClient::connect_path("/run/kcore/vm1/qmp.sock", QmpOptions::default()).await?;
//! if !qmp.query_status().await?.running {
//!     qmp.cont().await?;
//! }
//! let reply = qmp.execute_raw(serde_json::json!({"execute": "query-cpus-fast"})).await?;
//! # let _ = (reply, events.recv().await);
//! # Ok(()) }
//! ```

mod client;
mod commands;
mod migrate;
mod reader;
mod transcript;
mod types;

#[cfg(test)]
mod tests;

pub use client::QmpClient;
pub use types::{
    DEFAULT_EVENT_CAPACITY, DEFAULT_MAX_LINE, QemuVersion, QmpEvent, QmpGreeting, QmpObserver,
    QmpOptions, QmpOutcome, QmpStatus, QmpTimestamp,
};

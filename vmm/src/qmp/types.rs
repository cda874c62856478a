//! Plain data types of the QMP client: connection options, events, the greeting and the
//! typed replies of the few commands the daemon uses.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::VmmError;

/// How a [`QmpClient`](super::QmpClient) behaves.
#[derive(Debug, Clone)]
pub struct QmpOptions {
    /// How long to wait for QEMU's greeting after connecting. The caller may connect before
    /// QEMU accepts (pre-bound listening socket passed to QEMU as an fd), so this also covers
    /// QEMU's own start-up time.
    pub greeting_timeout: Duration,
    /// Default time a command may take before it fails with [`VmmError::QmpTimeout`].
    pub command_timeout: Duration,
    /// If set, every exchange is appended to this file (see the module docs for the format).
    pub transcript: Option<PathBuf>,
    /// Commands that are left out of the transcript, together with their replies (noisy polls).
    pub transcript_skip: Vec<String>,
    /// The longest line accepted from QEMU, in bytes (without its newline); a longer one
    /// closes the connection with [`VmmError::QmpProtocol`]. Default [`DEFAULT_MAX_LINE`].
    pub max_line: usize,
    /// How many events the event channel holds (at least 2; one slot is kept for
    /// [`QmpEvent::Closed`]). When the consumer falls that far behind, further events are
    /// dropped and counted ([`QmpClient::dropped_events`](super::QmpClient::dropped_events)):
    /// the reader never waits, so replies keep flowing. Default [`DEFAULT_EVENT_CAPACITY`].
    pub event_capacity: usize,
    /// Told of every command: its name, how long it took and how it ended (the daemon's
    /// QMP latency metrics). None: nobody listens.
    pub observer: Option<QmpObserver>,
}

/// How a QMP command ended, for a [`QmpObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QmpOutcome {
    /// QEMU answered with `return`.
    Ok,
    /// QEMU answered with `error`, or the exchange failed otherwise.
    Error,
    /// No answer in time.
    Timeout,
    /// The connection was gone.
    Closed,
}

impl QmpOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            QmpOutcome::Ok => "ok",
            QmpOutcome::Error => "error",
            QmpOutcome::Timeout => "timeout",
            QmpOutcome::Closed => "closed",
        }
    }
}

/// What a [`QmpObserver`] calls: command name, how long it took, how it ended.
pub type QmpObserverFn = dyn Fn(&str, Duration, QmpOutcome) + Send + Sync;

/// A hook called after every QMP command with its name, duration and outcome.
#[derive(Clone)]
pub struct QmpObserver(pub Arc<QmpObserverFn>);

impl std::fmt::Debug for QmpObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QmpObserver")
    }
}

/// The default [`QmpOptions::max_line`]: 16 MiB, far above QEMU's largest replies
/// (`query-qmp-schema` is a few hundred KiB).
pub const DEFAULT_MAX_LINE: usize = 16 << 20;

/// The default [`QmpOptions::event_capacity`].
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

impl Default for QmpOptions {
    fn default() -> Self {
        QmpOptions {
            greeting_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(5),
            transcript: None,
            transcript_skip: vec!["query-status".to_owned(), "query-blockstats".to_owned()],
            max_line: DEFAULT_MAX_LINE,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            observer: None,
        }
    }
}

/// Something QEMU told us without being asked, delivered on the event channel returned by
/// [`QmpClient::connect`](super::QmpClient::connect).
///
/// The channel carries any number of [`QmpEvent::Event`] followed by exactly one
/// [`QmpEvent::Closed`] when the socket reaches EOF or fails; the channel then ends. It is
/// bounded ([`QmpOptions::event_capacity`]): events that find it full are dropped, never
/// waited for, and `Closed` always has a slot. If every
/// `QmpClient` handle is dropped first, the reader stops and the channel ends without `Closed`.
#[derive(Debug, Clone, PartialEq)]
pub enum QmpEvent {
    /// A QMP event such as `STOP`, `RESUME`, `SHUTDOWN`.
    Event {
        /// The event name, e.g. `"SHUTDOWN"`.
        name: String,
        /// The `data` member, `Value::Null` when QEMU sent none.
        data: Value,
        /// QEMU's timestamp of the event, if it sent one.
        timestamp: Option<QmpTimestamp>,
    },
    /// The connection is gone: QEMU exited or closed the socket. `error` is `None` for EOF or
    /// a connection reset (QEMU exiting), or the read error otherwise. All pending and later commands fail with
    /// [`VmmError::QmpClosed`].
    Closed {
        /// The read error that ended the connection, if it was not a clean EOF.
        error: Option<String>,
    },
}

/// The timestamp QEMU attaches to an event (host wall clock; `-1`/`-1` if QEMU had none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct QmpTimestamp {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Microseconds within the second.
    pub microseconds: i64,
}

/// The QEMU version announced in the greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct QemuVersion {
    pub major: u32,
    pub minor: u32,
    pub micro: u32,
}

/// QEMU's greeting: `{"QMP": {"version": {...}, "capabilities": [...]}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpGreeting {
    /// The QEMU version, e.g. 7.2.22.
    pub version: QemuVersion,
    /// The distribution's package string, e.g. `"Debian 1:7.2+dfsg-7+deb12u18"`.
    pub package: String,
    /// Capabilities QEMU offers (e.g. `"oob"`); the client enables none of them.
    pub capabilities: Vec<String>,
}

/// The reply of `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QmpStatus {
    /// QEMU's run state: `"prelaunch"`, `"running"`, `"paused"`, `"shutdown"`, ...
    pub status: String,
    /// Whether the guest CPUs are running.
    pub running: bool,
}

#[derive(Deserialize)]
struct GreetingWire {
    #[serde(rename = "QMP")]
    qmp: GreetingBody,
}

#[derive(Deserialize)]
struct GreetingBody {
    version: VersionWire,
    #[serde(default)]
    capabilities: Vec<String>,
}

#[derive(Deserialize)]
struct VersionWire {
    qemu: QemuVersion,
    #[serde(default)]
    package: String,
}

/// Parse the first line QEMU sends on a QMP socket.
pub(crate) fn parse_greeting(line: &[u8]) -> Result<QmpGreeting, VmmError> {
    let wire: GreetingWire = serde_json::from_slice(line).map_err(|e| {
        VmmError::QmpProtocol(format!(
            "bad QMP greeting ({e}): {}",
            String::from_utf8_lossy(line).trim_end()
        ))
    })?;
    Ok(QmpGreeting {
        version: wire.qmp.version.qemu,
        package: wire.qmp.version.package,
        capabilities: wire.qmp.capabilities,
    })
}

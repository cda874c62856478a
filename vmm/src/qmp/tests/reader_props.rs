//! Property tests of the QMP reader (`read_loop`) on input a peer could send: arbitrary
//! bytes never panic it and always end in exactly one `Closed` (with an error exactly when
//! a line is over the limit); replies mixed with events and garbage, written in arbitrary
//! chunks through a duplex stream, each reach the command with their id; a line one byte
//! over the limit is refused while one of exactly the limit is accepted; and an endless
//! line is not read past the limit.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::VmmError;
use crate::qmp::QmpEvent;
use crate::qmp::reader::{Pending, Shared, read_loop};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Everything the event channel carried, in order.
fn drain(rx: &mut mpsc::Receiver<QmpEvent>) -> Vec<QmpEvent> {
    let mut out = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        out.push(ev);
    }
    out
}

/// JSON values as a reply might carry: nested a little, strings with any characters
/// (serde_json escapes newlines, so a line stays a line).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z-]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One line the peer sends.
#[derive(Debug, Clone)]
enum Line {
    /// The reply to command `id`.
    Reply(u64, Value),
    /// An event.
    Event(String, Value),
    /// Not JSON at all (no `{`, so never an object by accident).
    Garbage(String),
    /// A reply nobody waits for.
    Stray(u64),
    /// JSON that is not an object.
    NotObject(Value),
}

impl Line {
    fn text(&self) -> String {
        match self {
            Line::Reply(id, v) => json!({"return": v, "id": id}).to_string(),
            Line::Event(name, data) => json!({"event": name, "data": data}).to_string(),
            Line::Garbage(s) => s.clone(),
            Line::Stray(id) => json!({"return": {}, "id": 1000 + id}).to_string(),
            Line::NotObject(v) => json!([v]).to_string(),
        }
    }
}

fn noise() -> impl Strategy<Value = Line> {
    prop_oneof![
        ("[A-Z_]{1,12}", json_value()).prop_map(|(n, d)| Line::Event(n, d)),
        "[^\n{]{0,40}".prop_map(Line::Garbage),
        (0u64..100).prop_map(Line::Stray),
        json_value().prop_map(Line::NotObject),
    ]
}

/// Replies to commands 0..n (in a random order) mixed with noise.
fn conversation() -> impl Strategy<Value = (usize, Vec<Line>)> {
    (1usize..12)
        .prop_flat_map(|n| {
            (
                Just(n),
                prop::collection::vec(json_value(), n),
                prop::collection::vec(noise(), 0..20),
            )
        })
        .prop_flat_map(|(n, values, noise)| {
            let mut lines: Vec<Line> = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| Line::Reply(i as u64, v))
                .collect();
            lines.extend(noise);
            (Just(n), Just(lines).prop_shuffle())
        })
}

/// Write `data` into the duplex in chunks of the given sizes (cycled), then close it.
async fn write_chunked(mut w: tokio::io::DuplexStream, data: Vec<u8>, chunks: Vec<usize>) {
    let mut at = 0;
    let mut sizes = chunks.iter().cycle();
    while at < data.len() {
        let n = (*sizes.next().unwrap_or(&1)).min(data.len() - at);
        if w.write_all(&data[at..at + n]).await.is_err() {
            return; // the reader stopped (a line over the limit)
        }
        at += n;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes: no panic; exactly one `Closed`, last; an error in it exactly when some
    /// line is longer than the limit; the connection is closed afterwards.
    #[test]
    fn arbitrary_bytes_end_in_one_closed(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        max in 1usize..300,
        buf in 1usize..64,
    ) {
        let (events, shared) = runtime().block_on(async {
            let shared = Arc::new(Shared::new(None));
            let (tx, mut rx) = mpsc::channel(4096);
            let reader = BufReader::with_capacity(buf, &bytes[..]);
            read_loop(reader, Arc::clone(&shared), tx, max).await;
            (drain(&mut rx), shared)
        });
        let too_long = bytes.split(|&b| b == b'\n').any(|line| line.len() > max);
        let closed: Vec<&QmpEvent> = events
            .iter()
            .filter(|e| matches!(e, QmpEvent::Closed { .. }))
            .collect();
        prop_assert_eq!(closed.len(), 1);
        match events.last() {
            Some(QmpEvent::Closed { error: None }) => prop_assert!(!too_long),
            Some(QmpEvent::Closed { error: Some(e) }) => {
                prop_assert!(too_long, "{}", e);
                prop_assert!(e.contains("longer than"), "{}", e);
            }
            other => prop_assert!(false, "last event {:?}", other),
        }
        prop_assert!(shared.is_closed());
        let refused = matches!(shared.closed_error(), VmmError::QmpProtocol(_));
        prop_assert_eq!(refused, too_long);
    }

    /// Replies arrive in any order, mixed with events, garbage, stray replies and non-object
    /// JSON, written in arbitrary chunks: each command gets exactly its own reply, every
    /// event is delivered in order, nothing else is.
    #[test]
    fn replies_reach_the_command_with_their_id(
        (n, lines) in conversation(),
        chunks in prop::collection::vec(1usize..200, 1..8),
    ) {
        let text: String = lines.iter().map(|l| l.text() + "\n").collect();
        let (replies, events) = runtime().block_on(async {
            let shared = Arc::new(Shared::new(None));
            let mut waiting = Vec::new();
            for id in 0..n as u64 {
                let (reply, rx) = oneshot::channel();
                shared
                    .register(id, Pending { reply, logged: false })
                    .expect("register");
                waiting.push(rx);
            }
            let (tx, mut events) = mpsc::channel(4096);
            let (w, r) = tokio::io::duplex(64);
            let writer = tokio::spawn(write_chunked(w, text.into_bytes(), chunks));
            read_loop(BufReader::new(r), Arc::clone(&shared), tx, 1 << 20).await;
            writer.await.expect("writer");
            let mut replies = Vec::new();
            for rx in waiting {
                replies.push(rx.await.ok());
            }
            (replies, drain(&mut events))
        });
        for line in &lines {
            if let Line::Reply(id, v) = line {
                prop_assert_eq!(
                    replies[*id as usize].as_ref(),
                    Some(&json!({"return": v})),
                    "command {}", id
                );
            }
        }
        let want: Vec<QmpEvent> = lines
            .iter()
            .filter_map(|l| match l {
                Line::Event(name, data) => Some(QmpEvent::Event {
                    name: name.clone(),
                    data: data.clone(),
                    timestamp: None,
                }),
                _ => None,
            })
            .chain([QmpEvent::Closed { error: None }])
            .collect();
        prop_assert_eq!(events, want);
    }

    /// A reply line of exactly `max` bytes reaches its command; one byte more closes the
    /// connection with a protocol error, and the command gets no reply.
    #[test]
    fn lines_over_the_limit_are_refused(max in 40usize..5000, over in any::<bool>()) {
        let head = "{\"id\": 0, \"return\": \"";
        let len = if over { max + 1 } else { max };
        let line = format!("{head}{}\"}}\n", "x".repeat(len - head.len() - 2));
        let (reply, events, error) = runtime().block_on(async {
            let shared = Arc::new(Shared::new(None));
            let (reply, rx) = oneshot::channel();
            shared.register(0, Pending { reply, logged: false }).expect("register");
            let (tx, mut events) = mpsc::channel(16);
            let reader = BufReader::with_capacity(128, line.as_bytes());
            read_loop(reader, Arc::clone(&shared), tx, max).await;
            (rx.await.ok(), drain(&mut events), shared.closed_error())
        });
        if over {
            prop_assert!(reply.is_none());
            prop_assert!(
                matches!(&events[..], [QmpEvent::Closed { error: Some(e) }] if e.contains("longer than")),
                "{:?}", events
            );
            prop_assert!(matches!(error, VmmError::QmpProtocol(_)), "{:?}", error);
        } else {
            prop_assert!(reply.is_some_and(|r| r["return"].as_str().map(str::len) == Some(len - head.len() - 2)));
            prop_assert_eq!(events, vec![QmpEvent::Closed { error: None }]);
        }
    }
}

/// A peer that sends one endless line: the reader stops after the limit instead of
/// growing a buffer, and the writer is cut off having written little more than that.
#[test]
fn an_endless_line_is_not_read_past_the_limit() {
    const MAX: usize = 1 << 20;
    let (written, events) = runtime().block_on(async {
        let shared = Arc::new(Shared::new(None));
        let (tx, mut events) = mpsc::channel(16);
        let (mut w, r) = tokio::io::duplex(64 << 10);
        let writer = tokio::spawn(async move {
            let chunk = vec![b'a'; 64 << 10];
            let mut written = 0usize;
            // At most 256 MiB, so a broken reader fails the test instead of hanging it.
            while written < 256 << 20 {
                if w.write_all(&chunk).await.is_err() {
                    break;
                }
                written += chunk.len();
            }
            written
        });
        read_loop(BufReader::new(r), shared, tx, MAX).await;
        (writer.await.expect("writer"), drain(&mut events))
    });
    assert!(
        written <= MAX + (256 << 10),
        "the peer wrote {written} bytes into a reader limited to {MAX}"
    );
    assert!(
        matches!(&events[..], [QmpEvent::Closed { error: Some(e) }] if e.contains("longer than 1 MiB")),
        "{events:?}"
    );
}

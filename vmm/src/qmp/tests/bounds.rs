//! The client's bounds against a fake peer over a real socket: a reply line over 16 MiB
//! closes the connection with a protocol error, and a consumer that reads no events loses
//! events (counted) but never replies.

use std::time::Duration;

use serde_json::json;

use super::bounded;
use super::peer::session;
use crate::VmmError;
use crate::qmp::{QmpEvent, QmpOptions};

#[tokio::test]
async fn a_reply_line_over_16_mib_closes_the_connection_with_a_protocol_error() {
    bounded(async {
        let mut s = session(QmpOptions::default()).await;
        let peer = &mut s.peer;
        let script = async {
            let request = peer.recv().await;
            // {"return": "aaa…", "id": N}: one byte over 16 MiB without the newline.
            let head = format!("{{\"id\": {}, \"return\": \"", request["id"]);
            let pad = (16 << 20) + 1 - head.len() - 2;
            let line = format!("{head}{}\"}}", "a".repeat(pad));
            assert_eq!(line.len(), (16 << 20) + 1);
            peer.send_raw(&line).await;
        };
        let (result, ()) = tokio::join!(s.qmp.execute("query-version", None), script);
        match result {
            Err(VmmError::QmpProtocol(m)) => {
                assert!(m.contains("longer than 16 MiB"), "{m}")
            }
            other => panic!("expected QmpProtocol, got {other:?}"),
        }
        match s.events.recv().await {
            Some(QmpEvent::Closed { error: Some(e) }) => {
                assert!(e.contains("longer than 16 MiB"), "{e}")
            }
            other => panic!("expected Closed with the reason, got {other:?}"),
        }
        assert!(s.qmp.is_closed());
        let later = tokio::time::timeout(Duration::from_millis(100), s.qmp.cont())
            .await
            .expect("a command after the close fails at once");
        assert!(
            matches!(&later, Err(VmmError::QmpProtocol(m)) if m.contains("16 MiB")),
            "{later:?}"
        );
        // The peer sees the connection end: the client shut its side down.
        assert!(s.peer.at_eof().await, "the client did not close the socket");
    })
    .await;
}

#[tokio::test]
async fn a_line_of_exactly_the_limit_is_accepted() {
    bounded(async {
        let mut s = session(QmpOptions {
            max_line: 4096,
            ..QmpOptions::default()
        })
        .await;
        let peer = &mut s.peer;
        let script = async {
            let request = peer.recv().await;
            let head = format!("{{\"id\": {}, \"return\": \"", request["id"]);
            let line = format!("{head}{}\"}}", "b".repeat(4096 - head.len() - 2));
            assert_eq!(line.len(), 4096);
            peer.send_raw(&line).await;
        };
        let (result, ()) = tokio::join!(s.qmp.execute("query-name", None), script);
        let value = result.expect("a line of exactly max_line bytes");
        assert!(value.as_str().is_some_and(|v| v.len() > 4000), "{value}");
        assert!(!s.qmp.is_closed());
    })
    .await;
}

#[tokio::test]
async fn a_consumer_that_reads_no_events_loses_events_but_not_replies() {
    bounded(async {
        let mut s = session(QmpOptions {
            event_capacity: 4,
            ..QmpOptions::default()
        })
        .await;
        let peer = &mut s.peer;
        let script = async {
            let request = peer.recv().await;
            for i in 0..100 {
                peer.send(json!({"event": format!("EV{i}"), "data": {"i": i}}))
                    .await;
            }
            peer.reply(&request, json!({"return": {"name": "vm1"}}))
                .await;
        };
        // Nobody reads events while the command waits: its reply still arrives.
        let (result, ()) = tokio::join!(s.qmp.execute("query-name", None), script);
        assert_eq!(result.expect("reply"), json!({"name": "vm1"}));
        // Capacity 4 with a slot kept for Closed: 3 delivered, 97 dropped and counted.
        assert_eq!(s.qmp.dropped_events(), 97);
        for i in 0..3 {
            match s.events.recv().await {
                Some(QmpEvent::Event { name, .. }) => assert_eq!(name, format!("EV{i}")),
                other => panic!("expected EV{i}, got {other:?}"),
            }
        }
        // Drained: events flow again, and Closed arrives at the end.
        s.peer.send(json!({"event": "AFTER"})).await;
        match s.events.recv().await {
            Some(QmpEvent::Event { name, .. }) => assert_eq!(name, "AFTER"),
            other => panic!("expected AFTER, got {other:?}"),
        }
        drop(s.peer);
        assert_eq!(
            s.events.recv().await,
            Some(QmpEvent::Closed { error: None })
        );
        assert_eq!(s.qmp.dropped_events(), 97);
    })
    .await;
}

#[tokio::test]
async fn closed_is_delivered_even_when_the_channel_is_full() {
    bounded(async {
        let mut s = session(QmpOptions {
            event_capacity: 2,
            ..QmpOptions::default()
        })
        .await;
        for i in 0..10 {
            s.peer.send(json!({"event": format!("EV{i}")})).await;
        }
        drop(s.peer);
        let mut got = Vec::new();
        while let Some(ev) = s.events.recv().await {
            got.push(ev);
        }
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(&got[0], QmpEvent::Event { name, .. } if name == "EV0"));
        assert_eq!(got[1], QmpEvent::Closed { error: None });
        assert_eq!(s.qmp.dropped_events(), 9);
    })
    .await;
}

//! Protocol corner cases against a scripted fake QEMU.

use std::time::Duration;

use serde_json::{Value, json};

use super::bounded;
use super::peer::{FakePeer, QEMU_7_2_GREETING, listen, session};
use crate::VmmError;
use crate::qmp::{QemuVersion, QmpClient, QmpEvent, QmpOptions, QmpTimestamp};

fn opts() -> QmpOptions {
    QmpOptions {
        greeting_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(5),
        ..QmpOptions::default()
    }
}

fn short_timeouts() -> QmpOptions {
    QmpOptions {
        greeting_timeout: Duration::from_millis(200),
        command_timeout: Duration::from_millis(200),
        ..QmpOptions::default()
    }
}

#[test]
fn client_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<QmpClient>();
}

#[tokio::test]
async fn greeting_is_parsed() {
    bounded(async {
        let s = session(opts()).await;
        let greeting = s.qmp.greeting();
        assert_eq!(
            greeting.version,
            QemuVersion {
                major: 7,
                minor: 2,
                micro: 22
            }
        );
        assert_eq!(greeting.package, "Debian 1:7.2+dfsg-7+deb12u18");
        assert_eq!(greeting.capabilities, vec!["oob".to_owned()]);
        assert!(!s.qmp.is_closed());
    })
    .await;
}

#[tokio::test]
async fn replies_out_of_order_reach_the_right_command() {
    bounded(async {
        let mut s = session(opts()).await;
        let peer = &mut s.peer;
        let script = async {
            let first = peer.recv().await;
            let second = peer.recv().await;
            assert_ne!(first["id"], second["id"], "ids must be unique");
            for request in [&second, &first] {
                let body = json!({"return": {"answer_to": request["execute"]}});
                peer.reply(request, body).await;
            }
        };
        let (a, b, ()) = tokio::join!(
            s.qmp.execute("query-name", None),
            s.qmp.execute("query-version", None),
            script
        );
        assert_eq!(a.expect("query-name")["answer_to"], "query-name");
        assert_eq!(b.expect("query-version")["answer_to"], "query-version");
        assert_eq!(s.qmp.pending_len(), 0);
    })
    .await;
}

#[tokio::test]
async fn events_interleave_with_replies() {
    bounded(async {
        let mut s = session(opts()).await;
        let peer = &mut s.peer;
        let script = async {
            let request = peer.recv().await;
            assert_eq!(request["execute"], "stop");
            peer.send(json!({"timestamp": {"seconds": 1_795_867_200_i64, "microseconds": 123_456}, "event": "STOP"}))
                .await;
            peer.reply(&request, json!({"return": {}})).await;
            peer.send(json!({"event": "RESUME"})).await;
        };
        let (stopped, ()) = tokio::join!(s.qmp.stop(), script);
        stopped.expect("stop");
        let first = s.events.recv().await.expect("STOP event");
        assert_eq!(
            first,
            QmpEvent::Event {
                name: "STOP".to_owned(),
                data: Value::Null,
                timestamp: Some(QmpTimestamp {
                    seconds: 1_795_867_200,
                    microseconds: 123_456
                }),
            }
        );
        let second = s.events.recv().await.expect("RESUME event");
        assert!(
            matches!(&second, QmpEvent::Event { name, timestamp: None, .. } if name == "RESUME"),
            "{second:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn error_reply_becomes_qmp_command_error() {
    bounded(async {
        let mut s = session(opts()).await;
        let peer = &mut s.peer;
        let script = async {
            let request = peer.recv().await;
            let body = json!({"error": {"class": "GenericError", "desc": "no such device 'x'"}});
            peer.reply(&request, body).await;
        };
        let args = Some(json!({"id": "x"}));
        let (result, ()) = tokio::join!(s.qmp.execute("device_del", args), script);
        match result {
            Err(VmmError::QmpCommand {
                command,
                class,
                desc,
            }) => {
                assert_eq!(command, "device_del");
                assert_eq!(class, "GenericError");
                assert_eq!(desc, "no such device 'x'");
            }
            other => panic!("expected QmpCommand, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn unanswered_command_times_out_and_is_forgotten() {
    bounded(async {
        let mut s = session(short_timeouts()).await;
        let (result, request) = tokio::join!(s.qmp.execute("stop", None), s.peer.recv());
        match result {
            Err(VmmError::QmpTimeout { command, timeout }) => {
                assert_eq!(command, "stop");
                assert_eq!(timeout, Duration::from_millis(200));
            }
            other => panic!("expected QmpTimeout, got {other:?}"),
        }
        assert_eq!(s.qmp.pending_len(), 0, "timed-out command still pending");

        // A late reply is dropped, and the connection keeps working.
        s.peer.reply(&request, json!({"return": {}})).await;
        let peer = &mut s.peer;
        let script = async {
            let request = peer.recv().await;
            peer.reply(&request, json!({"return": {"name": "vm1"}}))
                .await;
        };
        let long = Duration::from_secs(5);
        let (name, ()) = tokio::join!(s.qmp.execute_with_timeout("query-name", None, long), script);
        assert_eq!(name.expect("query-name"), json!({"name": "vm1"}));
    })
    .await;
}

#[tokio::test]
async fn peer_close_fails_pending_and_later_commands() {
    bounded(async {
        let s = session(opts()).await;
        let (qmp, mut events, mut peer) = (s.qmp, s.events, s.peer);
        let script = async move {
            peer.recv().await;
            drop(peer);
        };
        let (result, ()) = tokio::join!(qmp.execute("query-name", None), script);
        assert!(matches!(result, Err(VmmError::QmpClosed)), "{result:?}");
        assert_eq!(events.recv().await, Some(QmpEvent::Closed { error: None }));
        assert_eq!(events.recv().await, None, "channel ends after Closed");
        assert!(qmp.is_closed());
        let later = tokio::time::timeout(Duration::from_millis(100), qmp.cont())
            .await
            .expect("execute after close must fail at once");
        assert!(matches!(later, Err(VmmError::QmpClosed)), "{later:?}");
        assert_eq!(qmp.pending_len(), 0);
    })
    .await;
}

#[tokio::test]
async fn garbage_lines_are_skipped() {
    bounded(async {
        let mut s = session(opts()).await;
        let peer = &mut s.peer;
        let script = async {
            let request = peer.recv().await;
            peer.send_raw("this is not json").await;
            peer.send_raw("[1, 2, 3]").await;
            peer.send_raw("").await;
            peer.send_raw(r#"{"hello": "world"}"#).await;
            peer.send_raw(r#"{"return": {}, "id": 987654}"#).await;
            peer.send_raw(r#"{"return": {}, "id": "not-ours"}"#).await;
            peer.send_raw(r#"{"event": 42}"#).await;
            peer.send_raw("{\"truncated\": ").await;
            peer.reply(&request, json!({"return": {"ok": true}})).await;
            peer.send(json!({"event": "RESET", "data": {"guest": true}}))
                .await;
        };
        let (result, ()) = tokio::join!(s.qmp.execute("system_reset", None), script);
        assert_eq!(result.expect("system_reset"), json!({"ok": true}));
        match s.events.recv().await {
            Some(QmpEvent::Event { name, data, .. }) => {
                assert_eq!(name, "RESET");
                assert_eq!(data, json!({"guest": true}));
            }
            other => panic!("expected RESET event, got {other:?}"),
        }
        assert!(!s.qmp.is_closed());
    })
    .await;
}

#[tokio::test]
async fn execute_raw_returns_the_reply_object() {
    bounded(async {
        let mut s = session(opts()).await;
        let peer = &mut s.peer;
        let script = async {
            let request = peer.recv().await;
            assert_eq!(request["execute"], "query-cpus-fast");
            assert!(request["id"].is_u64(), "client sets its own id: {request}");
            peer.reply(&request, json!({"return": [{"cpu-index": 0}]}))
                .await;
            let request = peer.recv().await;
            assert_eq!(request["arguments"], json!({"x": 1}));
            let body = json!({"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}});
            peer.reply(&request, body).await;
        };
        let user_ok = json!({"execute": "query-cpus-fast"});
        let user_bad = json!({"execute": "nope", "arguments": {"x": 1}, "id": "mine"});
        let both = async {
            let ok = s.qmp.execute_raw(user_ok).await;
            let bad = s.qmp.execute_raw(user_bad).await;
            (ok, bad)
        };
        let ((ok, bad), ()) = tokio::join!(both, script);
        assert_eq!(ok.expect("raw ok"), json!({"return": [{"cpu-index": 0}]}));
        assert_eq!(
            bad.expect("a QMP error is a reply, not an Err"),
            json!({"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}, "id": "mine"})
        );
        let not_object = s.qmp.execute_raw(json!("query-status")).await;
        assert!(matches!(not_object, Err(VmmError::QmpProtocol(_))), "{not_object:?}");
    })
    .await;
}

#[tokio::test]
async fn quit_succeeds_when_peer_closes_before_replying() {
    bounded(async {
        let s = session(opts()).await;
        let (qmp, mut events, mut peer) = (s.qmp, s.events, s.peer);
        let script = async move {
            let request = peer.recv().await;
            assert_eq!(request["execute"], "quit");
            drop(peer);
        };
        let (result, ()) = tokio::join!(qmp.quit(), script);
        result.expect("quit");
        assert_eq!(events.recv().await, Some(QmpEvent::Closed { error: None }));
    })
    .await;
}

#[tokio::test]
async fn missing_greeting_times_out() {
    bounded(async {
        // Never accepted: the connection sits in the listen backlog, as when QEMU is slow.
        let l = listen();
        let started = tokio::time::Instant::now();
        let result = QmpClient::connect_path(&l.path, short_timeouts()).await;
        match result {
            Err(VmmError::QmpTimeout { command, .. }) => assert_eq!(command, "greeting"),
            other => panic!("expected greeting timeout, got {:?}", other.map(|_| ())),
        }
        assert!(started.elapsed() >= Duration::from_millis(200));

        // Accepted but silent.
        let connecting = tokio::spawn(QmpClient::connect_path(l.path.clone(), short_timeouts()));
        let _silent = FakePeer::accept(&l.listener).await;
        let result = connecting.await.expect("connect task");
        assert!(
            matches!(&result, Err(VmmError::QmpTimeout { command, .. }) if command == "greeting"),
            "{:?}",
            result.map(|_| ())
        );
    })
    .await;
}

#[tokio::test]
async fn late_accept_still_connects() {
    bounded(async {
        let l = listen();
        let connecting = tokio::spawn(QmpClient::connect_path(l.path.clone(), opts()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut peer = FakePeer::accept(&l.listener).await;
        peer.handshake().await;
        let (qmp, _events) = connecting.await.expect("connect task").expect("connect");
        assert_eq!(qmp.greeting().version.major, 7);
    })
    .await;
}

#[tokio::test]
async fn close_or_garbage_instead_of_greeting() {
    bounded(async {
        let l = listen();
        let connecting = tokio::spawn(QmpClient::connect_path(l.path.clone(), opts()));
        drop(FakePeer::accept(&l.listener).await);
        let result = connecting.await.expect("connect task");
        assert!(
            matches!(result, Err(VmmError::QmpClosed)),
            "{:?}",
            result.map(|_| ())
        );

        let connecting = tokio::spawn(QmpClient::connect_path(l.path.clone(), opts()));
        let mut peer = FakePeer::accept(&l.listener).await;
        peer.send_raw(r#"{"return": {}}"#).await;
        let result = connecting.await.expect("connect task");
        assert!(
            matches!(result, Err(VmmError::QmpProtocol(_))),
            "{:?}",
            result.map(|_| ())
        );

        // No socket at all: an I/O error naming the path.
        let missing = l.dir.path().join("missing.sock");
        let result = QmpClient::connect_path(&missing, opts()).await;
        assert!(
            matches!(&result, Err(VmmError::Io { path, .. }) if *path == missing),
            "{:?}",
            result.map(|_| ())
        );
    })
    .await;
}

#[tokio::test]
async fn transcript_logs_exchanges_but_not_skipped_polls() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("qmp.log");
        let mut s = session(QmpOptions {
            transcript: Some(log.clone()),
            ..opts()
        })
        .await;
        let peer = &mut s.peer;
        let script = async {
            let request = peer.recv().await;
            let body =
                json!({"return": {"status": "paused", "singlestep": false, "running": false}});
            peer.reply(&request, body).await;
            let request = peer.recv().await;
            peer.send(json!({"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}))
                .await;
            peer.reply(&request, json!({"return": {}})).await;
        };
        let both = async {
            let status = s.qmp.query_status().await.expect("query-status");
            assert_eq!(status.status, "paused");
            assert!(!status.running);
            s.qmp.cont().await.expect("cont");
        };
        tokio::join!(both, script);
        drop(s.peer);
        assert_eq!(
            s.events
                .recv()
                .await
                .map(|e| matches!(e, QmpEvent::Event { .. })),
            Some(true)
        );
        assert_eq!(
            s.events.recv().await,
            Some(QmpEvent::Closed { error: None })
        );

        let text = std::fs::read_to_string(&log).expect("read transcript");
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines {
            assert_eq!(
                line.as_bytes().get(23),
                Some(&b'Z'),
                "timestamp in {line:?}"
            );
            assert!(
                ["-> ", "<- ", "-- "].contains(&&line[25..28]),
                "direction in {line:?}"
            );
        }
        let bodies: Vec<(&str, Value)> = lines
            .iter()
            .map(|l| {
                (
                    &l[25..27],
                    serde_json::from_str(&l[28..]).unwrap_or(Value::Null),
                )
            })
            .collect();
        let expected = [
            (
                "<-",
                serde_json::from_str(QEMU_7_2_GREETING).expect("greeting JSON"),
            ),
            ("->", json!({"execute": "qmp_capabilities", "id": 0})),
            ("<-", json!({"return": {}, "id": 0})),
            ("->", json!({"execute": "cont", "id": 2})),
            (
                "<-",
                json!({"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}),
            ),
            ("<-", json!({"return": {}, "id": 2})),
        ];
        assert_eq!(bodies[..expected.len()], expected, "{text}");
        assert_eq!(lines.get(6).map(|l| &l[25..]), Some("-- connection closed"));
        assert_eq!(lines.len(), 7, "{text}");
        assert!(
            !text.contains("query-status") && !text.contains("singlestep"),
            "{text}"
        );
    })
    .await;
}

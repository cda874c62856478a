//! One round trip against a real `qemu-system-x86_64` (Debian 12: QEMU 7.2). The test fails,
//! never skips, when QEMU is not installed.

use std::io::ErrorKind;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::mpsc::Receiver;

use super::bounded;
use crate::VmmError;
use crate::qmp::{QmpClient, QmpEvent, QmpOptions};

fn spawn_qemu(socket: &Path) -> Child {
    let qmp = format!("unix:{},server=on,wait=off", socket.display());
    let spawned = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "q35,accel=tcg",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-S", "-qmp", &qmp])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            panic!(
                "qemu-system-x86_64 not found: install qemu-system-x86 (apt-get install qemu-system-x86)"
            )
        }
        Err(e) => panic!("cannot run qemu-system-x86_64: {e}"),
    }
}

/// Connect once QEMU listens (bounded retry on "no such file" / "connection refused").
async fn connect(
    child: &mut Child,
    socket: &Path,
    opts: QmpOptions,
) -> (QmpClient, Receiver<QmpEvent>) {
    for _ in 0..200 {
        match QmpClient::connect_path(socket, opts.clone()).await {
            Ok(connected) => return connected,
            Err(VmmError::Io { .. }) => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("QEMU exited before opening its QMP socket: {status}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("QMP connect to QEMU failed: {e}"),
        }
    }
    panic!("QEMU did not open {} within 10 s", socket.display());
}

async fn wait_closed(events: &mut Receiver<QmpEvent>) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            QmpEvent::Event { name, .. } => seen.push(name),
            QmpEvent::Closed { .. } => return seen,
        }
    }
    panic!("event channel ended without Closed (saw {seen:?})");
}

#[tokio::test]
async fn real_qemu_round_trip() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("qmp.sock");
        let log = dir.path().join("qmp.log");
        let mut child = spawn_qemu(&socket);
        let opts = QmpOptions {
            transcript: Some(log.clone()),
            ..QmpOptions::default()
        };
        let (qmp, mut events) = connect(&mut child, &socket, opts).await;
        assert_eq!(qmp.greeting().version.major, 7);

        let status = qmp.query_status().await.expect("query-status");
        assert_eq!(status.status, "prelaunch");
        assert!(!status.running);

        qmp.cont().await.expect("cont");
        let status = qmp.query_status().await.expect("query-status");
        assert_eq!(status.status, "running");
        assert!(status.running);

        let reply = qmp
            .execute_raw(json!({"execute": "query-name"}))
            .await
            .expect("query-name");
        assert!(reply.get("return").is_some(), "{reply}");

        let reply = qmp
            .execute_raw(json!({"execute": "no-such-command"}))
            .await
            .expect("an error reply is still a reply");
        assert_eq!(reply["error"]["class"], "CommandNotFound", "{reply}");
        let err = qmp.execute("no-such-command", None).await;
        assert!(
            matches!(&err, Err(VmmError::QmpCommand { class, .. }) if class == "CommandNotFound"),
            "{err:?}"
        );

        qmp.quit().await.expect("quit");
        let seen = wait_closed(&mut events).await;
        assert!(seen.iter().any(|name| name == "RESUME"), "events: {seen:?}");
        assert!(qmp.is_closed());
        assert!(matches!(qmp.cont().await, Err(VmmError::QmpClosed)));
        let exit = child.wait().await.expect("wait for QEMU");
        assert!(exit.success(), "QEMU exit status {exit}");

        let text = std::fs::read_to_string(&log).expect("read transcript");
        for needle in [
            r#"<- {"QMP": "#,
            r#"-> {"execute":"qmp_capabilities""#,
            r#"-> {"execute":"cont""#,
            r#"-> {"execute":"query-name""#,
            "CommandNotFound",
            r#"-> {"execute":"quit""#,
            r#""event": "RESUME""#,
            "-- connection closed",
        ] {
            assert!(text.contains(needle), "transcript lacks {needle}:\n{text}");
        }
        assert!(
            !text.contains("query-status") && !text.contains("singlestep"),
            "query-status must not be in the transcript:\n{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_file_descriptor_reaches_qemu_with_add_fd() {
    bounded(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("qmp.sock");
        let mut child = spawn_qemu(&socket);
        let (qmp, mut events) = connect(&mut child, &socket, QmpOptions::default()).await;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("disk.raw"))
            .expect("create");
        file.set_len(1 << 20).expect("truncate");
        use std::os::fd::AsFd;
        let added = qmp
            .execute_with_fd(
                "add-fd",
                Some(json!({"fdset-id": 7, "opaque": "disk9"})),
                file.as_fd(),
            )
            .await
            .expect("add-fd with SCM_RIGHTS");
        assert_eq!(added["fdset-id"], 7, "{added}");
        // QEMU now holds the file open: it can be used as /dev/fdset/7.
        qmp.execute(
            "blockdev-add",
            Some(json!({"driver": "file", "filename": "/dev/fdset/7", "node-name": "d9"})),
        )
        .await
        .expect("blockdev-add through the fdset");
        let sets = qmp
            .execute("query-fdsets", None)
            .await
            .expect("query-fdsets");
        assert!(sets.to_string().contains("disk9"), "{sets}");
        // Without an fd, add-fd is refused by QEMU itself.
        let err = qmp
            .execute("add-fd", Some(json!({"fdset-id": 8})))
            .await
            .expect_err("add-fd without fd");
        assert!(err.to_string().contains("No file descriptor"), "{err}");
        qmp.quit().await.expect("quit");
        wait_closed(&mut events).await;
        let _ = child.wait().await;
    })
    .await;
}

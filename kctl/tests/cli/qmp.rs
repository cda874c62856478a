//! `kctl vm qmp`.

use super::common::texts::*;
use super::common::*;

#[test]
fn qmp_one_shot_and_shell() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["vm", "qmp", "web", r#"{"execute":"query-status"}"#]));
    let reply: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(reply["return"]["status"], "running");
    assert!(out.contains("\n  "), "pretty-printed: {out}");

    let err = failed(&server.kctl(&["vm", "qmp", "web", r#"{"execute":"nope"}"#]));
    assert_eq!(
        err,
        "Error: QMP error CommandNotFound: The command nope has not been found\n"
    );

    let out = run(
        server.command(&["vm", "qmp", "web", "-o", "json"]),
        b"query-status\n\n\
          blockdev-add driver=raw node-name=r1 size=1048576 file='{\"driver\":\"null-co\"}'\n\
          blockdev-reopen options='[{\"driver\":\"raw\",\"node-name\":\"r1\",\"read-only\":true}]'\n\
          device_del noeq\nnope\n.exit\nquery-status\n",
    );
    let stdout = ok(&out);
    let replies: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("json stream");
    assert_eq!(replies.len(), 4, "{stdout}");
    assert_eq!(replies[0]["return"]["running"], true);
    assert_eq!(replies[1], serde_json::json!({"return": {}}));
    assert_eq!(replies[2], serde_json::json!({"return": {}}));
    assert_eq!(replies[3]["error"]["class"], "CommandNotFound");
    // What kctl made of the shell's lines; nothing after `.exit`.
    let sent: Vec<serde_json::Value> = recorded(&server.records.qmp)
        .iter()
        .map(|r| serde_json::from_str(&r.command_json).expect("json"))
        .collect();
    let executes: Vec<&str> = sent.iter().filter_map(|c| c["execute"].as_str()).collect();
    assert_eq!(
        executes,
        [
            "query-status",
            "nope",
            "query-status",
            "blockdev-add",
            "blockdev-reopen",
            "nope"
        ]
    );
    assert_eq!(
        sent[3]["arguments"],
        serde_json::json!({"driver": "raw", "node-name": "r1", "size": 1048576,
            "file": {"driver": "null-co"}})
    );
    assert_eq!(
        sent[4]["arguments"],
        serde_json::json!({"options": [{"driver": "raw", "node-name": "r1", "read-only": true}]})
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("error: expected key=value, got \"noeq\""),
        "{stderr}"
    );
    assert!(stderr.contains("QMP error CommandNotFound"), "{stderr}");
    assert!(
        !stderr.contains("qmp> "),
        "no prompt without a TTY: {stderr}"
    );
}

#[test]
fn qmp_refusals() {
    let server = Server::unix();
    let err = failed(&server.kctl(&["vm", "qmp", "web", r#"{"arguments":{}}"#]));
    assert_eq!(
        err,
        format!("Error: {} (InvalidArgument)\n", QMP_NOT_A_COMMAND.fill(&[]))
    );
    // No QEMU runs: nothing to talk to.
    let err = failed(&server.kctl(&["vm", "qmp", "db", r#"{"execute":"query-status"}"#]));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            WRONG_STATE.fill(&["STOPPED", "talk QMP"])
        )
    );
}

#[test]
fn local_validation_happens_before_connecting() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut command = kctl_command(home.path());
    command.args([
        "--endpoint",
        "unix:///nonexistent/kcore.sock",
        "vm",
        "qmp",
        "web",
        "[1]",
    ]);
    let err = failed(&run(command, b""));
    assert!(err.contains("must be a JSON object"), "{err}");
}

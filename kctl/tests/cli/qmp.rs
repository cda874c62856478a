//! `kctl vm qmp`.

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
        b"query-status\n\necho-args a=1 b=x c='{\"d\":[1]}'\necho-bad noeq\nnope\n.exit\nquery-status\n",
    );
    let stdout = ok(&out);
    let replies: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("json stream");
    assert_eq!(replies.len(), 3, "{stdout}");
    assert_eq!(replies[0]["return"]["running"], true);
    assert_eq!(
        replies[1]["return"],
        serde_json::json!({"execute": "echo-args", "arguments": {"a": 1, "b": "x", "c": {"d": [1]}}})
    );
    assert_eq!(replies[2]["error"]["class"], "CommandNotFound");
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

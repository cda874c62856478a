//! `kctl vm qmp`: one QMP command, or an interactive QMP shell.
//!
//! The shell reads one command per line: a JSON object, or the short form
//! `command-name key=value ...`, which becomes
//! `{"execute":"command-name","arguments":{"key":value,...}}` (values are parsed as JSON
//! when they can be, else taken as strings; `'...'` and `"..."` quote). `.exit` or end of
//! input leaves the shell: `quit` is QMP's own command (it stops QEMU) and is sent as such.

use std::io::IsTerminal;

use anyhow::{Context, Result, anyhow, bail};
use kcore_proto::v1::ExecQmpRequest;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::endpoint::Client;
use crate::output::{self, Format};

/// Checks that `text` is a JSON object and returns it compactly encoded.
pub fn validate_command(text: &str) -> Result<String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| anyhow!("QMP command is not valid JSON: {e}"))?;
    if !value.is_object() {
        bail!(
            "a QMP command must be a JSON object, like {{\"execute\":\"query-status\"}}; got {}",
            kind(&value)
        );
    }
    Ok(value.to_string())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one shell line into a QMP command object (compact JSON). `Ok(None)` for blank
/// lines.
pub fn parse_line(line: &str) -> Result<Option<String>> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    if line.starts_with('{') {
        return validate_command(line).map(Some);
    }
    let words = split_words(line)?;
    let mut words = words.into_iter();
    let Some(command) = words.next() else {
        return Ok(None);
    };
    let mut arguments = Map::new();
    for word in words {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| anyhow!("expected key=value, got {word:?}"))?;
        if key.is_empty() {
            bail!("empty argument name in {word:?}");
        }
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        arguments.insert(key.to_string(), value);
    }
    let mut object = Map::new();
    object.insert("execute".into(), Value::String(command));
    if !arguments.is_empty() {
        object.insert("arguments".into(), Value::Object(arguments));
    }
    Ok(Some(Value::Object(object).to_string()))
}

/// Splits on whitespace, honouring `'single'` and `"double"` quotes (which group and are
/// removed) and `\` escapes outside single quotes.
pub fn split_words(line: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => bail!("unterminated ' quote"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => current.push(c),
                            None => bail!("unterminated \" quote"),
                        },
                        Some(c) => current.push(c),
                        None => bail!("unterminated \" quote"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    current.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

/// The QMP error in a reply, as `Class: description`, if it is one.
pub fn reply_error(reply: &Value) -> Option<String> {
    let error = reply.get("error")?;
    let class = error
        .get("class")
        .and_then(Value::as_str)
        .unwrap_or("Error");
    let desc = error
        .get("desc")
        .and_then(Value::as_str)
        .map_or_else(|| error.to_string(), str::to_string);
    Some(format!("{class}: {desc}"))
}

async fn exec(client: &Client, vm: &str, command_json: String) -> Result<Value> {
    let reply = client
        .api()
        .exec_qmp(ExecQmpRequest {
            vm: vm.to_string(),
            command_json,
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    serde_json::from_str(&reply.reply_json).with_context(|| {
        format!(
            "the server returned a QMP reply that is not JSON: {:?}",
            reply.reply_json
        )
    })
}

fn print_reply(format: Format, reply: &Value) -> Result<()> {
    output::print_structured(format, reply)
}

/// `kctl vm qmp NAME JSON`: validated locally before any connection is made.
pub async fn one(client: &Client, format: Format, vm: &str, command: String) -> Result<()> {
    let reply = exec(client, vm, command).await?;
    if let Some(error) = reply_error(&reply) {
        if format != Format::Table {
            print_reply(format, &reply)?;
        }
        bail!("QMP error {error}");
    }
    print_reply(format, &reply)
}

/// `kctl vm qmp NAME`: the interactive shell.
pub async fn shell(client: &Client, format: Format, vm: &str) -> Result<()> {
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprintln!(
            "QMP shell for {vm}: a JSON object or `command key=value ...` per line; \
             .exit or Ctrl-D leaves (`quit` stops QEMU)"
        );
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        if tty {
            eprint!("qmp> ");
        }
        let Some(line) = lines.next_line().await.context("reading stdin")? else {
            if tty {
                eprintln!();
            }
            break;
        };
        let trimmed = line.trim();
        if trimmed == ".exit" || trimmed == ".quit" {
            break;
        }
        if trimmed == ".help" {
            eprintln!(
                "  {{\"execute\":\"query-status\"}}     a full QMP command\n  \
                 query-status                     the same, short form\n  \
                 device_del id=net0               with arguments (JSON values or strings)\n  \
                 .exit                            leave (also Ctrl-D)"
            );
            continue;
        }
        let command = match parse_line(trimmed) {
            Ok(Some(command)) => command,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        match exec(client, vm, command).await {
            Ok(reply) => {
                print_reply(format, &reply)?;
                if let Some(error) = reply_error(&reply) {
                    eprintln!("QMP error {error}");
                }
            }
            Err(e) => eprintln!("Error: {e:#}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parsed(line: &str) -> Value {
        let text = parse_line(line).expect("parses").expect("a command");
        serde_json::from_str(&text).expect("json")
    }

    #[test]
    fn short_form() {
        assert_eq!(parsed("query-status"), json!({"execute": "query-status"}));
        assert_eq!(
            parsed("device_del id=net0"),
            json!({"execute": "device_del", "arguments": {"id": "net0"}})
        );
        assert_eq!(
            parsed("balloon value=1073741824 force=true name=null"),
            json!({"execute": "balloon", "arguments": {"value": 1073741824, "force": true, "name": null}})
        );
        assert_eq!(
            parsed(r#"human-monitor-command command-line="info status""#),
            json!({"execute": "human-monitor-command", "arguments": {"command-line": "info status"}})
        );
        assert_eq!(
            parsed(r#"object-add qom-type=memory-backend-ram opts='{"size":1024}' tag='"5"'"#),
            json!({"execute": "object-add", "arguments": {
                "qom-type": "memory-backend-ram", "opts": {"size": 1024}, "tag": "5"}})
        );
        assert_eq!(
            parsed("set-link name=net0 up=false"),
            json!({"execute": "set-link", "arguments": {"name": "net0", "up": false}})
        );
        // A value containing '=' keeps everything after the first '='.
        assert_eq!(
            parsed("x a=b=c"),
            json!({"execute": "x", "arguments": {"a": "b=c"}})
        );
    }

    #[test]
    fn full_json_and_errors() {
        assert_eq!(
            parsed(r#"  {"execute":"query-cpus-fast"} "#),
            json!({"execute": "query-cpus-fast"})
        );
        assert!(parse_line("   ").expect("blank").is_none());
        assert!(parse_line("device_del net0").is_err());
        assert!(parse_line("x =1").is_err());
        assert!(parse_line("x a='unterminated").is_err());
        assert!(parse_line("{not json").is_err());
    }

    #[test]
    fn validation() {
        assert_eq!(
            validate_command(r#"{ "execute" : "query-status" }"#).expect("ok"),
            r#"{"execute":"query-status"}"#
        );
        let err = validate_command("[1]").expect_err("array");
        assert!(err.to_string().contains("must be a JSON object"), "{err}");
        let err = validate_command("query-status").expect_err("not json");
        assert!(err.to_string().contains("not valid JSON"), "{err}");
    }

    #[test]
    fn errors_in_replies() {
        assert_eq!(reply_error(&json!({"return": {}})), None);
        assert_eq!(
            reply_error(
                &json!({"error": {"class": "CommandNotFound", "desc": "The command foo has not been found"}})
            ),
            Some("CommandNotFound: The command foo has not been found".into())
        );
    }

    #[test]
    fn word_splitting() {
        assert_eq!(
            split_words(r#"a  b\ c "d e" 'f "g"'"#).expect("ok"),
            ["a", "b c", "d e", r#"f "g""#]
        );
        assert_eq!(split_words("k=''").expect("ok"), ["k="]);
    }
}

//! QMP passthrough: `qmp_query` runs `query-*` commands only (read-only, offered by
//! default); `qmp_execute` runs any command (destructive: it can stop, reset or reshape a
//! guest behind kcore's back, and marks the VM tainted). kcored records every command in
//! the VM's events (kind vm.qmp) with the caller.

use kcore_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tonic::Code;

use crate::access::Access;
use crate::error::ToolError;
use crate::registry::{Ctx, Done, Meta, SHORT, ToolDef, tool};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QmpArgs {
    /// The VM's name (or id); it must be running.
    pub name: String,
    /// The QMP command, e.g. "query-status", "query-block", "query-cpus-fast".
    pub command: String,
    /// The command's arguments, as QMP takes them.
    #[serde(default)]
    pub arguments: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct QmpReply {
    /// QEMU's reply object: {"return": ...} or {"error": {"class": ..., "desc": ...}}.
    pub reply: Value,
}

/// The QMP tools.
pub fn tools() -> Vec<ToolDef> {
    vec![
        tool(
            Meta {
                name: "qmp_query",
                title: "Query QEMU (QMP query-*)",
                description: "Ask a running VM's QEMU something through QMP: only query-* \
                    commands (query-status, query-block, query-cpus-fast, query-version, \
                    query-commands, ...), which change nothing. Returns QEMU's reply. kcore \
                    records each command in the VM's events.",
                access: Access::Read,
                idempotent: true,
                open_world: false,
                methods: &["ExecQMP"],
            },
            |ctx, a: QmpArgs| run(ctx, a, true),
        ),
        tool(
            Meta {
                name: "qmp_execute",
                title: "Run any QMP command",
                description: "Send any QMP command to a running VM's QEMU (stop, cont, \
                    system_reset, device_del, ...). It acts behind kcore's back: kcore marks \
                    the VM tainted (until its next start) and records the command in its \
                    events. Prefer the VM tools; use qmp_query to only look.",
                access: Access::Destructive,
                idempotent: false,
                open_world: false,
                methods: &["ExecQMP"],
            },
            |ctx, a: QmpArgs| run(ctx, a, false),
        ),
    ]
}

async fn run(ctx: Ctx, a: QmpArgs, query_only: bool) -> Result<Done<QmpReply>, ToolError> {
    if query_only && !a.command.starts_with("query-") {
        return Err(ToolError::InvalidArguments(format!(
            "qmp_query runs only query-* commands, not {:?} (qmp_execute runs others, when \
             kcore-mcp allows destructive tools)",
            a.command
        )));
    }
    let mut command = json!({ "execute": a.command });
    if let Some(args) = a.arguments {
        command["arguments"] = Value::Object(args);
    }
    let client = ctx.client().await?;
    let req = pb::ExecQmpRequest {
        vm: a.name.clone(),
        command_json: command.to_string(),
    };
    let reply = client
        .api()
        .exec_qmp(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .reply_json;
    let reply: Value = serde_json::from_str(&reply).map_err(|e| ToolError::Api {
        code: Code::Internal,
        message: format!("QEMU's reply is not JSON: {e}"),
    })?;
    if let Some(err) = reply.get("error") {
        let desc = err.get("desc").and_then(Value::as_str).unwrap_or("error");
        return Err(ToolError::Api {
            code: Code::FailedPrecondition,
            message: format!("QEMU refused {}: {desc}", a.command),
        });
    }
    let mut summary = reply
        .get("return")
        .map(Value::to_string)
        .unwrap_or_else(|| reply.to_string());
    if summary.len() > 2000 {
        let mut cut = 2000;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.truncate(cut);
        summary.push_str(" ...");
    }
    Ok(Done {
        summary: format!("{} on {}: {summary}", a.command, a.name),
        data: QmpReply { reply },
    })
}

//! The MCP server: lists the tools the [`Policy`](crate::access::Policy) offers, runs them
//! (arguments checked against their types, errors as tool results, one audit line for each
//! call of a tool that changes anything), and serves VMs' consoles and details as resources
//! and two prompts for agents.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    Prompt, PromptArgument, PromptMessage, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, Role, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Map, Value};

use crate::access::{Access, Ceiling};
use crate::error::ToolError;
use crate::registry::{CLIENT_NAME, Ctx, Kcore, SHORT, ToolDef};
use crate::tools::lines_of;
use crate::views::VmDetail;

/// The server behind one transport (every HTTP session gets a clone).
#[derive(Debug, Clone)]
pub struct KcoreMcp {
    ctx: Ctx,
    tools: Arc<Vec<ToolDef>>,
}

impl KcoreMcp {
    pub fn new(kcore: Arc<Kcore>) -> KcoreMcp {
        KcoreMcp {
            ctx: Ctx(kcore),
            tools: Arc::new(crate::tools::all()),
        }
    }

    /// The tools this server offers.
    pub fn offered(&self) -> impl Iterator<Item = &ToolDef> {
        self.tools.iter().filter(|t| t.offered(&self.ctx.0.policy))
    }

    fn instructions(&self) -> String {
        let offered: Vec<&str> = self.offered().map(|t| t.meta.name).collect();
        let mut s = format!(
            "kcore runs QEMU/KVM virtual machines on a cluster of nodes. These tools call its \
             API at {} ({}). Start with list_vms or list_nodes; create_vm then wait_vm_ready \
             brings a VM up; console_tail and recent_events say what went wrong. Errors carry \
             kcore's own message and gRPC code.",
            self.ctx.0.endpoint(),
            self.ctx.0.policy.describe()
        );
        if !offered.contains(&"create_vm") {
            s.push_str(
                " Tools that change anything are not offered here: the operator starts \
                 kcore-mcp with --allow-write (and --allow-destructive for delete, force stop, \
                 drain and QMP commands) and an admin certificate to offer them.",
            );
        }
        s
    }

    /// Run tool `name` with `args`, as a tool call does.
    pub async fn call(&self, name: &str, args: Map<String, Value>) -> Option<CallToolResult> {
        let def = self.tools.iter().find(|t| t.meta.name == name)?;
        let policy = &self.ctx.0.policy;
        let outcome = match policy.refusal(def.meta.access, def.meta.methods) {
            Some(why) => Err(ToolError::NotOffered {
                tool: name.to_string(),
                why,
            }),
            None => def.run(self.ctx.clone(), args.clone()).await,
        };
        let mutating = def.meta.access != Access::Read;
        if mutating {
            audit(def, &policy.ceiling, &args, &outcome);
        }
        Some(match outcome {
            Ok(done) => {
                let mut r = CallToolResult::success(vec![ContentBlock::text(done.summary)]);
                r.structured_content = Some(done.data);
                r
            }
            Err(e) => {
                if !mutating {
                    tracing::info!(tool = name, error = %e.outcome(), "tool failed");
                }
                e.to_result()
            }
        })
    }

    async fn console(&self, vm: &str) -> Result<String, ToolError> {
        let client = self.ctx.client().await?;
        let req = kcore_proto::v1::GetConsoleLogRequest { vm: vm.to_string() };
        let log = client
            .api()
            .get_console_log(self.ctx.req(req, SHORT))
            .await
            .map_err(|s| client.error(s))?
            .into_inner();
        Ok(lines_of(&log.data).join("\n"))
    }

    async fn vm_json(&self, vm: &str) -> Result<String, ToolError> {
        let client = self.ctx.client().await?;
        let req = kcore_proto::v1::GetVmRequest {
            name: vm.to_string(),
        };
        let vm = client
            .api()
            .get_vm(self.ctx.req(req, SHORT))
            .await
            .map_err(|s| client.error(s))?
            .into_inner();
        serde_json::to_string_pretty(&VmDetail::from(&vm)).map_err(|e| ToolError::Api {
            code: tonic::Code::Internal,
            message: e.to_string(),
        })
    }

    async fn vm_names(&self) -> Result<Vec<String>, ToolError> {
        let client = self.ctx.client().await?;
        let req = kcore_proto::v1::ListVMsRequest::default();
        Ok(client
            .api()
            .list_v_ms(self.ctx.req(req, SHORT))
            .await
            .map_err(|s| client.error(s))?
            .into_inner()
            .vms
            .into_iter()
            .map(|v| v.name)
            .collect())
    }
}

/// The audit line of a call to a tool that changes something: the tool, its arguments
/// (cloud-init data shown only by size: it can carry secrets), who kcore-mcp calls kcore
/// as, and how it ended (refusals by kcore-mcp itself included).
fn audit(
    def: &ToolDef,
    caller: &Ceiling,
    args: &Map<String, Value>,
    outcome: &Result<crate::registry::Done<Value>, ToolError>,
) {
    let mut shown = args.clone();
    if let Some(Value::Object(ci)) = shown.get_mut("cloud_init") {
        for v in ci.values_mut() {
            if let Value::String(s) = v {
                *v = Value::String(format!("<{} bytes>", s.len()));
            }
        }
    }
    let outcome = match outcome {
        Ok(done) => format!("ok: {}", done.summary.lines().next().unwrap_or_default()),
        Err(e) => e.outcome(),
    };
    let arguments = Value::Object(shown).to_string();
    tracing::info!(
        target: "kcore_mcp::audit",
        tool = def.meta.name,
        access = def.meta.access.as_str(),
        arguments = %arguments,
        caller = %caller,
        outcome = %outcome,
        "audit"
    );
}

/// `kcore://vm/NAME/console` -> (NAME, true); `kcore://vm/NAME` -> (NAME, false).
fn parse_uri(uri: &str) -> Option<(&str, bool)> {
    let rest = uri.strip_prefix("kcore://vm/")?;
    let (name, console) = match rest.strip_suffix("/console") {
        Some(name) => (name, true),
        None => (rest, false),
    };
    (!name.is_empty() && !name.contains('/')).then_some((name, console))
}

fn resource_error(e: ToolError) -> McpError {
    match e.code() {
        tonic::Code::NotFound => McpError::resource_not_found(e.to_string(), None),
        tonic::Code::InvalidArgument => McpError::invalid_params(e.to_string(), None),
        _ => McpError::internal_error(format!("{e} ({})", crate::error::code_name(e.code())), None),
    }
}

const PROMPT_TROUBLESHOOT: &str = "troubleshoot_vm";
const PROMPT_OVERVIEW: &str = "cluster_overview";

impl ServerHandler for KcoreMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
        .with_server_info(
            Implementation::new("kcore-mcp", env!("CARGO_PKG_VERSION"))
                .with_title("kcore")
                .with_description("QEMU/KVM virtual machines on kcore, through its gRPC API"),
        )
        .with_instructions(self.instructions())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(
            self.offered().map(|t| t.tool.clone()).collect(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.offered()
            .find(|t| t.meta.name == name)
            .map(|t| t.tool.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        match self.call(&request.name, args).await {
            Some(result) => Ok(result.into()),
            None => Err(McpError::invalid_params(
                format!("no tool named {:?} (tools/list lists them)", request.name),
                None,
            )),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let names = self.vm_names().await.map_err(resource_error)?;
        let mut items = Vec::new();
        for name in names {
            items.push(
                Resource::new(
                    format!("kcore://vm/{name}/console"),
                    format!("{name} console"),
                )
                .with_title(format!("Console log of VM {name}"))
                .with_description("The serial console log the node keeps (the last 256 KiB)")
                .with_mime_type("text/plain"),
            );
            items.push(
                Resource::new(format!("kcore://vm/{name}"), name.clone())
                    .with_title(format!("VM {name}"))
                    .with_description("The VM as get_vm returns it")
                    .with_mime_type("application/json"),
            );
        }
        Ok(ListResourcesResult::with_all_items(items))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("kcore://vm/{name}/console", "VM console")
                .with_description("A VM's serial console log (the last 256 KiB the node keeps)")
                .with_mime_type("text/plain"),
            ResourceTemplate::new("kcore://vm/{name}", "VM")
                .with_description("A VM: status, node, addresses, disks, NICs, boot timeline")
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri;
        let Some((name, console)) = parse_uri(&uri) else {
            return Err(McpError::resource_not_found(
                format!("no resource {uri:?}: kcore://vm/NAME or kcore://vm/NAME/console"),
                None,
            ));
        };
        let contents = if console {
            ResourceContents::text(self.console(name).await.map_err(resource_error)?, &uri)
        } else {
            let json = self.vm_json(name).await.map_err(resource_error)?;
            ResourceContents::TextResourceContents {
                uri: uri.clone(),
                mime_type: Some("application/json".into()),
                text: json,
                meta: None,
            }
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(ListPromptsResult::with_all_items(vec![
            Prompt::new(
                PROMPT_TROUBLESHOOT,
                Some(
                    "Find out why a VM is not running or not ready, from its state, console and events",
                ),
                Some(vec![
                    PromptArgument::new("name")
                        .with_description("The VM's name")
                        .with_required(true),
                ]),
            ),
            Prompt::new(
                PROMPT_OVERVIEW,
                Some(
                    "Summarize the cluster: nodes and their room, VMs and their state, recent trouble",
                ),
                None,
            ),
        ]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let text = match request.name.as_str() {
            PROMPT_TROUBLESHOOT => {
                let name = request
                    .arguments
                    .as_ref()
                    .and_then(|a| a.get("name"))
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .ok_or_else(|| McpError::invalid_params("argument name is required", None))?;
                format!(
                    "VM {name:?} on kcore is not doing what it should. Find out why: call get_vm \
                     (its status, status_reason and boot timeline: which phase did it reach?), \
                     console_tail (what the guest printed last), and recent_events with vm \
                     {name:?} (what happened to it and who asked). Say what state it is in, the \
                     most likely cause, and what to do about it; change nothing without asking."
                )
            }
            PROMPT_OVERVIEW => "Give an overview of this kcore cluster: call list_nodes (state, \
                 cordoned, allocated vs total CPUs and memory, free pool space), list_vms \
                 (how many in each status, any CRASHED, ERROR or UNKNOWN), and recent_events \
                 (anything failing lately). Summarize in a few lines and point out what needs \
                 attention."
                .to_string(),
            other => {
                return Err(McpError::invalid_params(
                    format!("no prompt named {other:?}"),
                    None,
                ));
            }
        };
        Ok(
            GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
                .with_description(format!("from {CLIENT_NAME}"))
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_uris() {
        assert_eq!(parse_uri("kcore://vm/web/console"), Some(("web", true)));
        assert_eq!(parse_uri("kcore://vm/web"), Some(("web", false)));
        assert_eq!(parse_uri("kcore://vm/"), None);
        assert_eq!(parse_uri("kcore://vm/a/b"), None);
        assert_eq!(parse_uri("file:///etc/passwd"), None);
    }
}

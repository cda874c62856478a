//! The tools as data: each is a [`ToolDef`] made by [`tool`] from its [`Meta`] (name,
//! description, access level, the kcored methods it calls) and an async function from its
//! typed arguments to a [`Done`] (a one-line summary and a typed result). The argument and
//! result types give the input and output JSON schemas (schemars, with their doc comments as
//! descriptions); the access level gives the MCP annotations, so the two never disagree.
//!
//! [`Ctx`] is what a tool works with: the connection to kcore (made at the first call, so
//! the server starts even while kcored is down) and requests marked as kcore-mcp's.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use kcore_client::{Client, Resolved};
use rmcp::handler::server::common::{schema_for_input, schema_for_output};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::access::{Access, Policy};
use crate::error::ToolError;

/// How kcore-mcp names itself to kcored (metadata `kcore-client`), so the events of the
/// changes it makes say they came through MCP.
pub const CLIENT_NAME: &str = concat!("kcore-mcp/", env!("CARGO_PKG_VERSION"));

/// What a tool is, besides its types.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// The tool's name (snake_case).
    pub name: &'static str,
    /// A short human title.
    pub title: &'static str,
    /// What it does, for a model: when to use it and what it returns.
    pub description: &'static str,
    pub access: Access,
    /// Calling it again with the same arguments changes nothing more.
    pub idempotent: bool,
    /// It reaches beyond kcore (an http(s) URL).
    pub open_world: bool,
    /// The `kcore.v1.KcoreService` methods it calls (the role ceiling checks them).
    pub methods: &'static [&'static str],
}

/// A tool's success: a one-line summary for people and models, and the structured result.
#[derive(Debug)]
pub struct Done<O> {
    pub summary: String,
    pub data: O,
}

type Runner = Arc<
    dyn Fn(Ctx, JsonObject) -> BoxFuture<'static, Result<Done<Value>, ToolError>> + Send + Sync,
>;

/// A tool: its MCP definition and how to run it.
#[derive(Clone)]
pub struct ToolDef {
    pub meta: Meta,
    pub tool: Tool,
    run: Runner,
}

impl std::fmt::Debug for ToolDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolDef").field("meta", &self.meta).finish()
    }
}

impl ToolDef {
    /// Run the tool with `args` (checked against its argument type first).
    pub async fn run(&self, ctx: Ctx, args: JsonObject) -> Result<Done<Value>, ToolError> {
        (self.run)(ctx, args).await
    }

    /// Whether `policy` offers this tool.
    pub fn offered(&self, policy: &Policy) -> bool {
        policy.allows(self.meta.access, self.meta.methods)
    }
}

/// The annotations an access level means.
pub fn annotations(meta: &Meta) -> ToolAnnotations {
    let read = meta.access == Access::Read;
    ToolAnnotations::with_title(meta.title)
        .read_only(read)
        .destructive(meta.access == Access::Destructive)
        .idempotent(read || meta.idempotent)
        .open_world(meta.open_world)
}

/// Define a tool from its meta and its function. `A` (arguments) must be a struct (an
/// object schema); unknown fields are refused when it says `deny_unknown_fields`.
pub fn tool<A, O, F, Fut>(meta: Meta, f: F) -> ToolDef
where
    A: DeserializeOwned + JsonSchema + Send + 'static,
    O: Serialize + JsonSchema + 'static,
    F: Fn(Ctx, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Done<O>, ToolError>> + Send + 'static,
{
    let input = match schema_for_input::<A>() {
        Ok(schema) => schema,
        // A programming error, caught by the registry's unit test.
        Err(e) => panic!("tool {}: {e}", meta.name),
    };
    let tool = Tool::new(meta.name, meta.description, input)
        .with_title(meta.title)
        .with_raw_output_schema(schema_for_output::<O>())
        .with_annotations(annotations(&meta));
    let f = Arc::new(f);
    let run: Runner = Arc::new(move |ctx, args| {
        let f = f.clone();
        Box::pin(async move {
            let args: A = serde_json::from_value(Value::Object(args))
                .map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
            let done = f(ctx, args).await?;
            let data = serde_json::to_value(&done.data).map_err(|e| ToolError::Api {
                code: tonic::Code::Internal,
                message: format!("cannot encode the result: {e}"),
            })?;
            Ok(Done {
                summary: done.summary,
                data,
            })
        })
    });
    ToolDef { meta, tool, run }
}

/// The connection to kcore, shared by every tool call (and every HTTP session).
#[derive(Debug)]
pub struct Kcore {
    endpoint: Resolved,
    client: tokio::sync::Mutex<Option<Client>>,
    pub policy: Policy,
}

impl Kcore {
    pub fn new(endpoint: Resolved, policy: Policy) -> Kcore {
        Kcore {
            endpoint,
            client: tokio::sync::Mutex::new(None),
            policy,
        }
    }

    /// The endpoint, as given or resolved.
    pub fn endpoint(&self) -> &str {
        &self.endpoint.raw
    }
}

/// What a tool works with.
#[derive(Debug, Clone)]
pub struct Ctx(pub Arc<Kcore>);

/// How long a call that returns at once may take.
pub const SHORT: Duration = Duration::from_secs(60);
/// How long a call that waits for a VM (create, start, stop, drain) may take.
pub const LONG: Duration = Duration::from_secs(600);

impl Ctx {
    /// The client, connecting first if this is the first call (or the last attempt failed).
    pub async fn client(&self) -> Result<Client, ToolError> {
        let mut slot = self.0.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = kcore_client::connect(self.0.endpoint.clone()).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// A request carrying `msg`, kcore-mcp's name and a deadline.
    pub fn req<T>(&self, msg: T, timeout: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut().insert(
            "kcore-client",
            tonic::metadata::MetadataValue::from_static(CLIENT_NAME),
        );
        req.set_timeout(timeout);
        req
    }
}

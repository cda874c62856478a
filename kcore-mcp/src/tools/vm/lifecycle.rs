//! The VM tools that change a VM's state: start, stop (gentle or forced), reboot, pause,
//! resume and delete.

use kcore_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::detail;
use crate::error::ToolError;
use crate::registry::{Ctx, Done, LONG, SHORT};
use crate::views::VmDetail;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopArgs {
    /// The VM's name (or id).
    pub name: String,
    /// Seconds the guest gets to power off after the ACPI power button before QEMU is told
    /// to quit (default 30; 0: quit at once).
    #[serde(default)]
    pub timeout_secs: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// The VM's name (or id).
    pub name: String,
    /// Delete it even if it runs (QEMU is killed first). Without it a running VM is refused.
    #[serde(default)]
    pub force: Option<bool>,
    /// Keep its volumes (they stay in their pools, listed by list_volumes).
    #[serde(default)]
    pub keep_disks: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Deleted {
    /// The VM deleted.
    pub deleted: String,
}

pub(crate) async fn stop(
    ctx: Ctx,
    name: String,
    force: bool,
    timeout_secs: Option<u32>,
) -> Result<Done<VmDetail>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::StopVmRequest {
        name,
        force,
        timeout_secs,
        no_wait: false,
    };
    let vm = client
        .api()
        .stop_vm(ctx.req(req, LONG))
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    Ok(detail(&vm))
}

pub(crate) async fn delete(ctx: Ctx, a: DeleteArgs) -> Result<Done<Deleted>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::DeleteVmRequest {
        name: a.name.clone(),
        force: a.force.unwrap_or(false),
        keep_disks: a.keep_disks.unwrap_or(false),
    };
    client
        .api()
        .delete_vm(ctx.req(req, LONG))
        .await
        .map_err(|s| client.error(s))?;
    Ok(Done {
        summary: format!("deleted VM {}", a.name),
        data: Deleted { deleted: a.name },
    })
}

/// The calls that take a VM's name and return the VM.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Start,
    Reboot,
    Pause,
    Resume,
}

pub(crate) async fn op(ctx: Ctx, name: String, op: Op) -> Result<Done<VmDetail>, ToolError> {
    let client = ctx.client().await?;
    let mut api = client.api();
    let reply = match op {
        Op::Start => {
            let req = pb::StartVmRequest {
                name,
                no_wait: false,
            };
            api.start_vm(ctx.req(req, LONG)).await
        }
        Op::Reboot => {
            api.reboot_vm(ctx.req(pb::RebootVmRequest { name }, SHORT))
                .await
        }
        Op::Pause => {
            api.pause_vm(ctx.req(pb::PauseVmRequest { name }, SHORT))
                .await
        }
        Op::Resume => {
            api.resume_vm(ctx.req(pb::ResumeVmRequest { name }, SHORT))
                .await
        }
    };
    let vm = reply.map_err(|s| client.error(s))?.into_inner();
    Ok(detail(&vm))
}

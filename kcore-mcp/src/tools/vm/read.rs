//! The VM tools that only read: list the VMs, get one, wait until its guest is ready,
//! and tail its console.

use std::time::{Duration, Instant};

use kcore_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tonic::Code;

use super::{VmName, detail, get};
use crate::error::ToolError;
use crate::registry::{Ctx, Done, SHORT};
use crate::tools::lines_of;
use crate::views::{VmDetail, VmSummary, guest_ready, status_name};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListVmsArgs {
    /// Only VMs on this node.
    #[serde(default)]
    pub node: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct VmList {
    pub vms: Vec<VmSummary>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitArgs {
    /// The VM's name (or id).
    pub name: String,
    /// How long to wait, in seconds (default 120, at most 900).
    #[serde(default)]
    pub timeout_secs: Option<u32>,
    /// Also wait until one of its NICs has leased an IPv4 address (VMs on a nat network).
    #[serde(default)]
    pub ipv4: Option<bool>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Ready {
    /// How long this call waited, in milliseconds.
    pub waited_ms: u64,
    pub vm: VmDetail,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleArgs {
    /// The VM's name (or id).
    pub name: String,
    /// How many of the last lines to return (default 50, at most 1000).
    #[serde(default)]
    pub lines: Option<u32>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ConsoleTail {
    pub vm: String,
    /// The last lines of its serial console (ttyS0), oldest first, terminal escapes removed.
    pub lines: Vec<String>,
    /// How many lines the kept log has in all (the node keeps the last 256 KiB).
    pub total_lines: usize,
}

pub(crate) async fn list_vms(ctx: Ctx, a: ListVmsArgs) -> Result<Done<VmList>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::ListVMsRequest {
        node: a.node.unwrap_or_default(),
    };
    let vms = client
        .api()
        .list_v_ms(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .vms;
    let vms: Vec<VmSummary> = vms.iter().map(VmSummary::from).collect();
    let mut summary = match vms.len() {
        0 => "no VMs".to_string(),
        1 => "1 VM:".to_string(),
        n => format!("{n} VMs:"),
    };
    for v in &vms {
        summary.push_str(&format!(
            "\n{} {} on {}, {} vCPU, {} MiB{}{}",
            v.name,
            v.status,
            v.node,
            v.vcpu,
            v.memory_mb,
            if v.addresses.is_empty() {
                String::new()
            } else {
                format!(", {}", v.addresses.join(" "))
            },
            if v.guest_ready { ", guest ready" } else { "" }
        ));
    }
    Ok(Done {
        summary,
        data: VmList { vms },
    })
}

pub(crate) async fn wait_ready(ctx: Ctx, a: WaitArgs) -> Result<Done<Ready>, ToolError> {
    let timeout = Duration::from_secs(u64::from(a.timeout_secs.unwrap_or(120).min(900)));
    let want_ip = a.ipv4.unwrap_or(false);
    let started = Instant::now();
    loop {
        let vm = get(&ctx, &a.name).await?;
        let status = pb::VmStatus::try_from(vm.status).unwrap_or(pb::VmStatus::Unknown);
        let has_ip = vm.nics.iter().any(|n| !n.ip.is_empty());
        if status == pb::VmStatus::Running && guest_ready(&vm) && (!want_ip || has_ip) {
            let vm = VmDetail::from(&vm);
            return Ok(Done {
                summary: format!("ready: {}", vm.summary()),
                data: Ready {
                    waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                    vm,
                },
            });
        }
        let restarts = vm.spec.as_ref().is_some_and(|s| {
            !matches!(
                pb::RestartPolicy::try_from(s.restart_policy),
                Ok(pb::RestartPolicy::Never | pb::RestartPolicy::Unspecified) | Err(_)
            )
        });
        let hopeless = match status {
            pb::VmStatus::Stopped => Some("start it first (start_vm)"),
            pb::VmStatus::Paused => Some("resume it first (resume_vm)"),
            pb::VmStatus::Crashed | pb::VmStatus::Error if !restarts => {
                Some("it has no restart policy; console_tail shows what happened")
            }
            _ => None,
        };
        let state = match vm.status_reason.as_str() {
            "" => status_name(vm.status),
            why => format!("{} ({why})", status_name(vm.status)),
        };
        if let Some(hint) = hopeless {
            return Err(ToolError::Wait {
                code: Code::FailedPrecondition,
                message: format!(
                    "VM {} is {state}: it will not become ready; {hint}",
                    vm.name
                ),
            });
        }
        if started.elapsed() >= timeout {
            let missing = if status != pb::VmStatus::Running || !guest_ready(&vm) {
                "its console has not printed its ready pattern"
            } else {
                "no NIC has leased an IPv4 address"
            };
            return Err(ToolError::Wait {
                code: Code::DeadlineExceeded,
                message: format!(
                    "VM {} is not ready after {} s: it is {state} and {missing} (console_tail \
                     shows what the guest printed)",
                    vm.name,
                    timeout.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(crate) async fn console_tail(ctx: Ctx, a: ConsoleArgs) -> Result<Done<ConsoleTail>, ToolError> {
    let client = ctx.client().await?;
    let req = pb::GetConsoleLogRequest { vm: a.name.clone() };
    let log = client
        .api()
        .get_console_log(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    let all = lines_of(&log.data);
    let n = usize::try_from(a.lines.unwrap_or(50).clamp(1, 1000)).unwrap_or(50);
    let lines = all[all.len().saturating_sub(n)..].to_vec();
    let summary = if lines.is_empty() {
        format!("the console log of {} is empty", a.name)
    } else {
        lines.join("\n")
    };
    Ok(Done {
        summary,
        data: ConsoleTail {
            vm: a.name,
            total_lines: all.len(),
            lines,
        },
    })
}

pub(crate) async fn get_vm(ctx: Ctx, a: VmName) -> Result<Done<VmDetail>, ToolError> {
    Ok(detail(&get(&ctx, &a.name).await?))
}

//! The VM tools: list, get, wait until ready, console tail (read, in [`read`]); create
//! (in [`create`]); start, stop, reboot, pause, resume (write) and delete and force stop
//! (destructive), in [`lifecycle`]. This module lists them and holds what they share.

mod create;
mod lifecycle;
mod read;

use kcore_proto::v1 as pb;
use schemars::JsonSchema;
use serde::Deserialize;

use super::TIMEOUT_CAP;
use crate::access::Access;
use crate::error::ToolError;
use crate::registry::{Ctx, Done, Meta, SHORT, ToolDef, tool};
use crate::views::VmDetail;

use create::create;
use lifecycle::{Op, StopArgs, delete, op, stop};
use read::{console_tail, get_vm, list_vms, wait_ready};

/// Arguments naming one VM.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmName {
    /// The VM's name (or id).
    pub name: String,
}

/// Every VM tool.
pub fn tools() -> Vec<ToolDef> {
    vec![
        tool(
            Meta {
                name: "list_vms",
                title: "List VMs",
                description: "List the VMs with their status, node, size and IPv4 addresses. \
                    Use get_vm for one VM's disks, NICs and boot timeline.",
                access: Access::Read,
                idempotent: true,
                open_world: false,
                methods: &["ListVMs"],
            },
            list_vms,
        ),
        tool(
            Meta {
                name: "get_vm",
                title: "Get a VM",
                description: "Everything about one VM: status and why, node, vCPUs, memory, \
                    addresses, disks, NICs, how it boots, and its boot timeline (where the \
                    time of its last start went, up to guest_ready).",
                access: Access::Read,
                idempotent: true,
                open_world: false,
                methods: &["GetVM"],
            },
            get_vm,
        ),
        tool(
            Meta {
                name: "wait_vm_ready",
                title: "Wait until a VM is ready",
                description: "Wait until a running VM's guest is ready: its console printed \
                    the VM's ready pattern (guest_ready in its boot timeline), and with \
                    ipv4 also until a NIC leased an address. Fails at once if the VM is \
                    stopped or paused, or crashed with no restart policy; fails after \
                    timeout_secs otherwise (console_tail then shows what the guest printed).",
                access: Access::Read,
                idempotent: true,
                open_world: false,
                methods: &["GetVM"],
            },
            wait_ready,
        ),
        tool(
            Meta {
                name: "console_tail",
                title: "Tail a VM's console",
                description: "The last lines of a VM's serial console (the log the node \
                    keeps, also while the VM is stopped): boot messages, the guest's \
                    output, why it failed. Also the resource kcore://vm/{name}/console.",
                access: Access::Read,
                idempotent: true,
                open_world: false,
                methods: &["GetConsoleLog"],
            },
            console_tail,
        ),
        tool(
            Meta {
                name: "create_vm",
                title: "Create a VM",
                description: "Create a VM and (unless start is false) start it; returns once \
                    it runs (then use wait_vm_ready for its guest). Boot it from a kernel \
                    (kernel, initrd, cmdline: paths on the node) or from an image \
                    (list_images); give it networks (list_networks) for NICs. Refused with \
                    the reason when a name is taken, a size is out of range, no node has \
                    room, or a file cannot be read.",
                access: Access::Write,
                idempotent: false,
                open_world: false,
                methods: &["CreateVM"],
            },
            create,
        ),
        tool(
            Meta {
                name: "start_vm",
                title: "Start a VM",
                description: "Start a STOPPED (or CRASHED, or ERROR) VM; returns once it \
                    runs. Refused if it is already running.",
                access: Access::Write,
                idempotent: true,
                open_world: false,
                methods: &["StartVM"],
            },
            |ctx, a: VmName| op(ctx, a.name, Op::Start),
        ),
        tool(
            Meta {
                name: "stop_vm",
                title: "Stop a VM (gracefully)",
                description: "Stop a VM the gentle way: the ACPI power button, up to \
                    timeout_secs (default 30) for the guest to power off, then QEMU quits. \
                    Returns once it is STOPPED. (force_stop_vm kills it at once.)",
                access: Access::Write,
                idempotent: true,
                open_world: false,
                methods: &["StopVM"],
            },
            |ctx, a: StopArgs| {
                let timeout = a.timeout_secs.map(|t| t.min(TIMEOUT_CAP));
                stop(ctx, a.name, false, timeout)
            },
        ),
        tool(
            Meta {
                name: "force_stop_vm",
                title: "Force-stop a VM",
                description: "Kill a VM's QEMU at once, like pulling the power cord: the \
                    guest gets no chance to shut down and may lose unwritten data. Prefer \
                    stop_vm.",
                access: Access::Destructive,
                idempotent: true,
                open_world: false,
                methods: &["StopVM"],
            },
            |ctx, a: VmName| stop(ctx, a.name, true, None),
        ),
        tool(
            Meta {
                name: "reboot_vm",
                title: "Reboot a VM",
                description: "Reset a running VM (like its reset button: the guest does not \
                    shut down first) and boot it again.",
                access: Access::Write,
                idempotent: false,
                open_world: false,
                methods: &["RebootVM"],
            },
            |ctx, a: VmName| op(ctx, a.name, Op::Reboot),
        ),
        tool(
            Meta {
                name: "pause_vm",
                title: "Pause a VM",
                description: "Freeze a running VM's vCPUs (its memory stays); resume_vm goes on.",
                access: Access::Write,
                idempotent: true,
                open_world: false,
                methods: &["PauseVM"],
            },
            |ctx, a: VmName| op(ctx, a.name, Op::Pause),
        ),
        tool(
            Meta {
                name: "resume_vm",
                title: "Resume a VM",
                description: "Let a PAUSED VM run again: its vCPUs go on where pause_vm froze them.",
                access: Access::Write,
                idempotent: true,
                open_world: false,
                methods: &["ResumeVM"],
            },
            |ctx, a: VmName| op(ctx, a.name, Op::Resume),
        ),
        tool(
            Meta {
                name: "delete_vm",
                title: "Delete a VM",
                description: "Delete a VM and (unless keep_disks) its volumes. A running VM \
                    is refused unless force, which kills it first. Cannot be undone.",
                access: Access::Destructive,
                idempotent: false,
                open_world: false,
                methods: &["DeleteVM"],
            },
            delete,
        ),
    ]
}

pub(crate) fn detail(vm: &pb::Vm) -> Done<VmDetail> {
    let d = VmDetail::from(vm);
    Done {
        summary: d.summary(),
        data: d,
    }
}

pub(crate) async fn get(ctx: &Ctx, name: &str) -> Result<pb::Vm, ToolError> {
    let client = ctx.client().await?;
    let req = pb::GetVmRequest {
        name: name.to_string(),
    };
    Ok(client
        .api()
        .get_vm(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner())
}

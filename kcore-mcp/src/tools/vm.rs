//! The VM tools: list, get, wait until ready, console tail (read); create, start, stop,
//! reboot, pause, resume (write); delete and force stop (destructive).

use std::time::{Duration, Instant};

use kcore_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tonic::Code;

use super::{TIMEOUT_CAP, lines_of};
use crate::access::Access;
use crate::error::ToolError;
use crate::registry::{Ctx, Done, LONG, Meta, SHORT, ToolDef, tool};
use crate::views::{VmDetail, VmSummary, guest_ready, status_name};

/// Arguments naming one VM.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmName {
    /// The VM's name (or id).
    pub name: String,
}

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

/// The machine type.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    Q35,
    Pc,
    Microvm,
}

/// How much of a PC the VM gets.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Standard,
    Fast,
}

/// The firmware.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Bios,
    Uefi,
}

/// What kcore does when the VM stops by itself.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Leave it stopped.
    Never,
    /// Start it again after a crash (backing off).
    OnFailure,
    /// Start it again after a crash or a guest poweroff.
    Always,
}

/// A data disk.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataDisk {
    /// The pool (default "default"; list_pools shows them).
    #[serde(default)]
    pub pool: Option<String>,
    /// Size in GiB of a new, empty volume.
    #[serde(default)]
    pub size_gb: Option<u32>,
    /// An existing volume of the pool that no VM uses, instead of a new one.
    #[serde(default)]
    pub volume: Option<String>,
}

/// cloud-init NoCloud data: the VM gets a small read-only disk labelled "cidata" with them.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudInitArgs {
    /// user-data, e.g. "#cloud-config\nssh_authorized_keys: [...]".
    #[serde(default)]
    pub user_data: Option<String>,
    /// meta-data (default: instance-id and local-hostname from the VM).
    #[serde(default)]
    pub meta_data: Option<String>,
    /// network-config (version 1 or 2; default: DHCP on the first NIC).
    #[serde(default)]
    pub network_config: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    /// The VM's name: 1-63 of a-z, 0-9 and '-', starting with a letter or digit.
    pub name: String,
    /// Virtual CPUs.
    pub vcpu: u32,
    /// Memory in MiB.
    pub memory_mb: u32,
    /// Direct kernel boot: the kernel's path on the node (readable by kcore-mcp's user).
    #[serde(default)]
    pub kernel: Option<String>,
    /// With kernel: the initrd's path on the node.
    #[serde(default)]
    pub initrd: Option<String>,
    /// With kernel: the kernel command line, e.g. "console=ttyS0".
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Boot from a disk cloned (copy-on-write) from this image (list_images shows them).
    #[serde(default)]
    pub image: Option<String>,
    /// With image: the boot disk's size in GiB (default: the image's).
    #[serde(default)]
    pub disk_size_gb: Option<u32>,
    /// Extra data disks.
    #[serde(default)]
    pub disks: Option<Vec<DataDisk>>,
    /// Networks to give it a NIC on, in guest order (list_networks shows them).
    #[serde(default)]
    pub networks: Option<Vec<String>>,
    /// A regex: the first console line matching it marks the guest ready (default "login:").
    /// wait_vm_ready waits for it.
    #[serde(default)]
    pub ready_pattern: Option<String>,
    /// Default q35.
    #[serde(default)]
    pub machine: Option<Machine>,
    /// Default bios.
    #[serde(default)]
    pub firmware: Option<Firmware>,
    /// Default never.
    #[serde(default)]
    pub restart_policy: Option<Restart>,
    /// Start it when its node's host boots.
    #[serde(default)]
    pub autostart: Option<bool>,
    #[serde(default)]
    pub cloud_init: Option<CloudInitArgs>,
    /// Place it on this node (default: the scheduler picks).
    #[serde(default)]
    pub node: Option<String>,
    /// Start from this memory-snapshot template (list_templates) instead of booting: the
    /// guest continues where the template stood, in well under a second. vcpu and
    /// memory_mb must be the template's; no kernel, image, disks or cloud_init; networks
    /// are the clone's own. It goes on the template's node.
    #[serde(default)]
    pub template: Option<String>,
    /// standard (default) or fast: fast picks a microvm (or pc) without the devices a
    /// directly booted guest does not use; it needs kernel, has no UEFI and no hotplug.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// Start it (default true). false: define it and leave it STOPPED.
    #[serde(default)]
    pub start: Option<bool>,
}

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

fn detail(vm: &pb::Vm) -> Done<VmDetail> {
    let d = VmDetail::from(vm);
    Done {
        summary: d.summary(),
        data: d,
    }
}

async fn get(ctx: &Ctx, name: &str) -> Result<pb::Vm, ToolError> {
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

async fn list_vms(ctx: Ctx, a: ListVmsArgs) -> Result<Done<VmList>, ToolError> {
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

async fn wait_ready(ctx: Ctx, a: WaitArgs) -> Result<Done<Ready>, ToolError> {
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

async fn console_tail(ctx: Ctx, a: ConsoleArgs) -> Result<Done<ConsoleTail>, ToolError> {
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

async fn create(ctx: Ctx, a: CreateArgs) -> Result<Done<VmDetail>, ToolError> {
    let client = ctx.client().await?;
    let machine = match a.machine {
        None => pb::MachineType::Unspecified,
        Some(Machine::Q35) => pb::MachineType::Q35,
        Some(Machine::Pc) => pb::MachineType::Pc,
        Some(Machine::Microvm) => pb::MachineType::Microvm,
    };
    let firmware = match a.firmware {
        None => pb::Firmware::Unspecified,
        Some(Firmware::Bios) => pb::Firmware::Bios,
        Some(Firmware::Uefi) => pb::Firmware::Uefi,
    };
    let restart = match a.restart_policy {
        None => pb::RestartPolicy::Unspecified,
        Some(Restart::Never) => pb::RestartPolicy::Never,
        Some(Restart::OnFailure) => pb::RestartPolicy::OnFailure,
        Some(Restart::Always) => pb::RestartPolicy::Always,
    };
    let spec = pb::VmSpec {
        vcpu: a.vcpu,
        memory_mb: a.memory_mb,
        machine: machine as i32,
        profile: match a.profile {
            None => pb::Profile::Unspecified,
            Some(Profile::Standard) => pb::Profile::Standard,
            Some(Profile::Fast) => pb::Profile::Fast,
        } as i32,
        kernel: a.kernel.unwrap_or_default(),
        initrd: a.initrd.unwrap_or_default(),
        cmdline: a.cmdline.unwrap_or_default(),
        ready_pattern: a.ready_pattern.unwrap_or_default(),
        restart_policy: restart as i32,
        image: a.image.unwrap_or_default(),
        disk_size_gb: a.disk_size_gb.unwrap_or(0),
        disks: a
            .disks
            .unwrap_or_default()
            .into_iter()
            .map(|d| pb::DiskRequest {
                pool: d.pool.unwrap_or_default(),
                size_gb: d.size_gb.unwrap_or(0),
                volume: d.volume.unwrap_or_default(),
            })
            .collect(),
        firmware: firmware as i32,
        root_pool: String::new(),
        template: a.template.unwrap_or_default(),
        nics: a
            .networks
            .unwrap_or_default()
            .into_iter()
            .map(|network| pb::NicRequest {
                network,
                ..Default::default()
            })
            .collect(),
        autostart: a.autostart.unwrap_or(false),
        cloud_init: a.cloud_init.map(|c| pb::CloudInit {
            user_data: c.user_data.unwrap_or_default(),
            meta_data: c.meta_data.unwrap_or_default(),
            network_config: c.network_config.unwrap_or_default(),
        }),
    };
    let req = pb::CreateVmRequest {
        name: a.name,
        spec: Some(spec),
        node: a.node.unwrap_or_default(),
        no_start: !a.start.unwrap_or(true),
        no_wait: false,
    };
    let vm = client
        .api()
        .create_vm(ctx.req(req, LONG))
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    let mut done = detail(&vm);
    done.summary = format!("created {}", done.summary);
    Ok(done)
}

async fn stop(
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

async fn get_vm(ctx: Ctx, a: VmName) -> Result<Done<VmDetail>, ToolError> {
    Ok(detail(&get(&ctx, &a.name).await?))
}

async fn delete(ctx: Ctx, a: DeleteArgs) -> Result<Done<Deleted>, ToolError> {
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
enum Op {
    Start,
    Reboot,
    Pause,
    Resume,
}

async fn op(ctx: Ctx, name: String, op: Op) -> Result<Done<VmDetail>, ToolError> {
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

//! create_vm: its arguments (machine, profile, firmware, restart policy, disks,
//! cloud-init) and how they become a CreateVM request.

use kcore_proto::v1 as pb;
use schemars::JsonSchema;
use serde::Deserialize;

use super::detail;
use crate::error::ToolError;
use crate::registry::{Ctx, Done, LONG};
use crate::views::VmDetail;

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

pub(crate) async fn create(ctx: Ctx, a: CreateArgs) -> Result<Done<VmDetail>, ToolError> {
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

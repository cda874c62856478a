//! `kctl vm create|list|get|set|start|stop|reboot|pause|resume|delete|timeline`.

use anyhow::{Context, Result, bail};
use chrono::Utc;
use kcore_proto::v1::{
    BootTimeline, CreateVmRequest, DeleteVmRequest, Firmware, GetVmRequest, ListVMsRequest,
    MachineType, PauseVmRequest, Profile, RebootVmRequest, RestartPolicy, ResumeVmRequest,
    StartVmRequest, StopVmRequest, UpdateVmRequest, Vm, VmDisk, VmSpec,
};

use crate::cli::{CreateArgs, SetArgs};
use crate::endpoint::Client;
use crate::output::{self, Format};

/// Builds the CreateVM request: paths made absolute, the ready pattern checked locally.
pub fn create_request(args: &CreateArgs) -> Result<CreateVmRequest> {
    let absolute = |path: &std::path::Path| -> Result<String> {
        let abs = std::path::absolute(path)
            .with_context(|| format!("making {} absolute", path.display()))?;
        abs.into_os_string()
            .into_string()
            .map_err(|p| anyhow::anyhow!("path {} is not UTF-8", p.display()))
    };
    if let Some(pattern) = &args.ready_pattern {
        regex::Regex::new(pattern)
            .with_context(|| format!("--ready-pattern {pattern:?} is not a valid regex"))?;
    }
    let spec = VmSpec {
        vcpu: args.vcpu.unwrap_or(0),
        memory_mb: args.memory.unwrap_or(0),
        template: args.template.clone().unwrap_or_default(),
        machine: args
            .machine
            .map_or(MachineType::Unspecified, MachineType::from) as i32,
        profile: args.profile.map_or(Profile::Unspecified, Profile::from) as i32,
        kernel: args
            .kernel
            .as_deref()
            .map(absolute)
            .transpose()?
            .unwrap_or_default(),
        initrd: args
            .initrd
            .as_deref()
            .map(absolute)
            .transpose()?
            .unwrap_or_default(),
        cmdline: args.cmdline.clone().unwrap_or_default(),
        ready_pattern: args.ready_pattern.clone().unwrap_or_default(),
        restart_policy: args
            .restart
            .map_or(RestartPolicy::Unspecified, RestartPolicy::from) as i32,
        image: args.image.clone().unwrap_or_default(),
        disk_size_gb: args.disk_size.unwrap_or(0),
        disks: args.disks.clone(),
        firmware: args.firmware.map_or(Firmware::Unspecified, Firmware::from) as i32,
        root_pool: args.root_pool.clone().unwrap_or_default(),
        nics: args.nics.clone(),
        autostart: args.autostart,
        cloud_init: crate::cloud_init::for_create(&args.cloud_init)?,
    };
    Ok(CreateVmRequest {
        name: args.name.clone(),
        spec: Some(spec),
        node: args.node.clone().unwrap_or_default(),
        no_start: !args.start,
        no_wait: args.no_wait,
    })
}

/// `kctl vm create`.
pub async fn create(client: &Client, format: Format, request: CreateVmRequest) -> Result<()> {
    let vm = client
        .api()
        .create_vm(request)
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    print_action(format, "Created", &vm)
}

/// `kctl vm list`.
pub async fn list(client: &Client, format: Format, node: Option<String>) -> Result<()> {
    let response = client
        .api()
        .list_v_ms(ListVMsRequest {
            node: node.unwrap_or_default(),
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &response);
    }
    output::print_table(&list_table(&response.vms, Utc::now()))
}

/// The `vm list` table.
pub fn list_table(vms: &[Vm], now: chrono::DateTime<Utc>) -> comfy_table::Table {
    let mut table = output::table(&[
        "NAME", "STATUS", "NODE", "VCPU", "MEMORY", "DISK", "PID", "AGE",
    ]);
    output::align_right(&mut table, &[3, 4, 5, 6]);
    for vm in vms {
        table.add_row(vec![
            vm.name.clone(),
            output::vm_status(vm.status),
            output::or_dash(&vm.node),
            vm.vcpu.to_string(),
            output::mib(vm.memory_mb),
            output::gib(vm.storage_gb),
            if vm.pid > 0 {
                vm.pid.to_string()
            } else {
                "-".to_string()
            },
            output::age(&vm.created_at, now),
        ]);
    }
    table
}

/// `kctl vm get`.
pub async fn get(client: &Client, format: Format, name: String) -> Result<()> {
    let vm = get_vm(client, name).await?;
    if format != Format::Table {
        return output::print_structured(format, &vm);
    }
    output::write_stdout(describe(&vm).as_bytes())
}

async fn get_vm(client: &Client, name: String) -> Result<Vm> {
    Ok(client
        .api()
        .get_vm(GetVmRequest { name })
        .await
        .map_err(|s| client.error(s))?
        .into_inner())
}

/// The key/value description of a VM for `vm get`, followed by its boot timeline.
pub fn describe(vm: &Vm) -> String {
    let spec = vm.spec.clone().unwrap_or_default();
    let mut status = output::vm_status(vm.status);
    if !vm.status_reason.is_empty() {
        status = format!("{status} ({})", vm.status_reason);
    }
    let mut rows = vec![
        ("Name", vm.name.clone()),
        ("ID", vm.id.clone()),
        ("Status", status),
        (
            "Tainted",
            if vm.tainted {
                format!(
                    "yes: QMP commands outside query-* were sent since its start (kctl events \
                     --vm {})",
                    vm.name
                )
            } else {
                String::new()
            },
        ),
        ("Node", output::or_dash(&vm.node)),
        ("vCPUs", vm.vcpu.to_string()),
        ("Memory", output::mib(vm.memory_mb)),
        (
            "Storage",
            if vm.storage_gb > 0 {
                output::gib(vm.storage_gb)
            } else {
                String::new()
            },
        ),
        (
            "PID",
            if vm.pid > 0 {
                vm.pid.to_string()
            } else {
                "-".into()
            },
        ),
        ("Machine", output::machine(spec.machine)),
        ("Profile", output::profile(spec.profile)),
        ("Firmware", output::firmware(spec.firmware)),
        ("Image", spec.image.clone()),
        ("Template", spec.template.clone()),
        ("Kernel", spec.kernel.clone()),
        ("Initrd", spec.initrd.clone()),
        ("Cmdline", spec.cmdline.clone()),
        ("Ready pattern", spec.ready_pattern.clone()),
        ("Restart", output::restart_policy(spec.restart_policy)),
        ("Autostart", if spec.autostart { "yes" } else { "" }.into()),
        ("Cloud-init", cloud_init_summary(spec.cloud_init.as_ref())),
        ("Created", time_or_empty(&vm.created_at)),
        ("Updated", time_or_empty(&vm.updated_at)),
    ];
    rows.retain(|(_, v)| !v.is_empty());
    let mut text = output::key_values(&rows);
    if vm.disks.is_empty() {
        text.push_str("\nDisks: none\n");
    } else {
        text.push_str("\nDisks:\n");
        indent_into(&mut text, &disks_table(&vm.disks));
    }
    if vm.nics.is_empty() {
        text.push_str("\nNICs: none\n");
    } else {
        text.push_str("\nNICs:\n");
        indent_into(&mut text, &crate::network::nics_table(&vm.nics));
    }
    match vm.timeline.as_ref().filter(|t| !t.phases.is_empty()) {
        Some(timeline) => {
            text.push_str("\nBoot timeline:\n");
            indent_into(&mut text, &timeline_table(timeline));
            for line in guest_stages(timeline).lines() {
                text.push_str(&format!("  {line}\n"));
            }
        }
        None => text.push_str("\nBoot timeline: none yet\n"),
    }
    text
}

/// `user-data 120 B, meta-data 31 B (seed disk cidata)`, or empty (no row) without.
pub fn cloud_init_summary(ci: Option<&kcore_proto::v1::CloudInit>) -> String {
    let Some(ci) = ci else {
        return String::new();
    };
    let files: Vec<String> = [
        ("user-data", &ci.user_data),
        ("meta-data", &ci.meta_data),
        ("network-config", &ci.network_config),
    ]
    .iter()
    .filter(|(_, text)| !text.trim().is_empty())
    .map(|(name, text)| format!("{name} {}", output::bytes(text.len() as u64)))
    .collect();
    if files.is_empty() {
        String::new()
    } else {
        format!("{} (seed disk cidata)", files.join(", "))
    }
}

/// Builds the UpdateVM request of `vm set` (reading the VM's cloud-init files first when
/// only some are replaced).
pub async fn set_request(client: &Client, args: &SetArgs) -> Result<UpdateVmRequest> {
    let given = crate::cloud_init::given(&args.cloud_init)?;
    let cloud_init = if args.no_cloud_init {
        Some(Default::default())
    } else if given.is_empty() {
        None
    } else {
        let vm = get_vm(client, args.name.clone()).await?;
        let current = vm.spec.as_ref().and_then(|s| s.cloud_init.as_ref());
        Some(crate::cloud_init::merged(current, given))
    };
    let autostart = match (args.autostart, args.no_autostart) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    if args.vcpu.is_none() && args.memory.is_none() && cloud_init.is_none() && autostart.is_none() {
        bail!(
            "nothing to change: give --vcpu, --memory, --autostart/--no-autostart, a cloud-init \
             option or --no-cloud-init"
        );
    }
    Ok(UpdateVmRequest {
        name: args.name.clone(),
        vcpu: args.vcpu,
        memory_mb: args.memory,
        cloud_init,
        autostart,
    })
}

/// `kctl vm set`.
pub async fn set(client: &Client, format: Format, args: SetArgs) -> Result<()> {
    let request = set_request(client, &args).await?;
    let vm = client
        .api()
        .update_vm(request)
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    print_action(format, "Updated", &vm)
}

/// Appends a table to `text`, each line indented by two spaces.
fn indent_into(text: &mut String, table: &comfy_table::Table) {
    for line in table.trim_fmt().lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
}

/// DEVICE, VOLUME, POOL, SIZE, FORMAT, IMAGE: a VM's disks for `vm get`.
pub fn disks_table(disks: &[VmDisk]) -> comfy_table::Table {
    let mut table = output::table(&["DEVICE", "VOLUME", "POOL", "SIZE", "FORMAT", "IMAGE"]);
    output::align_right(&mut table, &[3]);
    for disk in disks {
        table.add_row(vec![
            output::or_dash(&disk.device),
            output::or_dash(&disk.volume),
            output::or_dash(&disk.pool),
            output::bytes(disk.size_bytes),
            output::or_dash(&disk.format),
            output::or_dash(&disk.image),
        ]);
    }
    table
}

fn time_or_empty(timestamp: &str) -> String {
    if timestamp.is_empty() {
        String::new()
    } else {
        format!("{} UTC", output::short_time(timestamp))
    }
}

/// PHASE, AT (ms since the request), DELTA (ms since the previous phase).
pub fn timeline_table(timeline: &BootTimeline) -> comfy_table::Table {
    let mut table = output::table(&["PHASE", "AT (ms)", "DELTA (ms)"]);
    output::align_right(&mut table, &[1, 2]);
    let mut previous: Option<f64> = None;
    for phase in &timeline.phases {
        let delta = match previous {
            Some(p) => format!("+{}", output::ms(phase.offset_ms - p)),
            None => "-".to_string(),
        };
        previous = Some(phase.offset_ms);
        table.add_row(vec![phase.name.clone(), output::ms(phase.offset_ms), delta]);
    }
    table
}

/// The guest's boot in three stages, from the phases its console showed (see
/// docs/architecture.md, boot timeline): firmware (vCPUs running -> kernel started), kernel
/// (-> init started), userspace (-> guest ready). Empty when the guest printed none of them.
pub fn guest_stages(timeline: &BootTimeline) -> String {
    let at = |name: &str| {
        timeline
            .phases
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.offset_ms)
    };
    let stages = [
        ("firmware", "vcpus_running", "kernel_started"),
        ("kernel", "kernel_started", "init_started"),
        ("userspace", "init_started", "guest_ready"),
    ];
    let mut out = String::new();
    for (stage, from, to) in stages {
        if let (Some(a), Some(b)) = (at(from), at(to)) {
            out.push_str(&format!(
                "{stage:<10}{:>10} ms  ({from} -> {to})\n",
                output::ms(b - a)
            ));
        }
    }
    out
}

/// `kctl vm timeline`.
pub async fn timeline(client: &Client, format: Format, name: String) -> Result<()> {
    let vm = get_vm(client, name).await?;
    let timeline = vm.timeline.unwrap_or_default();
    if format != Format::Table {
        return output::print_structured(format, &timeline);
    }
    if timeline.phases.is_empty() {
        bail!(
            "VM {} has no boot timeline yet (it has not been started)",
            vm.name
        );
    }
    output::print_table(&timeline_table(&timeline))?;
    let stages = guest_stages(&timeline);
    if !stages.is_empty() {
        output::write_stdout(format!("\nGuest boot:\n{stages}").as_bytes())?;
    }
    Ok(())
}

/// `kctl vm start`.
pub async fn start(client: &Client, format: Format, name: String, no_wait: bool) -> Result<()> {
    let vm = client
        .api()
        .start_vm(StartVmRequest { name, no_wait })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    print_action(format, "Started", &vm)
}

/// `kctl vm stop`.
pub async fn stop(
    client: &Client,
    format: Format,
    name: String,
    force: bool,
    timeout: Option<u32>,
    no_wait: bool,
) -> Result<()> {
    let vm = client
        .api()
        .stop_vm(StopVmRequest {
            name,
            force,
            timeout_secs: timeout,
            no_wait,
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    print_action(format, "Stopped", &vm)
}

/// The VM operations that are one call each.
#[derive(Debug, Clone, Copy)]
pub enum Simple {
    Reboot,
    Pause,
    Resume,
}

/// `kctl vm reboot | pause | resume`.
pub async fn simple(client: &Client, format: Format, op: Simple, name: String) -> Result<()> {
    let mut api = client.api();
    let (verb, reply) = match op {
        Simple::Reboot => ("Rebooted", api.reboot_vm(RebootVmRequest { name }).await),
        Simple::Pause => ("Paused", api.pause_vm(PauseVmRequest { name }).await),
        Simple::Resume => ("Resumed", api.resume_vm(ResumeVmRequest { name }).await),
    };
    let vm = reply.map_err(|s| client.error(s))?.into_inner();
    print_action(format, verb, &vm)
}

/// `kctl vm disk attach | detach | resize`.
pub async fn disk(client: &Client, format: Format, command: crate::cli::DiskCommand) -> Result<()> {
    use crate::cli::DiskCommand;
    use kcore_proto::v1::{AttachDiskRequest, DetachDiskRequest, ResizeDiskRequest};
    let mut api = client.api();
    let (verb, reply) = match command {
        DiskCommand::Attach { name, disk } => (
            "Attached a disk to",
            api.attach_disk(AttachDiskRequest {
                vm: name,
                pool: disk.pool,
                size_gb: disk.size_gb,
                volume: disk.volume,
            })
            .await,
        ),
        DiskCommand::Detach { name, disk, keep } => (
            "Detached a disk from",
            api.detach_disk(DetachDiskRequest {
                vm: name,
                disk,
                keep,
            })
            .await,
        ),
        DiskCommand::Resize {
            name,
            disk,
            size_gb,
        } => (
            "Resized a disk of",
            api.resize_disk(ResizeDiskRequest {
                vm: name,
                disk,
                size_gb,
            })
            .await,
        ),
    };
    let vm = reply.map_err(|s| client.error(s))?.into_inner();
    print_action(format, verb, &vm)
}

/// `kctl vm delete`.
pub async fn delete(
    client: &Client,
    format: Format,
    name: String,
    force: bool,
    keep_disks: bool,
) -> Result<()> {
    client
        .api()
        .delete_vm(DeleteVmRequest {
            name: name.clone(),
            force,
            keep_disks,
        })
        .await
        .map_err(|s| client.error(s))?;
    match format {
        Format::Table if keep_disks => {
            output::write_stdout(format!("Deleted VM {name} (its volumes were kept)\n").as_bytes())
        }
        Format::Table => output::write_stdout(format!("Deleted VM {name}\n").as_bytes()),
        Format::Json | Format::Yaml => output::write_stdout(b"{}\n"),
    }
}

/// Prints the VM an action returned: the object in json/yaml, a one-line summary (plus the
/// time to RUNNING when the timeline has it) in table mode.
fn print_action(format: Format, verb: &str, vm: &Vm) -> Result<()> {
    if format != Format::Table {
        return output::print_structured(format, vm);
    }
    output::write_stdout(action_summary(verb, vm).as_bytes())
}

/// `Created VM web: RUNNING on node-1 (vcpus_running at 812.4 ms)`.
pub fn action_summary(verb: &str, vm: &Vm) -> String {
    let mut line = format!("{verb} VM {}: {}", vm.name, output::vm_status(vm.status));
    if !vm.node.is_empty() {
        line.push_str(&format!(" on {}", vm.node));
    }
    if !vm.status_reason.is_empty() {
        line.push_str(&format!(" ({})", vm.status_reason));
    }
    let running = vm
        .timeline
        .as_ref()
        .and_then(|t| t.phases.iter().find(|p| p.name == "vcpus_running"));
    // Only a VM this call started: `start --no-wait` answers with the VM as it was, whose
    // timeline is its last start's.
    if (verb == "Created" || verb == "Started")
        && vm.status == kcore_proto::v1::VmStatus::Running as i32
        && let Some(phase) = running
    {
        line.push_str(&format!(
            ", vcpus running after {} ms",
            output::ms(phase.offset_ms)
        ));
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use kcore_proto::v1::{BootPhase, VmStatus};

    use super::*;
    use crate::cli::{Cli, Command, VmCommand};
    use clap::Parser;

    fn sample_vm() -> Vm {
        Vm {
            id: "0c5e".into(),
            name: "web".into(),
            status: VmStatus::Running as i32,
            node: "node-1".into(),
            memory_mb: 512,
            vcpu: 2,
            created_at: "2025-01-10T11:59:00.000Z".into(),
            pid: 4242,
            storage_gb: 10,
            spec: Some(VmSpec {
                vcpu: 2,
                memory_mb: 512,
                kernel: "/boot/vmlinuz".into(),
                image: "debian-12".into(),
                firmware: Firmware::Uefi as i32,
                ..Default::default()
            }),
            disks: vec![
                VmDisk {
                    volume: "web-root".into(),
                    pool: "default".into(),
                    device: "vda".into(),
                    size_bytes: 10 << 30,
                    format: "qcow2".into(),
                    image: "debian-12".into(),
                },
                VmDisk {
                    volume: "web-1".into(),
                    pool: "fast".into(),
                    device: "vdb".into(),
                    size_bytes: 512 << 20,
                    format: "raw".into(),
                    image: String::new(),
                },
            ],
            timeline: Some(BootTimeline {
                phases: vec![
                    BootPhase {
                        name: "request_received".into(),
                        offset_ms: 0.0,
                        at: String::new(),
                    },
                    BootPhase {
                        name: "qemu_exec".into(),
                        offset_ms: 3.25,
                        at: String::new(),
                    },
                    BootPhase {
                        name: "vcpus_running".into(),
                        offset_ms: 48.0,
                        at: String::new(),
                    },
                ],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn list_table_reads_like_virsh() {
        let now = chrono::DateTime::parse_from_rfc3339("2025-01-10T12:00:00.000Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("time");
        let text = list_table(&[sample_vm()], now).trim_fmt();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAME  STATUS   NODE    VCPU   MEMORY    DISK   PID  AGE"
        );
        assert_eq!(
            lines[1],
            "web   RUNNING  node-1     2  512 MiB  10 GiB  4242  60s"
        );
        let mut bare = sample_vm();
        bare.storage_gb = 0;
        let text = list_table(&[bare], now).trim_fmt();
        assert!(
            text.lines()
                .nth(1)
                .is_some_and(|l| l.contains("512 MiB     -  4242")),
            "{text}"
        );
    }

    #[test]
    fn describe_lists_disks() {
        let text = describe(&sample_vm());
        assert!(text.contains("Storage:  10 GiB\n"), "{text}");
        assert!(text.contains("Firmware: uefi\n"), "{text}");
        assert!(text.contains("Image:    debian-12\n"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| *l == "Disks:")
            .expect("disks section");
        assert_eq!(
            lines[at + 1],
            "  DEVICE  VOLUME    POOL          SIZE  FORMAT  IMAGE"
        );
        assert_eq!(
            lines[at + 2],
            "  vda     web-root  default   10.0 GiB  qcow2   debian-12"
        );
        assert_eq!(
            lines[at + 3],
            "  vdb     web-1     fast     512.0 MiB  raw     -"
        );
        let mut bare = sample_vm();
        bare.disks.clear();
        assert!(describe(&bare).contains("\nDisks: none\n"));
        assert!(!text.contains("Tainted"), "{text}");
    }

    #[test]
    fn describe_says_tainted() {
        let mut vm = sample_vm();
        vm.tainted = true;
        let text = describe(&vm);
        assert!(
            text.contains("Tainted:  yes: QMP commands outside query-* were sent"),
            "{text}"
        );
    }

    #[test]
    fn timeline_deltas() {
        let text = timeline_table(sample_vm().timeline.as_ref().expect("timeline")).trim_fmt();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "PHASE             AT (ms)  DELTA (ms)");
        assert_eq!(lines[1], "request_received      0.0           -");
        assert_eq!(lines[2], "qemu_exec             3.2        +3.2");
        assert_eq!(lines[3], "vcpus_running        48.0       +44.8");
    }

    #[test]
    fn guest_stages_split_the_boot() {
        use kcore_proto::v1::BootPhase;
        let phase = |name: &str, offset_ms: f64| BootPhase {
            name: name.into(),
            offset_ms,
            at: String::new(),
        };
        let mut t = BootTimeline {
            phases: vec![
                phase("request_received", 0.0),
                phase("vcpus_running", 48.0),
                phase("first_console_byte", 200.0),
                phase("guest_ready", 2000.0),
            ],
        };
        assert_eq!(guest_stages(&t), "", "a quiet kernel shows no stages");
        t.phases.insert(2, phase("kernel_started", 148.0));
        t.phases.insert(4, phase("init_started", 1700.5));
        assert_eq!(
            guest_stages(&t),
            "firmware       100.0 ms  (vcpus_running -> kernel_started)\n\
             kernel        1552.5 ms  (kernel_started -> init_started)\n\
             userspace      299.5 ms  (init_started -> guest_ready)\n"
        );
    }

    #[test]
    fn describe_and_summary() {
        let vm = sample_vm();
        let text = describe(&vm);
        assert!(text.contains("Status:   RUNNING\n"), "{text}");
        assert!(text.contains("Kernel:   /boot/vmlinuz\n"), "{text}");
        assert!(text.contains("Boot timeline:\n  PHASE"), "{text}");
        assert_eq!(
            action_summary("Created", &vm),
            "Created VM web: RUNNING on node-1, vcpus running after 48.0 ms\n"
        );
        assert_eq!(
            action_summary("Paused", &vm),
            "Paused VM web: RUNNING on node-1\n"
        );
        // `start --no-wait` of a stopped VM: its last start's timeline is not this one's.
        let mut stopped = vm.clone();
        stopped.status = VmStatus::Stopped as i32;
        stopped.status_reason = "guest powered off".into();
        assert_eq!(
            action_summary("Started", &stopped),
            "Started VM web: STOPPED on node-1 (guest powered off)\n"
        );
    }

    #[test]
    fn json_is_the_api_object() {
        let vm = sample_vm();
        let value = serde_json::to_value(&vm).expect("json");
        assert_eq!(value["status"], "VM_STATUS_RUNNING");
        assert_eq!(value["memory_mb"], 512);
        let list = kcore_proto::v1::ListVMsResponse { vms: vec![vm] };
        let value = serde_json::to_value(&list).expect("json");
        assert_eq!(value["vms"][0]["name"], "web");
    }

    #[test]
    fn create_request_makes_paths_absolute() {
        let cli = Cli::try_parse_from([
            "kctl",
            "vm",
            "create",
            "web",
            "--vcpu",
            "2",
            "--memory",
            "1G",
            "--kernel",
            "vmlinuz",
            "--initrd",
            "/abs/initrd",
            "--start=false",
            "--machine",
            "pc",
            "--restart",
            "always",
            "--ready-pattern",
            "^ready$",
        ])
        .expect("parses");
        let Command::Vm(VmCommand::Create(args)) = cli.command else {
            panic!("not create");
        };
        let request = create_request(&args).expect("request");
        let spec = request.spec.expect("spec");
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(spec.kernel, cwd.join("vmlinuz").to_string_lossy());
        assert_eq!(spec.initrd, "/abs/initrd");
        assert_eq!(spec.memory_mb, 1024);
        assert_eq!(spec.machine, MachineType::Pc as i32);
        assert_eq!(spec.restart_policy, RestartPolicy::Always as i32);
        assert!(request.no_start);
        assert!(!request.no_wait);
        assert_eq!(spec.firmware, Firmware::Unspecified as i32);
        assert!(spec.image.is_empty() && spec.disks.is_empty() && spec.root_pool.is_empty());
    }

    #[test]
    fn create_request_storage_fields() {
        let cli = Cli::try_parse_from([
            "kctl",
            "vm",
            "create",
            "web",
            "--vcpu",
            "1",
            "--memory",
            "512",
            "--image",
            "debian-12",
            "--disk-size",
            "20",
            "--disk",
            "fast:5",
            "--disk",
            "default:1",
            "--root-pool",
            "fast",
            "--firmware",
            "uefi",
        ])
        .expect("parses");
        let Command::Vm(VmCommand::Create(args)) = cli.command else {
            panic!("not create");
        };
        let spec = create_request(&args).expect("request").spec.expect("spec");
        assert_eq!(spec.image, "debian-12");
        assert!(spec.kernel.is_empty());
        assert_eq!(spec.disk_size_gb, 20);
        assert_eq!(
            spec.disks
                .iter()
                .map(|d| (d.pool.as_str(), d.size_gb))
                .collect::<Vec<_>>(),
            [("fast", 5), ("default", 1)]
        );
        assert_eq!(spec.root_pool, "fast");
        assert_eq!(spec.firmware, Firmware::Uefi as i32);
    }

    #[test]
    fn bad_ready_pattern_is_rejected_locally() {
        let cli = Cli::try_parse_from([
            "kctl",
            "vm",
            "create",
            "web",
            "--vcpu",
            "1",
            "--memory",
            "64",
            "--ready-pattern",
            "(",
        ])
        .expect("parses");
        let Command::Vm(VmCommand::Create(args)) = cli.command else {
            panic!("not create");
        };
        let err = create_request(&args).expect_err("invalid regex");
        assert!(err.to_string().contains("--ready-pattern"), "{err}");
    }
}

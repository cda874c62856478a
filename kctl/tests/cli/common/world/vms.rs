//! VM calls, in the order of kcored's checks: the controller's (kcored/src/controller/vms.rs,
//! schedule.rs), then the node's (kcored/src/node/), then vmm's.

use kcore_proto::v1::*;
use serde_json::{Value, json};
use tonic::Status;

use super::{GIB, NODE, World, boot_timeline};
use crate::common::texts::*;

/// kcored's name of a status (kcored/src/convert.rs, status_name).
pub fn status_name(status: i32) -> &'static str {
    VmStatus::try_from(status)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("VM_STATUS_")
}

fn status_of(vm: &Vm) -> VmStatus {
    VmStatus::try_from(vm.status).unwrap_or_default()
}

/// vmm's refusal of an operation in the VM's state (FAILED_PRECONDITION).
fn wrong_state(vm: &Vm, op: &str) -> Status {
    Status::failed_precondition(WRONG_STATE.fill(&[status_name(vm.status), op]))
}

/// QEMU runs (or may): kcored/src/node/grpc/streams.rs (console) and vmm's `VmState::is_active`.
pub fn is_active(vm: &Vm) -> bool {
    use VmStatus::*;
    matches!(
        status_of(vm),
        Starting | Running | Paused | Stopping | Unknown
    )
}

/// A started VM as the node reports it once its vCPUs run.
fn started(mut vm: Vm, at: &str) -> Vm {
    vm.status = VmStatus::Running as i32;
    vm.status_reason.clear();
    vm.pid = 4243;
    vm.timeline = Some(boot_timeline(at));
    vm
}

fn gib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(GIB)).unwrap_or(u32::MAX)
}

fn device(index: usize) -> String {
    format!("vd{}", char::from(b'a' + u8::try_from(index).unwrap_or(25)))
}

impl World {
    /// The host files a spec names, opened as the node opens them for a local caller (the
    /// mock runs on kctl's host, as an all-in-one kcored does).
    fn check_host_file(what: &str, path: &str) -> Result<(), Status> {
        match std::fs::File::open(path) {
            Ok(_) => Ok(()),
            // The OS's own words, as kcored passes them on.
            Err(e) => Err(Status::invalid_argument(HOST_FILE_UNREADABLE.fill(&[
                what,
                path,
                &e.to_string(),
            ]))),
        }
    }

    pub fn create_vm(&self, r: CreateVmRequest) -> Result<Vm, Status> {
        let mut spec = r.spec.unwrap_or_default();
        // The whole request is checked first (kcored/src/model.rs, VmRequest::validate).
        for (i, d) in spec.disks.iter().enumerate() {
            if d.size_gb == 0 && d.volume.is_empty() {
                return Err(Status::invalid_argument(
                    PLANNED_DISK_SIZE.fill(&[&format!("disk {}", i + 1)]),
                ));
            }
        }
        // A clone takes its template's vCPUs and memory
        // (kcored/src/controller/templates.rs, resolve_template).
        if !spec.template.is_empty() {
            let t = self.get_template(&spec.template)?;
            spec.vcpu = t.vcpu;
            spec.memory_mb = t.memory_mb;
        }
        if spec.kernel.is_empty()
            && spec.image.is_empty()
            && spec.disks.is_empty()
            && spec.template.is_empty()
        {
            return Err(Status::invalid_argument(
                INVALID_SPEC.fill(&[&NO_BOOT_SOURCE.fill(&[])]),
            ));
        }
        if self.vms.iter().any(|v| v.name == r.name) {
            return Err(Status::already_exists(VM_EXISTS.fill(&[&r.name])));
        }
        // MACs, then placement.
        for (i, nic) in spec.nics.iter_mut().enumerate() {
            if !self.networks.iter().any(|n| n.name == nic.network) {
                return Err(Status::not_found(NO_NETWORK_FOR_NIC.fill(&[&nic.network])));
            }
            if nic.mac.is_empty() {
                nic.mac = format!("52:54:00:5e:00:{i:02x}");
            }
        }
        if !spec.image.is_empty() && !self.images.iter().any(|i| i.name == spec.image) {
            return Err(Status::not_found(NO_IMAGE_ANYWHERE.fill(&[&spec.image])));
        }
        let pool_of = |p: &str| if p.is_empty() { "default" } else { p }.to_string();
        let wanted = std::iter::once(pool_of(&spec.root_pool))
            .filter(|_| !spec.image.is_empty())
            .chain(spec.disks.iter().map(|d| pool_of(&d.pool)));
        for pool in wanted.collect::<Vec<_>>() {
            if !self.pools.iter().any(|p| p.name == pool) {
                return Err(Status::not_found(NO_POOL_ANYWHERE.fill(&[&pool])));
            }
        }
        // The node: host files, the disk plan, then vmm's validation.
        for (what, path) in [("kernel", &spec.kernel), ("initrd", &spec.initrd)] {
            if !path.is_empty() {
                Self::check_host_file(what, path)?;
            }
        }
        let mut disks = Vec::new();
        if let Some(image) = self.images.iter().find(|i| i.name == spec.image) {
            let pool = pool_of(&spec.root_pool);
            disks.push(VmDisk {
                volume: format!("{}-root", r.name),
                size_bytes: match spec.disk_size_gb {
                    0 => image.virtual_size,
                    gb => u64::from(gb) * GIB,
                },
                // A clone is a qcow2 overlay in a dir pool, a converted copy in an LV.
                format: if pool == "fast" { "raw" } else { "qcow2" }.into(),
                image: image.name.clone(),
                pool,
                device: String::new(),
            });
        }
        for (i, d) in spec.disks.iter().enumerate() {
            let pool = pool_of(&d.pool);
            disks.push(VmDisk {
                volume: format!("{}-disk{}", r.name, i + 1),
                size_bytes: u64::from(d.size_gb) * GIB,
                format: if pool == "fast" { "raw" } else { "qcow2" }.into(),
                image: String::new(),
                pool,
                device: String::new(),
            });
        }
        for (i, d) in disks.iter_mut().enumerate() {
            d.device = device(i);
        }
        let vm = Vm {
            id: "c4d2b7a1-0e6f-4b3a-8d95-7f1e2a6c3b08".into(),
            name: r.name.clone(),
            status: VmStatus::Stopped as i32,
            node: NODE.into(),
            memory_mb: spec.memory_mb,
            vcpu: spec.vcpu,
            storage_gb: disks.iter().map(|d| gib(d.size_bytes)).sum(),
            created_at: "2025-01-10T12:30:00.000Z".into(),
            updated_at: "2025-01-10T12:30:00.000Z".into(),
            nics: spec
                .nics
                .iter()
                .enumerate()
                .map(|(i, n)| VmNic {
                    id: format!("net{i}"),
                    network: n.network.clone(),
                    mac: n.mac.clone(),
                    model: if n.model.is_empty() {
                        "virtio"
                    } else {
                        &n.model
                    }
                    .into(),
                    tap: format!("ktap-9d0e61c2{i:02x}"),
                    ip: String::new(),
                })
                .collect(),
            disks,
            spec: Some(spec),
            ..Default::default()
        };
        // Defined (STOPPED); without --no-wait the start's answer comes once vCPUs run.
        Ok(if r.no_start || r.no_wait {
            vm
        } else {
            started(vm, "2025-01-10T12:30:00.000Z")
        })
    }

    pub fn start_vm(&self, name: &str, no_wait: bool) -> Result<Vm, Status> {
        let vm = self.vm(name)?;
        use VmStatus::*;
        if !matches!(status_of(vm), Stopped | Crashed | Error) {
            return Err(Status::failed_precondition(
                VM_CANNOT_START.fill(&[&vm.name, status_name(vm.status)]),
            ));
        }
        self.ready_node(&vm.node)?;
        // --no-wait: the VM as it was when the start was asked for.
        Ok(if no_wait {
            vm.clone()
        } else {
            started(vm.clone(), "2025-01-10T12:30:00.000Z")
        })
    }

    pub fn stop_vm(&self, r: &StopVmRequest) -> Result<Vm, Status> {
        let vm = self.vm(&r.name)?;
        self.ready_node(&vm.node)?;
        if r.no_wait {
            return Ok(vm.clone());
        }
        use VmStatus::*;
        match status_of(vm) {
            Running | Paused | Unknown | Crashed | Error => {}
            _ => return Err(wrong_state(vm, "stop")),
        }
        // A stop the operator asked for: STOPPED, no reason (vmm/src/vm/exit.rs).
        let mut stopped = vm.clone();
        stopped.status = Stopped as i32;
        stopped.status_reason.clear();
        stopped.pid = 0;
        Ok(stopped)
    }

    /// UpdateVM: the controller's checks (kcored/src/controller/update.rs), then the node's.
    pub fn update_vm(&self, r: &UpdateVmRequest) -> Result<Vm, Status> {
        let mut vm = self.vm(&r.name)?.clone();
        let resizes =
            r.vcpu.is_some_and(|v| v != vm.vcpu) || r.memory_mb.is_some_and(|m| m != vm.memory_mb);
        if resizes && status_of(&vm) != VmStatus::Stopped {
            return Err(Status::failed_precondition(RESIZE_NEEDS_STOP.fill(&[
                &vm.name,
                status_name(vm.status),
                &vm.name,
            ])));
        }
        self.ready_node(&vm.node)?;
        let spec = vm.spec.get_or_insert_with(Default::default);
        if let Some(v) = r.vcpu {
            vm.vcpu = v;
            spec.vcpu = v;
        }
        if let Some(m) = r.memory_mb {
            vm.memory_mb = m;
            spec.memory_mb = m;
        }
        if let Some(a) = r.autostart {
            spec.autostart = a;
        }
        if let Some(c) = &r.cloud_init {
            // Every file empty: the seed goes (kcored/src/model/request.rs, VmUpdate).
            let empty = [&c.user_data, &c.meta_data, &c.network_config]
                .iter()
                .all(|t| t.trim().is_empty());
            spec.cloud_init = (!empty).then(|| c.clone());
        }
        Ok(vm)
    }

    /// `op`: "pause", "resume" or "reboot", as vmm names them in its refusal.
    pub fn simple_op(&self, name: &str, op: &str) -> Result<Vm, Status> {
        let vm = self.vm(name)?;
        self.ready_node(&vm.node)?;
        let (from, to) = match op {
            "pause" => (VmStatus::Running, VmStatus::Paused),
            "resume" => (VmStatus::Paused, VmStatus::Running),
            _ => (VmStatus::Running, VmStatus::Running),
        };
        if status_of(vm) != from {
            return Err(wrong_state(vm, op));
        }
        let mut vm = vm.clone();
        vm.status = to as i32;
        Ok(vm)
    }

    pub fn delete_vm(&self, r: &DeleteVmRequest) -> Result<(), Status> {
        let vm = self.vm(&r.name)?;
        use VmStatus::*;
        if !r.force && matches!(status_of(vm), Running | Paused | Starting | Stopping) {
            return Err(Status::failed_precondition(
                VM_DELETE_ACTIVE.fill(&[&vm.name, status_name(vm.status)]),
            ));
        }
        self.ready_node(&vm.node)?;
        Ok(())
    }

    /// The console a VM's stream starts with: the last `history` bytes of its log.
    pub fn console(&self, name: &str) -> Result<&Vm, Status> {
        let vm = self.vm(name)?;
        self.ready_node(&vm.node)?;
        if !is_active(vm) {
            let state = status_name(vm.status);
            return Err(Status::failed_precondition(
                CONSOLE_NOT_LIVE.fill(&[&vm.name, state, &vm.name]),
            ));
        }
        Ok(vm)
    }

    /// QMP passthrough: the controller's and the node's checks, then QEMU 7.2's reply.
    pub fn exec_qmp(&self, name: &str, command_json: &str) -> Result<Value, Status> {
        let vm = self.vm(name)?;
        let command: Value = serde_json::from_str(command_json)
            .map_err(|e| Status::invalid_argument(QMP_NOT_JSON.fill(&[&e.to_string()])))?;
        let Some(execute) = command.get("execute").and_then(Value::as_str) else {
            return Err(Status::invalid_argument(QMP_NOT_A_COMMAND.fill(&[])));
        };
        self.ready_node(&vm.node)?;
        if !matches!(status_of(vm), VmStatus::Running | VmStatus::Paused) {
            return Err(wrong_state(vm, "talk QMP"));
        }
        let running = status_of(vm) == VmStatus::Running;
        // QEMU's answers (QEMU 7.2: qapi/qmp-dispatch.c words an unknown command so).
        Ok(match execute {
            "query-status" => json!({"return": {
                "status": if running { "running" } else { "paused" },
                "singlestep": false,
                "running": running,
            }}),
            "blockdev-add" | "blockdev-reopen" | "blockdev-del" | "device_del" | "set_link"
            | "stop" | "cont" | "system_reset" | "system_powerdown" => json!({"return": {}}),
            other => json!({"error": {
                "class": "CommandNotFound",
                "desc": format!("The command {other} has not been found"),
            }}),
        })
    }

    fn disk_of<'a>(&self, vm: &'a Vm, which: &str) -> Result<(usize, &'a VmDisk), Status> {
        vm.disks
            .iter()
            .enumerate()
            .find(|(i, d)| d.volume == which || device(*i) == which)
            .ok_or_else(|| {
                let list: Vec<String> = vm
                    .disks
                    .iter()
                    .enumerate()
                    .map(|(i, d)| DISK_ENTRY.fill(&[&device(i)[2..], &d.volume]))
                    .collect();
                Status::not_found(NO_DISK.fill(&[which, &list.join(", ")]))
            })
    }

    pub fn attach_disk(&self, r: &AttachDiskRequest) -> Result<Vm, Status> {
        let mut vm = self.vm(&r.vm)?.clone();
        self.ready_node(&vm.node)?;
        let pool = if r.pool.is_empty() {
            "default"
        } else {
            &r.pool
        };
        let disk = if r.volume.is_empty() {
            if r.size_gb == 0 {
                return Err(Status::invalid_argument(DISK_SIZE_AT_LEAST_1.fill(&[])));
            }
            let volume = (1..)
                .map(|i| format!("{}-disk{i}", vm.name))
                .find(|v| !vm.disks.iter().any(|d| &d.volume == v))
                .unwrap_or_default();
            self.pool(pool)?;
            VmDisk {
                volume,
                pool: pool.into(),
                device: String::new(),
                size_bytes: u64::from(r.size_gb) * GIB,
                format: if pool == "fast" { "raw" } else { "qcow2" }.into(),
                image: String::new(),
            }
        } else {
            let v = self.volume_to_attach(pool, &r.volume)?;
            VmDisk {
                volume: v.name.clone(),
                pool: v.pool.clone(),
                device: String::new(),
                size_bytes: v.virtual_size,
                format: v.format.clone(),
                image: v.backing.clone(),
            }
        };
        vm.disks.push(VmDisk {
            device: device(vm.disks.len()),
            ..disk
        });
        vm.storage_gb = vm.disks.iter().map(|d| gib(d.size_bytes)).sum();
        Ok(vm)
    }

    pub fn detach_disk(&self, r: &DetachDiskRequest) -> Result<Vm, Status> {
        let mut vm = self.vm(&r.vm)?.clone();
        self.ready_node(&vm.node)?;
        let (index, _) = self.disk_of(&vm, &r.disk)?;
        vm.disks.remove(index);
        vm.storage_gb = vm.disks.iter().map(|d| gib(d.size_bytes)).sum();
        Ok(vm)
    }

    pub fn resize_disk(&self, r: &ResizeDiskRequest) -> Result<Vm, Status> {
        let mut vm = self.vm(&r.vm)?.clone();
        self.ready_node(&vm.node)?;
        let (index, disk) = self.disk_of(&vm, &r.disk)?;
        let size = u64::from(r.size_gb) * GIB;
        if size < disk.size_bytes {
            return Err(Status::failed_precondition(SHRINK_REFUSED.fill(&[
                &disk.volume,
                &disk.size_bytes.to_string(),
                &size.to_string(),
            ])));
        }
        vm.disks[index].size_bytes = size;
        vm.storage_gb = vm.disks.iter().map(|d| gib(d.size_bytes)).sum();
        Ok(vm)
    }

    pub fn attach_nic(&self, r: &AttachNicRequest) -> Result<Vm, Status> {
        let mut vm = self.vm(&r.vm)?.clone();
        self.ready_node(&vm.node)?;
        if !self.networks.iter().any(|n| n.name == r.network) {
            return Err(Status::not_found(NO_NETWORK_FOR_NIC.fill(&[&r.network])));
        }
        let mac = if r.mac.is_empty() {
            "52:54:00:6b:21:9f".to_string()
        } else {
            r.mac.to_ascii_lowercase()
        };
        if let Some(owner) = self
            .vms
            .iter()
            .find(|v| v.nics.iter().any(|n| n.mac == mac))
        {
            return Err(Status::already_exists(MAC_TAKEN.fill(&[&mac, &owner.name])));
        }
        let id = (0..)
            .map(|i| format!("net{i}"))
            .find(|id| !vm.nics.iter().any(|n| &n.id == id))
            .unwrap_or_default();
        vm.nics.push(VmNic {
            id,
            network: r.network.clone(),
            mac,
            model: if r.model.is_empty() {
                "virtio"
            } else {
                &r.model
            }
            .into(),
            tap: "ktap-0c3a95e7d1".into(),
            ip: String::new(),
        });
        Ok(vm)
    }

    pub fn detach_nic(&self, r: &DetachNicRequest) -> Result<Vm, Status> {
        let mut vm = self.vm(&r.vm)?.clone();
        self.ready_node(&vm.node)?;
        let index = r.nic.parse::<usize>().ok();
        let Some(at) = vm.nics.iter().enumerate().position(|(i, n)| {
            n.id == r.nic
                || n.mac.eq_ignore_ascii_case(&r.nic)
                || n.tap == r.nic
                || index == Some(i)
        }) else {
            let list: Vec<String> = vm
                .nics
                .iter()
                .map(|n| NIC_ENTRY.fill(&[&n.id, &n.mac, &n.network]))
                .collect();
            return Err(Status::not_found(NO_NIC.fill(&[&r.nic, &list.join(", ")])));
        };
        vm.nics.remove(at);
        Ok(vm)
    }
}

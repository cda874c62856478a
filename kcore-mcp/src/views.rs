//! What the tools return: compact, documented views of kcore's API objects (their JSON
//! schemas are the tools' output schemas), converted from the proto messages, and the
//! one-line summaries that go with them.

use kcore_proto::v1 as pb;
use schemars::JsonSchema;
use serde::Serialize;

/// The enum value's name without its prefix: `VM_STATUS_RUNNING` -> `RUNNING`.
fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_string()
}

/// A VM status number as its name (`RUNNING`).
pub fn status_name(status: i32) -> String {
    pb::VmStatus::try_from(status)
        .map(|s| enum_name(s.as_str_name(), "VM_STATUS_"))
        .unwrap_or_else(|_| format!("STATUS_{status}"))
}

/// A VM in a listing.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VmSummary {
    /// The VM's name.
    pub name: String,
    /// Its id (a UUID).
    pub id: String,
    /// PENDING, CREATING, STOPPED, STARTING, RUNNING, PAUSED, STOPPING, CRASHED, ERROR or
    /// UNKNOWN.
    pub status: String,
    /// Why it is in its status, when there is something to say (exit code, error).
    pub status_reason: String,
    /// The node it is on.
    pub node: String,
    pub vcpu: u32,
    pub memory_mb: u32,
    /// IPv4 addresses its NICs leased on kcore's NAT networks.
    pub addresses: Vec<String>,
    /// Whether its console printed its ready pattern since the last start.
    pub guest_ready: bool,
}

/// One phase of a VM's last start.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BootPhase {
    /// request_received, network_ready, qemu_exec, qmp_ready, vcpus_running,
    /// first_console_byte, kernel_started, init_started (the guest's, when its kernel
    /// prints) or guest_ready.
    pub name: String,
    /// Milliseconds after the request.
    pub offset_ms: f64,
    /// When (RFC 3339).
    pub at: String,
}

/// A disk of a VM.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Disk {
    /// Guest device: vda, vdb, ...
    pub device: String,
    pub volume: String,
    pub pool: String,
    pub size_bytes: u64,
    /// qcow2 or raw.
    pub format: String,
    /// The image it is a copy-on-write clone of (empty: none).
    pub image: String,
}

/// A network interface of a VM.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Nic {
    /// net0, net1, ...
    pub id: String,
    pub network: String,
    pub mac: String,
    /// virtio or e1000.
    pub model: String,
    /// The IPv4 address the guest leased (nat networks; empty: none yet).
    pub ip: String,
}

/// How a VM boots, as it was created.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Boot {
    /// Kernel path on the node (direct kernel boot; empty: boots from its disk).
    pub kernel: String,
    pub initrd: String,
    pub cmdline: String,
    /// The image its boot disk was cloned from (empty: none).
    pub image: String,
    /// The regex whose first match on the console marks the guest ready (empty: "login:").
    pub ready_pattern: String,
    /// q35, pc or microvm.
    pub machine: String,
    /// bios or uefi.
    pub firmware: String,
    /// never, on-failure or always.
    pub restart_policy: String,
    /// Started when its node's host boots.
    pub autostart: bool,
    /// Whether it has cloud-init data (a NoCloud seed disk).
    pub cloud_init: bool,
}

/// A VM with everything kcore knows of it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VmDetail {
    pub name: String,
    pub id: String,
    /// PENDING, CREATING, STOPPED, STARTING, RUNNING, PAUSED, STOPPING, CRASHED, ERROR or
    /// UNKNOWN.
    pub status: String,
    /// Why it is in its status, when there is something to say.
    pub status_reason: String,
    pub node: String,
    pub vcpu: u32,
    pub memory_mb: u32,
    /// Disk space in GiB.
    pub storage_gb: u32,
    /// QEMU's process id on the node (0: not running).
    pub pid: i32,
    pub created_at: String,
    pub updated_at: String,
    /// Someone sent QEMU a QMP command outside query-*: it may not be what kcore thinks.
    pub tainted: bool,
    /// IPv4 addresses its NICs leased.
    pub addresses: Vec<String>,
    /// Whether its console printed its ready pattern since the last start.
    pub guest_ready: bool,
    /// The boot timeline of its last start: where the time went.
    pub boot_timeline: Vec<BootPhase>,
    pub boot: Boot,
    pub disks: Vec<Disk>,
    pub nics: Vec<Nic>,
}

fn addresses(nics: &[pb::VmNic]) -> Vec<String> {
    nics.iter()
        .filter(|n| !n.ip.is_empty())
        .map(|n| n.ip.clone())
        .collect()
}

/// Whether the VM's last start reached guest_ready.
pub fn guest_ready(vm: &pb::Vm) -> bool {
    vm.timeline
        .as_ref()
        .is_some_and(|t| t.phases.iter().any(|p| p.name == "guest_ready"))
}

impl From<&pb::Vm> for VmSummary {
    fn from(vm: &pb::Vm) -> VmSummary {
        VmSummary {
            name: vm.name.clone(),
            id: vm.id.clone(),
            status: status_name(vm.status),
            status_reason: vm.status_reason.clone(),
            node: vm.node.clone(),
            vcpu: vm.vcpu,
            memory_mb: vm.memory_mb,
            addresses: addresses(&vm.nics),
            guest_ready: guest_ready(vm),
        }
    }
}

impl From<&pb::Vm> for VmDetail {
    fn from(vm: &pb::Vm) -> VmDetail {
        let spec = vm.spec.clone().unwrap_or_default();
        let lower = |full: &str, prefix: &str| enum_name(full, prefix).to_ascii_lowercase();
        let machine = match pb::MachineType::try_from(spec.machine) {
            Ok(pb::MachineType::Unspecified) | Err(_) => "q35".to_string(),
            Ok(m) => lower(m.as_str_name(), "MACHINE_TYPE_"),
        };
        let firmware = match pb::Firmware::try_from(spec.firmware) {
            Ok(pb::Firmware::Unspecified) | Err(_) => "bios".to_string(),
            Ok(f) => lower(f.as_str_name(), "FIRMWARE_"),
        };
        let restart_policy = match pb::RestartPolicy::try_from(spec.restart_policy) {
            Ok(pb::RestartPolicy::Unspecified) | Err(_) => "never".to_string(),
            Ok(r) => lower(r.as_str_name(), "RESTART_POLICY_").replace('_', "-"),
        };
        let cloud_init = spec.cloud_init.as_ref().is_some_and(|c| {
            !(c.user_data.is_empty() && c.meta_data.is_empty() && c.network_config.is_empty())
        });
        VmDetail {
            name: vm.name.clone(),
            id: vm.id.clone(),
            status: status_name(vm.status),
            status_reason: vm.status_reason.clone(),
            node: vm.node.clone(),
            vcpu: vm.vcpu,
            memory_mb: vm.memory_mb,
            storage_gb: vm.storage_gb,
            pid: vm.pid,
            created_at: vm.created_at.clone(),
            updated_at: vm.updated_at.clone(),
            tainted: vm.tainted,
            addresses: addresses(&vm.nics),
            guest_ready: guest_ready(vm),
            boot_timeline: vm
                .timeline
                .iter()
                .flat_map(|t| t.phases.iter())
                .map(|p| BootPhase {
                    name: p.name.clone(),
                    offset_ms: p.offset_ms,
                    at: p.at.clone(),
                })
                .collect(),
            boot: Boot {
                kernel: spec.kernel,
                initrd: spec.initrd,
                cmdline: spec.cmdline,
                image: spec.image,
                ready_pattern: spec.ready_pattern,
                machine,
                firmware,
                restart_policy,
                autostart: spec.autostart,
                cloud_init,
            },
            disks: vm
                .disks
                .iter()
                .map(|d| Disk {
                    device: d.device.clone(),
                    volume: d.volume.clone(),
                    pool: d.pool.clone(),
                    size_bytes: d.size_bytes,
                    format: d.format.clone(),
                    image: d.image.clone(),
                })
                .collect(),
            nics: vm
                .nics
                .iter()
                .map(|n| Nic {
                    id: n.id.clone(),
                    network: n.network.clone(),
                    mac: n.mac.clone(),
                    model: n.model.clone(),
                    ip: n.ip.clone(),
                })
                .collect(),
        }
    }
}

impl VmDetail {
    /// `web: RUNNING on node1, 1 vCPU, 128 MiB, 10.0.0.5, guest ready after 1834 ms`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{}: {} on {}, {} vCPU, {} MiB",
            self.name, self.status, self.node, self.vcpu, self.memory_mb
        );
        if !self.status_reason.is_empty() {
            s.push_str(&format!(" ({})", self.status_reason));
        }
        if !self.addresses.is_empty() {
            s.push_str(&format!(", {}", self.addresses.join(" ")));
        }
        if let Some(p) = self.boot_timeline.iter().find(|p| p.name == "guest_ready") {
            s.push_str(&format!(
                ", guest ready {:.0} ms after the start",
                p.offset_ms
            ));
        }
        if self.tainted {
            s.push_str(", tainted");
        }
        s
    }
}

/// A storage pool of a node.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Pool {
    pub name: String,
    pub node: String,
    /// dir or lvm.
    #[serde(rename = "type")]
    pub kind: String,
    /// The directory, or VG[/THINPOOL].
    pub source: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

impl From<&pb::Pool> for Pool {
    fn from(p: &pb::Pool) -> Pool {
        Pool {
            name: p.name.clone(),
            node: p.node.clone(),
            kind: p.r#type.clone(),
            source: p.source.clone(),
            total_bytes: p.total_bytes,
            free_bytes: p.free_bytes,
        }
    }
}

/// A node with its capacity and what is placed on it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Node {
    pub name: String,
    /// READY or NOT_READY (no heartbeat lately: its VMs show UNKNOWN).
    pub state: String,
    pub address: String,
    pub hostname: String,
    /// Host CPUs.
    pub cpus: u32,
    /// Host memory in MiB.
    pub memory_mb: u32,
    /// vCPUs of the VMs placed here (the scheduler overcommits CPUs, 4x by default).
    pub allocated_vcpu: u32,
    /// Memory of the VMs placed here, in MiB (not overcommitted).
    pub allocated_memory_mb: u32,
    /// memory_mb minus allocated_memory_mb.
    pub unallocated_memory_mb: u32,
    pub vm_count: u32,
    /// No new VMs are placed here.
    pub cordoned: bool,
    /// kvm or tcg.
    pub accel: String,
    pub qemu_version: String,
    pub version: String,
    pub last_heartbeat: String,
    /// Its storage pools with their free space.
    pub pools: Vec<Pool>,
    /// The networks in place on it.
    pub networks: Vec<String>,
}

impl From<&pb::Node> for Node {
    fn from(n: &pb::Node) -> Node {
        Node {
            name: n.name.clone(),
            state: pb::NodeState::try_from(n.state)
                .map(|s| enum_name(s.as_str_name(), "NODE_STATE_"))
                .unwrap_or_default(),
            address: n.address.clone(),
            hostname: n.hostname.clone(),
            cpus: n.cpus,
            memory_mb: n.memory_mb,
            allocated_vcpu: n.allocated_vcpu,
            allocated_memory_mb: n.allocated_memory_mb,
            unallocated_memory_mb: n.memory_mb.saturating_sub(n.allocated_memory_mb),
            vm_count: n.vm_count,
            cordoned: n.cordoned,
            accel: n.accel.clone(),
            qemu_version: n.qemu_version.clone(),
            version: n.version.clone(),
            last_heartbeat: n.last_heartbeat.clone(),
            pools: n.pools.iter().map(Pool::from).collect(),
            networks: n.networks.clone(),
        }
    }
}

/// An image VMs' boot disks can be cloned from.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Image {
    pub name: String,
    pub node: String,
    pub pool: String,
    /// qcow2 or raw.
    pub format: String,
    /// The disk size the guest sees, in bytes.
    pub virtual_size: u64,
    /// Bytes used on the host.
    pub actual_size: u64,
    pub sha256: String,
}

impl From<&pb::Image> for Image {
    fn from(i: &pb::Image) -> Image {
        Image {
            name: i.name.clone(),
            node: i.node.clone(),
            pool: i.pool.clone(),
            format: i.format.clone(),
            virtual_size: i.virtual_size,
            actual_size: i.actual_size,
            sha256: i.sha256.clone(),
        }
    }
}

/// A volume: a VM's disk, or one no VM uses.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Volume {
    pub name: String,
    pub node: String,
    pub pool: String,
    /// The VM using it (empty: none).
    pub vm: String,
    pub format: String,
    pub virtual_size: u64,
    pub actual_size: u64,
    /// The image it is a copy-on-write clone of (empty: none).
    pub backing: String,
}

impl From<&pb::Volume> for Volume {
    fn from(v: &pb::Volume) -> Volume {
        Volume {
            name: v.name.clone(),
            node: v.node.clone(),
            pool: v.pool.clone(),
            vm: v.vm.clone(),
            format: v.format.clone(),
            virtual_size: v.virtual_size,
            actual_size: v.actual_size,
            backing: v.backing.clone(),
        }
    }
}

/// How a network stands on one node.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NetworkOnNode {
    pub node: String,
    pub ready: bool,
    /// What is wrong when not ready.
    pub message: String,
    /// DHCP leases handed out (nat).
    pub leases: u32,
}

/// A network VMs join with NICs.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Network {
    pub name: String,
    /// NAT (kcore's own bridge with DHCP, DNS and masquerade) or BRIDGE (a host bridge).
    pub mode: String,
    /// nat: the IPv4 subnet (CIDR).
    pub subnet: String,
    pub gateway: String,
    pub bridge: String,
    /// VMs with a NIC on it.
    pub vm_count: u32,
    pub nodes: Vec<NetworkOnNode>,
}

impl From<&pb::Network> for Network {
    fn from(n: &pb::Network) -> Network {
        Network {
            name: n.name.clone(),
            mode: pb::NetworkMode::try_from(n.mode)
                .map(|m| enum_name(m.as_str_name(), "NETWORK_MODE_"))
                .unwrap_or_default(),
            subnet: n.subnet.clone(),
            gateway: n.gateway.clone(),
            bridge: n.bridge.clone(),
            vm_count: n.vm_count,
            nodes: n
                .nodes
                .iter()
                .map(|s| NetworkOnNode {
                    node: s.node.clone(),
                    ready: s.ready,
                    message: s.message.clone(),
                    leases: s.leases,
                })
                .collect(),
        }
    }
}

/// Something that happened in the cluster.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Event {
    pub id: i64,
    /// When (RFC 3339).
    pub at: String,
    /// vm.created, vm.status, vm.guest_ready, vm.deleted, vm.start, vm.stop, vm.qmp,
    /// node.ready, node.not_ready, image.import, ...
    pub kind: String,
    /// The VM's name, for events about a VM.
    pub vm: String,
    /// The VM's status after the event, for events about a VM.
    pub status: String,
    pub node: String,
    /// What happened; changes name who asked (`by uid 0 (root) on the local socket via
    /// kcore-mcp/0.1.0`).
    pub message: String,
}

impl From<&pb::Event> for Event {
    fn from(e: &pb::Event) -> Event {
        Event {
            id: e.id,
            at: e.at.clone(),
            kind: e.kind.clone(),
            vm: e.vm_name.clone(),
            status: if e.status == 0 {
                String::new()
            } else {
                status_name(e.status)
            },
            node: e.node.clone(),
            message: e.message.clone(),
        }
    }
}

impl Event {
    /// `2025-01-10T12:00:00.002Z vm.created web: on node node1 by ...`.
    pub fn line(&self) -> String {
        let mut s = format!("{} {}", self.at, self.kind);
        let about = if self.vm.is_empty() {
            &self.node
        } else {
            &self.vm
        };
        if !about.is_empty() {
            s.push(' ');
            s.push_str(about);
        }
        if !self.status.is_empty() {
            s.push_str(&format!(" [{}]", self.status));
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_as_the_tools_show_it() {
        let vm = pb::Vm {
            name: "web".into(),
            id: "1".into(),
            status: pb::VmStatus::Running as i32,
            node: "node1".into(),
            vcpu: 1,
            memory_mb: 128,
            spec: Some(pb::VmSpec {
                restart_policy: pb::RestartPolicy::OnFailure as i32,
                ..Default::default()
            }),
            timeline: Some(pb::BootTimeline {
                phases: vec![pb::BootPhase {
                    name: "guest_ready".into(),
                    offset_ms: 1834.4,
                    at: "t".into(),
                }],
            }),
            nics: vec![pb::VmNic {
                ip: "10.0.0.5".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let d = VmDetail::from(&vm);
        assert_eq!(d.status, "RUNNING");
        assert_eq!(d.boot.machine, "q35");
        assert_eq!(d.boot.firmware, "bios");
        assert_eq!(d.boot.restart_policy, "on-failure");
        assert!(d.guest_ready);
        assert_eq!(
            d.summary(),
            "web: RUNNING on node1, 1 vCPU, 128 MiB, 10.0.0.5, guest ready 1834 ms after the start"
        );
        let s = VmSummary::from(&vm);
        assert_eq!(s.addresses, ["10.0.0.5"]);
        assert_eq!(status_name(42), "STATUS_42");
    }
}

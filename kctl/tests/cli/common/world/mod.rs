//! What the mock knows: one `kcored all-in-one` host (node-1) with a dir pool and a thin
//! LVM pool, two images, three volumes, a nat network and two VMs (web runs, booted from a
//! clone of debian-12 with a data disk and a NIC; db is a kernel-boot VM whose guest powered
//! off), as kcored reports them. The mock answers every call as kcored would from this
//! state; calls do not change it (each test starts its own server, and may start it from a
//! changed world: [`World::node_lost`], [`World::set_status`]).

mod cluster;
mod storage;
mod templates;
mod vms;

use kcore_proto::v1::*;
use tonic::Status;

pub use storage::{BIG_URL, TINY_URL, ZEROS_1M_SHA};

use super::texts::{
    GUEST_POWERED_OFF, HEARTBEAT_RECEIVED, LOCAL_CALLER, NODE_UNREACHABLE, VM_CREATED,
};

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;
/// sha256 of debian-12, and the image's first 12 digits as `image list` shows them.
pub const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const NODE: &str = "node-1";
pub const WEB_ID: &str = "5f0c2a8e-3b7d-4c1e-9a62-0d4f8b1e7c35";
pub const DB_ID: &str = "9b3e71d2-6a40-4f85-b1c7-2e8d5a0f6493";
pub const WEB_MAC: &str = "52:54:00:3a:7c:01";
/// The console log of every VM (the node keeps it after QEMU is gone).
pub const CONSOLE_LOG: &[u8] = b"one\r\ntwo\r\nthree\r\nlogin: ";
const DATA_DIR: &str = "/var/lib/kcore";

/// The state the mock answers from.
#[derive(Debug, Clone)]
pub struct World {
    pub nodes: Vec<Node>,
    pub vms: Vec<Vm>,
    pub pools: Vec<Pool>,
    pub images: Vec<Image>,
    pub volumes: Vec<Volume>,
    pub networks: Vec<Network>,
    pub events: Vec<Event>,
    pub certs: Vec<CertificateInfo>,
    pub templates: Vec<Template>,
}

pub fn phase(name: &str, offset_ms: f64) -> BootPhase {
    BootPhase {
        name: name.into(),
        offset_ms,
        at: String::new(),
    }
}

fn timeline(start: &str, phases: &[(&str, f64)]) -> BootTimeline {
    // `at` as kcored writes it: the request's time plus the offset, in ms, UTC.
    let t0 = chrono::DateTime::parse_from_rfc3339(start).expect("rfc3339");
    BootTimeline {
        phases: phases
            .iter()
            .map(|(name, ms)| BootPhase {
                at: (t0 + chrono::Duration::microseconds((ms * 1000.0) as i64))
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ..phase(name, *ms)
            })
            .collect(),
    }
}

/// The timeline of a start that boots from a disk with one NIC.
pub fn boot_timeline(start: &str) -> BootTimeline {
    timeline(
        start,
        &[
            ("request_received", 0.0),
            ("network_ready", 1.2),
            ("qemu_exec", 4.9),
            ("qmp_ready", 38.0),
            ("vcpus_running", 41.5),
            ("first_console_byte", 350.2),
        ],
    )
}

pub fn event(id: i64, at: &str, kind: &str, vm: Option<&Vm>, status: VmStatus, msg: &str) -> Event {
    Event {
        id,
        at: at.into(),
        kind: kind.into(),
        vm_id: vm.map(|v| v.id.clone()).unwrap_or_default(),
        vm_name: vm.map(|v| v.name.clone()).unwrap_or_default(),
        status: if vm.is_some() { status as i32 } else { 0 },
        node: NODE.into(),
        message: msg.into(),
    }
}

fn cert(serial: &str, name: &str, role: &str, issued: &str) -> CertificateInfo {
    CertificateInfo {
        serial: serial.into(),
        name: name.into(),
        role: role.into(),
        issued_at: format!("{issued}T09:00:00.000Z"),
        not_after: format!("{}T09:00:00.000Z", issued.replacen("2025", "2026", 1)),
        revoked_at: String::new(),
    }
}

impl Default for World {
    fn default() -> Self {
        let pools = vec![
            Pool {
                name: "default".into(),
                node: NODE.into(),
                r#type: "dir".into(),
                source: format!("{DATA_DIR}/pools/default"),
                total_bytes: 100 * GIB,
                free_bytes: 63 * GIB,
            },
            Pool {
                name: "fast".into(),
                node: NODE.into(),
                r#type: "lvm".into(),
                source: "vg0/thin".into(),
                total_bytes: 2048 * GIB,
                free_bytes: 1536 * GIB,
            },
        ];
        let web_spec = VmSpec {
            vcpu: 2,
            memory_mb: 512,
            image: "debian-12".into(),
            disk_size_gb: 10,
            disks: vec![DiskRequest {
                pool: "fast".into(),
                size_gb: 1,
                volume: String::new(),
            }],
            nics: vec![NicRequest {
                network: "default".into(),
                mac: WEB_MAC.into(),
                model: "virtio".into(),
            }],
            ..Default::default()
        };
        let web = Vm {
            id: WEB_ID.into(),
            name: "web".into(),
            status: VmStatus::Running as i32,
            node: NODE.into(),
            memory_mb: 512,
            vcpu: 2,
            storage_gb: 11,
            created_at: "2025-01-10T12:00:00.000Z".into(),
            updated_at: "2025-01-10T12:00:00.351Z".into(),
            pid: 4242,
            timeline: Some(boot_timeline("2025-01-10T12:00:00.000Z")),
            disks: vec![
                VmDisk {
                    volume: "web-root".into(),
                    pool: "default".into(),
                    device: "vda".into(),
                    size_bytes: 10 * GIB,
                    format: "qcow2".into(),
                    image: "debian-12".into(),
                },
                VmDisk {
                    volume: "web-disk1".into(),
                    pool: "fast".into(),
                    device: "vdb".into(),
                    size_bytes: GIB,
                    format: "raw".into(),
                    image: String::new(),
                },
            ],
            nics: vec![VmNic {
                id: "net0".into(),
                network: "default".into(),
                mac: WEB_MAC.into(),
                model: "virtio".into(),
                tap: "ktap-4be1f09a3c".into(),
                ip: "10.77.0.23".into(),
            }],
            spec: Some(web_spec),
            ..Default::default()
        };
        let guest = "/var/lib/kcore/images/demo-guest";
        let db = Vm {
            id: DB_ID.into(),
            name: "db".into(),
            status: VmStatus::Stopped as i32,
            status_reason: GUEST_POWERED_OFF.fill(&[]),
            node: NODE.into(),
            memory_mb: 256,
            vcpu: 1,
            created_at: "2025-01-09T08:30:00.000Z".into(),
            updated_at: "2025-01-10T07:12:44.918Z".into(),
            timeline: Some(timeline(
                "2025-01-09T08:30:00.000Z",
                &[
                    ("request_received", 0.0),
                    ("qemu_exec", 5.0),
                    ("qmp_ready", 36.9),
                    ("vcpus_running", 40.2),
                    ("first_console_byte", 410.8),
                    ("guest_ready", 1653.6),
                ],
            )),
            spec: Some(VmSpec {
                vcpu: 1,
                memory_mb: 256,
                kernel: format!("{guest}/vmlinuz"),
                initrd: format!("{guest}/initrd.img"),
                cmdline: "console=ttyS0 quiet".into(),
                ready_pattern: "KCORE-GUEST-READY".into(),
                cloud_init: Some(CloudInit {
                    user_data: "#cloud-config\npackages: [postgresql]\n".into(),
                    meta_data: String::new(),
                    network_config: "version: 2\nethernets: {}\n".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let volume = |name: &str, pool: &str, vm: &str, virtual_size, actual_size| Volume {
            name: name.into(),
            node: NODE.into(),
            pool: pool.into(),
            vm: vm.into(),
            format: if pool == "fast" { "raw" } else { "qcow2" }.into(),
            virtual_size,
            actual_size,
            backing: if name == "web-root" { "debian-12" } else { "" }.into(),
            path: if pool == "fast" {
                format!("/dev/vg0/kcore-{name}")
            } else {
                format!("{DATA_DIR}/pools/{pool}/volumes/{name}.qcow2")
            },
        };
        let created = "2025-01-10T12:00:00.002Z";
        let events = vec![
            event(
                1,
                "2025-01-10T11:59:58.120Z",
                "node.ready",
                None,
                VmStatus::Unspecified,
                &HEARTBEAT_RECEIVED.fill(&[]),
            ),
            event(
                2,
                created,
                "vm.created",
                Some(&web),
                VmStatus::Creating,
                &VM_CREATED.fill(&[NODE, &LOCAL_CALLER.fill(&["1000", "alice"])]),
            ),
            event(3, created, "vm.status", Some(&web), VmStatus::Stopped, ""),
            event(
                4,
                "2025-01-10T12:00:00.041Z",
                "vm.status",
                Some(&web),
                VmStatus::Running,
                "",
            ),
            event(
                5,
                "2025-01-10T07:12:44.918Z",
                "vm.status",
                Some(&db),
                VmStatus::Stopped,
                &GUEST_POWERED_OFF.fill(&[]),
            ),
        ];
        World {
            templates: templates::default_templates(),
            nodes: vec![Node {
                name: NODE.into(),
                // An all-in-one controller reaches its node on the node's unix socket.
                address: "unix:///run/kcore/node.sock".into(),
                state: NodeState::Ready as i32,
                cpus: 8,
                memory_mb: 16384,
                vm_count: 2,
                allocated_vcpu: 2,
                allocated_memory_mb: 512,
                version: "0.1.0".into(),
                last_heartbeat: "2025-01-10T12:05:00.000Z".into(),
                qemu_version: "7.2.15".into(),
                accel: "kvm".into(),
                hostname: "host1".into(),
                cordoned: false,
                pools: pools.clone(),
                networks: vec!["default".into()],
            }],
            volumes: vec![
                volume("web-root", "default", "web", 10 * GIB, 300 * MIB),
                volume("old-data", "fast", "", 20 * GIB, 20 * GIB),
                volume("web-disk1", "fast", "web", GIB, GIB),
            ],
            images: vec![
                // Placed by hand, without its .sha256 file: no checksum.
                Image {
                    name: "alpine".into(),
                    node: NODE.into(),
                    pool: "default".into(),
                    format: "raw".into(),
                    virtual_size: 128 * MIB,
                    actual_size: 128 * MIB,
                    sha256: String::new(),
                },
                Image {
                    name: "debian-12".into(),
                    node: NODE.into(),
                    pool: "default".into(),
                    format: "qcow2".into(),
                    virtual_size: 2 * GIB,
                    actual_size: 700 * MIB,
                    sha256: SHA.into(),
                },
            ],
            networks: vec![Network {
                name: "default".into(),
                mode: NetworkMode::Nat as i32,
                subnet: "10.77.0.0/24".into(),
                gateway: "10.77.0.1".into(),
                bridge: "kbr-default".into(),
                uplink: String::new(),
                created_at: "2025-01-10T11:58:00.000Z".into(),
                nodes: vec![NetworkOnNode {
                    node: NODE.into(),
                    ready: true,
                    message: String::new(),
                    dnsmasq_pid: 1717,
                    leases: 1,
                }],
                vm_count: 1,
            }],
            pools,
            vms: vec![web, db],
            events,
            certs: vec![
                cert("5a1c93e07b", "admin", "admin", "2025-01-10"),
                cert("3f08d2c4e1", "controller", "controller", "2025-01-10"),
                cert("7be41a0c95", "ops", "viewer", "2025-01-10"),
            ],
        }
    }
}

impl World {
    /// The node stopped answering: NOT_READY, and its VMs UNKNOWN
    /// (kcored/src/controller/nodes.rs, follow_node and mark_unknown).
    pub fn node_lost(&mut self) {
        for node in &mut self.nodes {
            node.state = NodeState::NotReady as i32;
        }
        for vm in &mut self.vms {
            vm.status = VmStatus::Unknown as i32;
            vm.status_reason = NODE_UNREACHABLE.fill(&[&vm.node]);
        }
    }

    /// A VM in another state (its reason cleared, as the node's news would clear it).
    pub fn set_status(&mut self, name: &str, status: VmStatus) {
        let vm = self
            .vms
            .iter_mut()
            .find(|v| v.name == name)
            .expect("a VM of the world");
        vm.status = status as i32;
        vm.status_reason.clear();
    }

    pub fn vm(&self, name: &str) -> Result<&Vm, Status> {
        self.vms
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| Status::not_found(super::texts::NO_VM.fill(&[name])))
    }

    pub fn node(&self, name: &str) -> Result<&Node, Status> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| Status::not_found(super::texts::NO_NODE.fill(&[name])))
    }

    /// A node the controller may call (kcored/src/controller/nodes.rs, Nodes::client).
    pub fn ready_node(&self, name: &str) -> Result<&Node, Status> {
        let node = self.node(name)?;
        if node.state != NodeState::Ready as i32 {
            return Err(Status::unavailable(
                super::texts::NODE_NOT_READY.fill(&[name]),
            ));
        }
        Ok(node)
    }
}

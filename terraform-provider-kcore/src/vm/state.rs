//! `kcore_vm`'s Terraform state, and the conversions from and to the API's VM.

use kcore_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tf_provider::value::Value;

use crate::schema::{bool_like, list, num_like, s, str_like, u32_of};

/// A `disk { pool, size_gb }` block: an empty data disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskBlock {
    pub pool: Value<String>,
    pub size_gb: Value<i64>,
}

/// A `nic { network, mac, model }` block; `ipv4` and `tap` are computed (and `mac`,
/// `model` when left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NicBlock {
    pub network: Value<String>,
    pub mac: Value<String>,
    pub model: Value<String>,
    pub ipv4: Value<String>,
    pub tap: Value<String>,
}

/// A `cloud_init { user_data, meta_data, network_config }` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CloudInitBlock {
    pub user_data: Value<String>,
    pub meta_data: Value<String>,
    pub network_config: Value<String>,
}

/// A `wait_for { ready, ipv4, timeout }` block: what create, start and update wait for
/// after the VM runs. Kept in the state only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WaitFor {
    pub ready: Value<bool>,
    pub ipv4: Value<bool>,
    pub timeout: Value<String>,
}

/// A `timeouts { create, update, delete }` block: bounds on each operation as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeouts {
    pub create: Value<String>,
    pub update: Value<String>,
    pub delete: Value<String>,
}

/// The whole `kcore_vm`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VmState {
    pub id: Value<String>,
    pub name: Value<String>,
    pub node: Value<String>,
    pub vcpu: Value<i64>,
    pub memory_mb: Value<i64>,
    pub image: Value<String>,
    pub disk_size_gb: Value<i64>,
    pub kernel: Value<String>,
    pub initrd: Value<String>,
    pub cmdline: Value<String>,
    pub ready_pattern: Value<String>,
    pub machine: Value<String>,
    pub profile: Value<String>,
    pub template: Value<String>,
    pub restart: Value<String>,
    pub autostart: Value<bool>,
    pub running: Value<bool>,
    pub status: Value<String>,
    pub pid: Value<i64>,
    pub ipv4: Value<String>,
    pub disk: Value<Vec<DiskBlock>>,
    pub nic: Value<Vec<NicBlock>>,
    pub cloud_init: Value<Vec<CloudInitBlock>>,
    pub wait_for: Value<Vec<WaitFor>>,
    pub timeouts: Value<Vec<Timeouts>>,
}

impl VmState {
    /// What to address the VM by: its id once known, else its name.
    pub fn key(&self) -> String {
        match &self.id {
            Value::Value(id) if !id.is_empty() => id.clone(),
            _ => s(&self.name),
        }
    }

    /// Whether the VM should run (`running`, true unless set to false).
    pub fn want_running(&self) -> bool {
        !matches!(self.running, Value::Value(false))
    }
}

pub const MACHINES: &[(&str, pb::MachineType)] = &[
    ("q35", pb::MachineType::Q35),
    ("pc", pb::MachineType::Pc),
    ("microvm", pb::MachineType::Microvm),
];

pub const PROFILES: &[(&str, pb::Profile)] = &[
    ("standard", pb::Profile::Standard),
    ("fast", pb::Profile::Fast),
];

pub const RESTARTS: &[(&str, pb::RestartPolicy)] = &[
    ("never", pb::RestartPolicy::Never),
    ("on-failure", pb::RestartPolicy::OnFailure),
    ("always", pb::RestartPolicy::Always),
];

/// The names of an enum table, for messages ("standard, fast").
pub fn names<T>(table: &[(&str, T)]) -> String {
    table.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

pub fn one_of<T: Copy>(
    v: &Value<String>,
    table: &[(&str, T)],
    what: &str,
) -> Result<Option<T>, String> {
    match v {
        Value::Value(name) if !name.is_empty() => table
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| Some(*t))
            .ok_or_else(|| format!("{what} {name:?} is not one of {}", names(table))),
        _ => Ok(None),
    }
}

/// The cloud-init block as the API's message (None when there is no block).
pub fn cloud_init_pb(state: &VmState) -> Option<pb::CloudInit> {
    list(&state.cloud_init).first().map(|c| pb::CloudInit {
        user_data: s(&c.user_data),
        meta_data: s(&c.meta_data),
        network_config: s(&c.network_config),
    })
}

/// The CreateVM request a planned state asks for (local checks of enum names and
/// numbers only: the server judges the rest).
pub fn create_request(state: &VmState) -> Result<pb::CreateVmRequest, String> {
    let machine = one_of(&state.machine, MACHINES, "machine")?;
    let restart = one_of(&state.restart, RESTARTS, "restart")?;
    let profile = one_of(&state.profile, PROFILES, "profile")?;
    let mut disks = Vec::new();
    for (i, d) in list(&state.disk).iter().enumerate() {
        disks.push(pb::DiskRequest {
            pool: s(&d.pool),
            size_gb: u32_of(&d.size_gb, &format!("disk[{i}].size_gb"))?,
            volume: String::new(),
        });
    }
    let nics = list(&state.nic)
        .iter()
        .map(|n| pb::NicRequest {
            network: s(&n.network),
            mac: s(&n.mac),
            model: s(&n.model),
        })
        .collect();
    let spec = pb::VmSpec {
        vcpu: u32_of(&state.vcpu, "vcpu")?,
        memory_mb: u32_of(&state.memory_mb, "memory_mb")?,
        machine: machine.map_or(pb::MachineType::Unspecified, |m| m) as i32,
        profile: profile.map_or(pb::Profile::Unspecified, |p| p) as i32,
        kernel: s(&state.kernel),
        initrd: s(&state.initrd),
        cmdline: s(&state.cmdline),
        ready_pattern: s(&state.ready_pattern),
        restart_policy: restart.map_or(pb::RestartPolicy::Unspecified, |r| r) as i32,
        image: s(&state.image),
        disk_size_gb: u32_of(&state.disk_size_gb, "disk_size_gb")?,
        disks,
        firmware: pb::Firmware::Unspecified as i32,
        root_pool: String::new(),
        template: s(&state.template),
        nics,
        autostart: matches!(state.autostart, Value::Value(true)),
        cloud_init: cloud_init_pb(state),
    };
    Ok(pb::CreateVmRequest {
        name: s(&state.name),
        spec: Some(spec),
        node: s(&state.node),
        no_start: !state.want_running(),
        no_wait: false,
    })
}

/// An enum the API answers with: the prior value when it means the same, null when it
/// is the default and the prior was null.
fn enum_like(server: &str, default: &str, prior: &Value<String>) -> Value<String> {
    let effective = if server.is_empty() { default } else { server };
    match prior {
        Value::Value(p) if p == effective => prior.clone(),
        Value::Null if effective == default => Value::Null,
        _ => Value::Value(effective.to_string()),
    }
}

/// A profile's name (unspecified: standard, the API's default).
pub fn profile_name(p: i32) -> &'static str {
    pb::Profile::try_from(p)
        .ok()
        .and_then(|p| PROFILES.iter().find(|(_, t)| *t == p))
        .map_or("standard", |(n, _)| n)
}

/// A machine type's name (unspecified: q35, the API's default).
pub fn machine_name(m: i32) -> &'static str {
    pb::MachineType::try_from(m)
        .ok()
        .and_then(|m| MACHINES.iter().find(|(_, t)| *t == m))
        .map_or("q35", |(n, _)| n)
}

/// The status name without its prefix (RUNNING, STOPPED, ...).
pub fn status_name(status: i32) -> String {
    pb::VmStatus::try_from(status)
        .unwrap_or(pb::VmStatus::Unspecified)
        .as_str_name()
        .trim_start_matches("VM_STATUS_")
        .to_string()
}

/// Whether a status counts as running for `running`.
pub fn is_running(status: i32) -> bool {
    matches!(
        pb::VmStatus::try_from(status),
        Ok(pb::VmStatus::Running | pb::VmStatus::Starting | pb::VmStatus::Paused)
    )
}

/// The state of `vm` as the API reports it, keeping what only Terraform knows
/// (`wait_for`, `timeouts`) and the user's way of leaving defaults out from `prior`.
pub fn from_vm(vm: &pb::Vm, prior: &VmState) -> VmState {
    let spec = vm.spec.clone().unwrap_or_default();
    let machine = pb::MachineType::try_from(spec.machine)
        .ok()
        .and_then(|m| MACHINES.iter().find(|(_, t)| *t == m))
        .map_or("", |(n, _)| n);
    // Unspecified is standard: the state says so (the attribute is computed).
    let profile = profile_name(spec.profile);
    let restart = pb::RestartPolicy::try_from(spec.restart_policy)
        .ok()
        .and_then(|r| RESTARTS.iter().find(|(_, t)| *t == r))
        .map_or("", |(n, _)| n);
    let prior_disks = list(&prior.disk);
    let disk = spec
        .disks
        .iter()
        .filter(|d| d.volume.is_empty())
        .enumerate()
        .map(|(i, d)| {
            let p = prior_disks.get(i).cloned().unwrap_or_default();
            DiskBlock {
                pool: enum_like(&d.pool, "default", &p.pool),
                size_gb: Value::Value(i64::from(d.size_gb)),
            }
        })
        .collect();
    let prior_nics = list(&prior.nic);
    let nic = spec
        .nics
        .iter()
        .enumerate()
        .map(|(i, requested)| {
            let made = vm.nics.get(i);
            let p = prior_nics.get(i).cloned().unwrap_or_default();
            let pick = |made: Option<&String>, asked: &str| -> String {
                made.filter(|m| !m.is_empty())
                    .cloned()
                    .unwrap_or_else(|| asked.to_string())
            };
            NicBlock {
                network: Value::Value(requested.network.clone()),
                mac: Value::Value(pick(made.map(|m| &m.mac), &requested.mac)),
                model: Value::Value(pick(made.map(|m| &m.model), &requested.model)),
                ipv4: Value::Value(made.map(|m| m.ip.clone()).unwrap_or_default()),
                tap: Value::Value(made.map(|m| m.tap.clone()).unwrap_or_default()),
            }
            .keep_spelling_of(&p)
        })
        .collect();
    let cloud_init = match &spec.cloud_init {
        Some(c)
            if !(c.user_data.is_empty()
                && c.meta_data.is_empty()
                && c.network_config.is_empty()) =>
        {
            let p = list(&prior.cloud_init).first().cloned().unwrap_or_default();
            vec![CloudInitBlock {
                user_data: str_like(&c.user_data, &p.user_data),
                meta_data: str_like(&c.meta_data, &p.meta_data),
                network_config: str_like(&c.network_config, &p.network_config),
            }]
        }
        _ => Vec::new(),
    };
    let running = match pb::VmStatus::try_from(vm.status) {
        // Not known now: keep what Terraform last knew.
        Ok(pb::VmStatus::Unknown) => match prior.running {
            Value::Value(r) => Value::Value(r),
            _ => Value::Value(true),
        },
        _ => Value::Value(is_running(vm.status)),
    };
    VmState {
        id: Value::Value(vm.id.clone()),
        name: Value::Value(vm.name.clone()),
        node: Value::Value(vm.node.clone()),
        vcpu: Value::Value(i64::from(vm.vcpu)),
        memory_mb: Value::Value(i64::from(vm.memory_mb)),
        image: str_like(&spec.image, &prior.image),
        disk_size_gb: num_like(spec.disk_size_gb, &prior.disk_size_gb),
        kernel: str_like(&spec.kernel, &prior.kernel),
        initrd: str_like(&spec.initrd, &prior.initrd),
        cmdline: str_like(&spec.cmdline, &prior.cmdline),
        ready_pattern: str_like(&spec.ready_pattern, &prior.ready_pattern),
        machine: enum_like(machine, "q35", &prior.machine),
        profile: Value::Value(profile.to_string()),
        template: str_like(&spec.template, &prior.template),
        restart: enum_like(restart, "never", &prior.restart),
        autostart: bool_like(spec.autostart, &prior.autostart),
        running,
        status: Value::Value(status_name(vm.status)),
        pid: Value::Value(i64::from(vm.pid)),
        ipv4: Value::Value(vm.nics.first().map(|n| n.ip.clone()).unwrap_or_default()),
        disk: Value::Value(disk),
        nic: Value::Value(nic),
        cloud_init: Value::Value(cloud_init),
        wait_for: Value::Value(list(&prior.wait_for)),
        timeouts: Value::Value(list(&prior.timeouts)),
    }
}

impl NicBlock {
    /// The MAC and model as the user wrote them, when the server reports the same ones
    /// spelled otherwise (upper case; an empty model is virtio).
    fn keep_spelling_of(mut self, prior: &NicBlock) -> NicBlock {
        if let (Value::Value(p), Value::Value(now)) = (&prior.model, &self.model)
            && (p == now || (p.is_empty() && now == "virtio"))
        {
            self.model = prior.model.clone();
        }
        if let (Value::Value(p), Value::Value(now)) = (&prior.mac, &self.mac)
            && p.eq_ignore_ascii_case(now)
        {
            self.mac = prior.mac.clone();
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> pb::Vm {
        pb::Vm {
            id: "0f0e".into(),
            name: "web".into(),
            status: pb::VmStatus::Running as i32,
            node: "node1".into(),
            memory_mb: 256,
            vcpu: 2,
            pid: 42,
            spec: Some(pb::VmSpec {
                vcpu: 2,
                memory_mb: 256,
                kernel: "/k".into(),
                restart_policy: pb::RestartPolicy::Never as i32,
                machine: pb::MachineType::Unspecified as i32,
                disks: vec![pb::DiskRequest {
                    pool: "default".into(),
                    size_gb: 1,
                    volume: String::new(),
                }],
                nics: vec![pb::NicRequest {
                    network: "lan".into(),
                    mac: String::new(),
                    model: String::new(),
                }],
                ..Default::default()
            }),
            nics: vec![pb::VmNic {
                id: "net0".into(),
                network: "lan".into(),
                mac: "52:54:00:00:00:01".into(),
                model: "virtio".into(),
                tap: "ktap-1".into(),
                ip: "10.0.0.5".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn an_imported_vm_leaves_defaults_null() {
        let st = from_vm(&vm(), &VmState::default());
        assert_eq!(st.machine, Value::Null);
        assert_eq!(st.restart, Value::Null);
        assert_eq!(st.image, Value::Null);
        assert_eq!(st.template, Value::Null);
        // Computed: the API's unspecified profile is standard.
        assert_eq!(st.profile, Value::Value("standard".to_string()));
        assert_eq!(st.kernel, Value::Value("/k".to_string()));
        assert_eq!(st.running, Value::Value(true));
        assert_eq!(st.status, Value::Value("RUNNING".to_string()));
        assert_eq!(st.ipv4, Value::Value("10.0.0.5".to_string()));
        let nic = &list(&st.nic)[0];
        assert_eq!(nic.mac, Value::Value("52:54:00:00:00:01".to_string()));
        assert_eq!(nic.tap, Value::Value("ktap-1".to_string()));
        assert_eq!(list(&st.disk)[0].size_gb, Value::Value(1));
    }

    #[test]
    fn what_the_user_wrote_is_kept_when_it_means_the_same() {
        let prior = VmState {
            machine: Value::Value("q35".into()),
            restart: Value::Value("never".into()),
            wait_for: Value::Value(vec![WaitFor {
                ready: Value::Value(true),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let st = from_vm(&vm(), &prior);
        assert_eq!(st.machine, Value::Value("q35".to_string()));
        assert_eq!(st.restart, Value::Value("never".to_string()));
        assert_eq!(st.wait_for, prior.wait_for);
        let mut stopped = vm();
        stopped.status = pb::VmStatus::Stopped as i32;
        assert_eq!(from_vm(&stopped, &prior).running, Value::Value(false));
    }

    #[test]
    fn the_create_request_follows_the_state() {
        let st = VmState {
            name: Value::Value("web".into()),
            vcpu: Value::Value(1),
            memory_mb: Value::Value(128),
            kernel: Value::Value("/k".into()),
            machine: Value::Value("microvm".into()),
            running: Value::Value(false),
            nic: Value::Value(vec![NicBlock {
                network: Value::Value("lan".into()),
                mac: Value::Unknown,
                ..Default::default()
            }]),
            cloud_init: Value::Value(vec![CloudInitBlock {
                user_data: Value::Value("#cloud-config\n".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let r = create_request(&st).expect("valid");
        assert!(r.no_start);
        let spec = r.spec.expect("spec");
        assert_eq!(spec.machine, pb::MachineType::Microvm as i32);
        assert_eq!(
            spec.nics[0].mac, "",
            "an unknown MAC is the server's to pick"
        );
        assert_eq!(
            spec.cloud_init.expect("cloud-init").user_data,
            "#cloud-config\n"
        );
        assert_eq!(spec.profile, pb::Profile::Unspecified as i32);
        let fast = VmState {
            profile: Value::Value("fast".into()),
            template: Value::Value("tpl".into()),
            ..st.clone()
        };
        let spec = create_request(&fast).expect("valid").spec.expect("spec");
        assert_eq!(spec.profile, pb::Profile::Fast as i32);
        assert_eq!(spec.template, "tpl");
        let bad = VmState {
            restart: Value::Value("sometimes".into()),
            ..st
        };
        assert_eq!(
            create_request(&bad).expect_err("bad restart"),
            "restart \"sometimes\" is not one of never, on-failure, always"
        );
    }

    /// A clone as GetVM answers for it: the template named, its vCPUs and memory (the
    /// controller fills them from the template), no kernel or disks of its own; a fast VM
    /// with the machine its profile picked.
    #[test]
    fn clones_and_fast_vms_read_back_as_the_server_settled_them() {
        let mut clone = vm();
        clone.spec = Some(pb::VmSpec {
            vcpu: 1,
            memory_mb: 128,
            template: "tpl".into(),
            ..Default::default()
        });
        clone.vcpu = 1;
        clone.memory_mb = 128;
        let planned = VmState {
            template: Value::Value("tpl".into()),
            vcpu: Value::Unknown,
            memory_mb: Value::Unknown,
            profile: Value::Unknown,
            ..Default::default()
        };
        let st = from_vm(&clone, &planned);
        assert_eq!(st.template, Value::Value("tpl".to_string()));
        assert_eq!(
            (st.vcpu, st.memory_mb),
            (Value::Value(1), Value::Value(128))
        );
        assert_eq!(st.kernel, Value::Null);
        assert_eq!(st.machine, Value::Null);

        let mut fast = vm();
        if let Some(spec) = fast.spec.as_mut() {
            spec.profile = pb::Profile::Fast as i32;
            spec.machine = pb::MachineType::Microvm as i32;
        }
        let planned = VmState {
            profile: Value::Value("fast".into()),
            machine: Value::Unknown,
            ..Default::default()
        };
        let st = from_vm(&fast, &planned);
        assert_eq!(st.profile, Value::Value("fast".to_string()));
        assert_eq!(st.machine, Value::Value("microvm".to_string()));
    }
}

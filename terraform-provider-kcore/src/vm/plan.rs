//! What a change of `kcore_vm` means: which attributes replace the VM, and which the API
//! changes in place (UpdateVM, StartVM, StopVM). Pure functions, unit-tested.

use tf_provider::value::Value;

use super::state::{MACHINES, NicBlock, PROFILES, RESTARTS, VmState, one_of};
use crate::schema::list;

/// Whether two optional strings mean the same (null and "" alike).
fn same_str(a: &Value<String>, b: &Value<String>) -> bool {
    let v = |x: &Value<String>| match x {
        Value::Value(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        Value::Unknown => None,
    };
    match (v(a), v(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// Whether two optional numbers mean the same (null and 0 alike).
fn same_num(a: &Value<i64>, b: &Value<i64>) -> bool {
    let v = |x: &Value<i64>| match x {
        Value::Value(n) => Some(*n),
        Value::Null => Some(0),
        Value::Unknown => None,
    };
    match (v(a), v(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn nic_same(prior: &NicBlock, config: &NicBlock) -> bool {
    let model = |v: &Value<String>| match v {
        Value::Value(m) if !m.is_empty() => m.clone(),
        _ => "virtio".to_string(),
    };
    same_str(&prior.network, &config.network)
        && match &config.mac {
            Value::Value(m) => matches!(&prior.mac, Value::Value(p) if p.eq_ignore_ascii_case(m)),
            Value::Null => true,
            Value::Unknown => false,
        }
        && match &config.model {
            Value::Value(_) => model(&prior.model) == model(&config.model),
            Value::Null => true,
            Value::Unknown => false,
        }
}

/// The attributes whose change replaces the VM (the API cannot change them in place):
/// everything but vcpu, memory_mb, cloud_init, autostart and running (and wait_for and
/// timeouts, which are Terraform's alone). UpdateVM has no profile, machine or template,
/// so those replace; `machine` and `profile` are computed, and left out they keep what
/// the server settled.
pub fn replace_paths(prior: &VmState, config: &VmState) -> Vec<&'static str> {
    let mut out = Vec::new();
    let strings = [
        ("name", &prior.name, &config.name),
        ("image", &prior.image, &config.image),
        ("kernel", &prior.kernel, &config.kernel),
        ("initrd", &prior.initrd, &config.initrd),
        ("cmdline", &prior.cmdline, &config.cmdline),
        ("ready_pattern", &prior.ready_pattern, &config.ready_pattern),
        ("template", &prior.template, &config.template),
    ];
    for (name, p, c) in strings {
        if !same_str(p, c) {
            out.push(name);
        }
    }
    let defaulted = [
        ("machine", &prior.machine, &config.machine, "q35"),
        ("profile", &prior.profile, &config.profile, "standard"),
        ("restart", &prior.restart, &config.restart, "never"),
    ];
    for (name, p, c, default) in defaulted {
        if name != "restart" && c.is_null() {
            continue; // computed: left out, it stays as the server settled it
        }
        let d = |v: &Value<String>| match v {
            Value::Value(s) if !s.is_empty() => Value::Value(s.clone()),
            Value::Unknown => Value::Unknown,
            _ => Value::Value(default.to_string()),
        };
        if !same_str(&d(p), &d(c)) {
            out.push(name);
        }
    }
    if !same_num(&prior.disk_size_gb, &config.disk_size_gb) {
        out.push("disk_size_gb");
    }
    if config.node.is_value() && !same_str(&prior.node, &config.node) {
        out.push("node");
    }
    let (pd, cd) = (list(&prior.disk), list(&config.disk));
    if pd.len() != cd.len()
        || pd.iter().zip(&cd).any(|(p, c)| {
            let pool = |v: &Value<String>| match v {
                Value::Value(s) if !s.is_empty() => Value::Value(s.clone()),
                Value::Unknown => Value::Unknown,
                _ => Value::Value("default".to_string()),
            };
            !same_str(&pool(&p.pool), &pool(&c.pool)) || !same_num(&p.size_gb, &c.size_gb)
        })
    {
        out.push("disk");
    }
    let (pn, cn) = (list(&prior.nic), list(&config.nic));
    if pn.len() != cn.len() || pn.iter().zip(&cn).any(|(p, c)| !nic_same(p, c)) {
        out.push("nic");
    }
    out
}

/// What is wrong with a configuration before any call: enum values (`machine`, `profile`,
/// `restart`) that are none of their names, and vcpu or memory_mb left out of a VM that
/// is no clone. (attribute, message) pairs.
pub fn config_errors(config: &VmState) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let checks = [
        (
            "machine",
            one_of(&config.machine, MACHINES, "machine").err(),
        ),
        (
            "profile",
            one_of(&config.profile, PROFILES, "profile").err(),
        ),
        (
            "restart",
            one_of(&config.restart, RESTARTS, "restart").err(),
        ),
    ];
    for (path, err) in checks {
        if let Some(e) = err {
            out.push((path, e));
        }
    }
    if config.template.is_null() {
        for (path, v) in [("vcpu", &config.vcpu), ("memory_mb", &config.memory_mb)] {
            if v.is_null() {
                out.push((
                    path,
                    format!("{path} is required (only a clone, with template, may leave it out)"),
                ));
            }
        }
    }
    out
}

/// What an in-place update does on the server.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// New vCPU count (the VM must be stopped for it).
    pub vcpu: Option<u32>,
    /// New memory (the VM must be stopped for it).
    pub memory_mb: Option<u32>,
    /// New cloud-init data (all empty: remove the seed).
    pub cloud_init: bool,
    /// New autostart.
    pub autostart: Option<bool>,
    /// The VM should run afterwards.
    pub running: bool,
    /// `running` changed.
    pub running_changed: bool,
}

impl Changes {
    /// Whether the VM must be stopped for the update (and started again if it ran).
    pub fn needs_stop(&self) -> bool {
        self.vcpu.is_some() || self.memory_mb.is_some()
    }

    /// Whether UpdateVM is called.
    pub fn needs_update_vm(&self) -> bool {
        self.needs_stop() || self.cloud_init || self.autostart.is_some()
    }

    /// Whether anything is asked of the server.
    pub fn touches_server(&self) -> bool {
        self.needs_update_vm() || self.running_changed
    }
}

/// The in-place changes from `prior` to `planned`.
pub fn changes(prior: &VmState, planned: &VmState) -> Changes {
    let num = |p: &Value<i64>, n: &Value<i64>| match n {
        Value::Value(v) if !same_num(p, n) => u32::try_from(*v).ok(),
        _ => None,
    };
    let autostart = |v: &Value<bool>| matches!(v, Value::Value(true));
    Changes {
        vcpu: num(&prior.vcpu, &planned.vcpu),
        memory_mb: num(&prior.memory_mb, &planned.memory_mb),
        cloud_init: list(&prior.cloud_init) != list(&planned.cloud_init),
        autostart: (autostart(&prior.autostart) != autostart(&planned.autostart))
            .then(|| autostart(&planned.autostart)),
        running: planned.want_running(),
        running_changed: prior.want_running() != planned.want_running(),
    }
}

/// Marks what the server reports anew after a change as unknown in a plan.
pub fn unknown_after_change(planned: &mut VmState) {
    planned.status = Value::Unknown;
    planned.pid = Value::Unknown;
    planned.ipv4 = Value::Unknown;
    if let Value::Value(nics) = &mut planned.nic {
        for n in nics {
            n.ipv4 = Value::Unknown;
            n.tap = Value::Unknown;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::{CloudInitBlock, DiskBlock};
    use super::*;

    fn base() -> VmState {
        VmState {
            name: Value::Value("web".into()),
            vcpu: Value::Value(1),
            memory_mb: Value::Value(128),
            kernel: Value::Value("/k".into()),
            running: Value::Value(true),
            machine: Value::Null,
            nic: Value::Value(vec![NicBlock {
                network: Value::Value("lan".into()),
                mac: Value::Value("52:54:00:00:00:01".into()),
                model: Value::Value("virtio".into()),
                ..Default::default()
            }]),
            disk: Value::Value(vec![DiskBlock {
                pool: Value::Null,
                size_gb: Value::Value(1),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn memory_vcpu_cloud_init_and_running_are_in_place() {
        let prior = base();
        let mut next = base();
        next.memory_mb = Value::Value(256);
        next.cloud_init = Value::Value(vec![CloudInitBlock {
            user_data: Value::Value("#cloud-config\n".into()),
            ..Default::default()
        }]);
        assert!(replace_paths(&prior, &next).is_empty());
        let c = changes(&prior, &next);
        assert_eq!(c.memory_mb, Some(256));
        assert!(c.needs_stop() && c.cloud_init && c.running && !c.running_changed);

        let mut stopped = base();
        stopped.running = Value::Value(false);
        let c = changes(&stopped, &base());
        assert!(c.running_changed && c.running && !c.needs_update_vm());
        assert!(!changes(&base(), &base()).touches_server());
    }

    #[test]
    fn other_spec_changes_replace() {
        let prior = base();
        let mut next = base();
        next.kernel = Value::Value("/other".into());
        next.machine = Value::Value("pc".into());
        next.nic = Value::Value(vec![NicBlock {
            network: Value::Value("other".into()),
            ..Default::default()
        }]);
        next.disk = Value::Value(vec![]);
        assert_eq!(
            replace_paths(&prior, &next),
            ["kernel", "machine", "disk", "nic"]
        );
    }

    #[test]
    fn profile_and_template_replace_and_left_out_computed_ones_do_not() {
        let mut prior = base();
        prior.profile = Value::Value("fast".into());
        prior.machine = Value::Value("microvm".into());
        // Left out: the server's pick stays.
        let mut next = prior.clone();
        next.profile = Value::Null;
        next.machine = Value::Null;
        assert!(replace_paths(&prior, &next).is_empty());
        next.profile = Value::Value("standard".into());
        next.template = Value::Value("tpl".into());
        assert_eq!(replace_paths(&prior, &next), ["template", "profile"]);
    }

    #[test]
    fn bad_enum_values_and_missing_sizes_are_named() {
        let mut config = base();
        config.profile = Value::Value("turbo".into());
        config.vcpu = Value::Null;
        assert_eq!(
            config_errors(&config),
            [
                (
                    "profile",
                    "profile \"turbo\" is not one of standard, fast".to_string()
                ),
                (
                    "vcpu",
                    "vcpu is required (only a clone, with template, may leave it out)".to_string()
                ),
            ]
        );
        // A clone takes its template's; an unknown value is judged at apply.
        config.template = Value::Value("tpl".into());
        config.profile = Value::Unknown;
        assert!(config_errors(&config).is_empty());
    }

    #[test]
    fn left_out_and_default_values_do_not_replace() {
        let prior = base();
        let mut next = base();
        next.machine = Value::Value("q35".into());
        next.disk = Value::Value(vec![DiskBlock {
            pool: Value::Value("default".into()),
            size_gb: Value::Value(1),
        }]);
        // A NIC whose MAC and model were left out keeps the server's.
        next.nic = Value::Value(vec![NicBlock {
            network: Value::Value("lan".into()),
            ..Default::default()
        }]);
        assert!(replace_paths(&prior, &next).is_empty());
        next.nic = Value::Value(vec![NicBlock {
            network: Value::Value("lan".into()),
            mac: Value::Value("52:54:00:00:00:02".into()),
            ..Default::default()
        }]);
        assert_eq!(replace_paths(&prior, &next), ["nic"]);
    }
}

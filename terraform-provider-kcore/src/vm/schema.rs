//! `kcore_vm`'s schema: its attributes and blocks, with what changing each does.

use tf_provider::schema::{AttributeType, NestedBlock, Schema};

use crate::schema::{block, computed, optional, optional_computed, required};

pub fn vm_schema() -> Schema {
    let s = AttributeType::String;
    let n = AttributeType::Number;
    let b = AttributeType::Bool;
    let disk = block(
        "An empty data disk",
        vec![
            ("pool", optional(s.clone(), "Pool (default: \"default\")")),
            ("size_gb", required(n.clone(), "Size in GiB")),
        ],
        vec![],
    );
    let nic = block(
        "A network interface, in guest order (eth0, eth1, ...)",
        vec![
            ("network", required(s.clone(), "The kcore network it joins")),
            (
                "mac",
                optional_computed(s.clone(), "52:54:00:xx:xx:xx (default: generated)"),
            ),
            (
                "model",
                optional_computed(s.clone(), "virtio (default) or e1000"),
            ),
            (
                "ipv4",
                computed(s.clone(), "The address the guest leased (nat networks)"),
            ),
            ("tap", computed(s.clone(), "The host tap device")),
        ],
        vec![],
    );
    let cloud_init = block(
        "cloud-init NoCloud data (a seed disk labelled cidata); changes apply at the next boot",
        vec![
            (
                "user_data",
                optional(s.clone(), "user-data (#cloud-config YAML or a #! script)"),
            ),
            (
                "meta_data",
                optional(
                    s.clone(),
                    "meta-data YAML (default: instance-id and local-hostname)",
                ),
            ),
            (
                "network_config",
                optional(s.clone(), "network-config YAML (version 1 or 2)"),
            ),
        ],
        vec![],
    );
    let wait_for = block(
        "What create, start and update wait for once the VM runs",
        vec![
            (
                "ready",
                optional(
                    b.clone(),
                    "The console matched ready_pattern (the boot timeline's guest_ready phase)",
                ),
            ),
            (
                "ipv4",
                optional(b.clone(), "The first NIC has leased an address"),
            ),
            (
                "timeout",
                optional(s.clone(), "How long to wait (default \"5m\")"),
            ),
        ],
        vec![],
    );
    let timeouts = block(
        "Bounds on whole operations",
        vec![
            ("create", optional(s.clone(), "Default \"20m\"")),
            ("update", optional(s.clone(), "Default \"20m\"")),
            ("delete", optional(s.clone(), "Default \"5m\"")),
        ],
        vec![],
    );
    Schema {
        version: 1,
        block: block(
            "A kcore virtual machine",
            vec![
                ("id", computed(s.clone(), "The VM's id (a UUID)")),
                (
                    "name",
                    required(
                        s.clone(),
                        "[a-z0-9][a-z0-9-]{0,62}; replaces the VM when changed",
                    ),
                ),
                (
                    "node",
                    optional_computed(
                        s.clone(),
                        "The node to place it on (default: the scheduler's pick)",
                    ),
                ),
                (
                    "vcpu",
                    optional_computed(
                        n.clone(),
                        "vCPUs, required without template (in place: the VM is stopped, updated and started); a clone's are its template's",
                    ),
                ),
                (
                    "memory_mb",
                    optional_computed(
                        n.clone(),
                        "Memory in MiB, required without template (in place: the VM is stopped, updated and started); a clone's is its template's",
                    ),
                ),
                (
                    "image",
                    optional(s.clone(), "Boot disk cloned from this image"),
                ),
                (
                    "disk_size_gb",
                    optional(n.clone(), "Boot disk size in GiB (default: the image's)"),
                ),
                (
                    "kernel",
                    optional(s.clone(), "Direct kernel boot: kernel path on the node"),
                ),
                (
                    "initrd",
                    optional(s.clone(), "Direct kernel boot: initrd path on the node"),
                ),
                (
                    "cmdline",
                    optional(s.clone(), "Direct kernel boot: kernel command line"),
                ),
                (
                    "ready_pattern",
                    optional(
                        s.clone(),
                        "Regex; the first console line matching it marks the guest ready",
                    ),
                ),
                (
                    "machine",
                    optional_computed(
                        s.clone(),
                        "q35, pc or microvm (default: the profile's; replaces the VM when set and changed)",
                    ),
                ),
                (
                    "profile",
                    optional_computed(
                        s.clone(),
                        "standard (default) or fast (docs/profiles.md); replaces the VM when changed",
                    ),
                ),
                (
                    "template",
                    optional(
                        s.clone(),
                        "Start as a clone of this memory-snapshot template (docs/templates.md); replaces the VM when changed",
                    ),
                ),
                (
                    "restart",
                    optional(s.clone(), "never (default), on-failure or always"),
                ),
                (
                    "autostart",
                    optional(b.clone(), "Start the VM when its node boots (in place)"),
                ),
                (
                    "running",
                    optional_computed(b.clone(), "Whether the VM runs (default true; in place)"),
                ),
                (
                    "status",
                    computed(s.clone(), "RUNNING, STOPPED, ... as last read"),
                ),
                (
                    "pid",
                    computed(n, "The QEMU process id on the node (0 when not running)"),
                ),
                ("ipv4", computed(s, "The first NIC's leased address")),
            ],
            vec![
                ("disk", NestedBlock::List(disk)),
                ("nic", NestedBlock::List(nic)),
                ("cloud_init", NestedBlock::Optional(cloud_init)),
                ("wait_for", NestedBlock::Optional(wait_for)),
                ("timeouts", NestedBlock::Optional(timeouts)),
            ],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<T>(m: &std::collections::HashMap<String, T>) -> Vec<String> {
        let mut v: Vec<String> = m.keys().cloned().collect();
        v.sort();
        v
    }

    /// The attribute names issue 12 lists (scripts depend on them), plus autostart and
    /// timeouts.
    #[test]
    fn the_schema_has_the_issues_names() {
        let block = vm_schema().block;
        assert_eq!(
            names(&block.attributes),
            [
                "autostart",
                "cmdline",
                "disk_size_gb",
                "id",
                "image",
                "initrd",
                "ipv4",
                "kernel",
                "machine",
                "memory_mb",
                "name",
                "node",
                "pid",
                "profile",
                "ready_pattern",
                "restart",
                "running",
                "status",
                "template",
                "vcpu",
            ]
        );
        assert_eq!(
            names(&block.blocks),
            ["cloud_init", "disk", "nic", "timeouts", "wait_for"]
        );
        let inner = |name: &str| match &block.blocks[name] {
            NestedBlock::List(b) | NestedBlock::Optional(b) => names(&b.attributes),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(inner("disk"), ["pool", "size_gb"]);
        assert_eq!(inner("nic"), ["ipv4", "mac", "model", "network", "tap"]);
        assert_eq!(
            inner("cloud_init"),
            ["meta_data", "network_config", "user_data"]
        );
        assert_eq!(inner("wait_for"), ["ipv4", "ready", "timeout"]);
    }
}

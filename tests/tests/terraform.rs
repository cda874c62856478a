//! The Terraform provider end to end: a real Terraform 1.0.3 (scripts/fetch-terraform.sh)
//! installs the freshly built terraform-provider-kcore from a filesystem mirror and drives
//! a real all-in-one daemon in a network namespace of its own:
//! - apply of a nat network, two VMs that wait for their guest's ready line and DHCP lease
//!   (the IPs in the state are the ones the guests leased), a volume and data sources;
//! - a second plan shows no change; a VM deleted with kctl shows as to be created and one
//!   stopped with kctl as to be started, and apply puts both back;
//! - networks and VMs made with kctl are imported by name, and plan shows no change;
//! - destroy leaves no VM, network, volume, tap, bridge or dnsmasq;
//! - bad configuration (unknown network, bad MAC, no boot source) fails with the server's
//!   message and leaves nothing behind;
//! - a memory (and cloud-init) change is planned as an in-place update and applied: the
//!   same VM, restarted, with the new memory, and the guest reads the new seed.
//!
//! `profile`, `template` and `kcore_template` are in terraform_templates.rs.

use std::time::Duration;

use kcore_tests::terraform::{Tf, assert_nothing_left};
use kcore_tests::{Daemon, NetNs, guest};

const BOOT: Duration = Duration::from_secs(120);

/// A test-guest VM on `net` that leases an address on eth0 at boot and is "ready" once it
/// has one.
fn dhcp_vm(name: &str, net: &str, memory: u32) -> String {
    let g = guest();
    format!(
        r#"
resource "kcore_vm" "{name}" {{
  name          = "{name}"
  vcpu          = 1
  memory_mb     = {memory}
  kernel        = "{kernel}"
  initrd        = "{initrd}"
  cmdline       = "console=ttyS0 quiet panic=-1 kcore.echo=off kcore.dhcp=eth0"
  ready_pattern = "KCORE-DHCP-BOUND"
  nic {{
    network = {net}
  }}
  wait_for {{
    ready   = true
    ipv4    = true
    timeout = "4m"
  }}
}}
"#,
        kernel = g.kernel.display(),
        initrd = g.initrd.display(),
    )
}

/// The address the guest printed when its DHCP client bound (`KCORE-DHCP-BOUND eth0 IP`).
fn guest_lease(d: &Daemon, vm: &str) -> String {
    let log = d.console_log(vm);
    log.lines()
        .filter_map(|l| {
            l.trim_end_matches('\r')
                .split("KCORE-DHCP-BOUND eth0 ")
                .nth(1)
        })
        .map(|ip| ip.trim().to_string())
        .next_back()
        .unwrap_or_else(|| panic!("{vm} printed no lease:\n{log}"))
}

#[test]
fn terraform_apply_plan_drift_import_destroy() {
    let ns = NetNs::create();
    let d = Daemon::start_in_netns(&ns);
    let tf = Tf::new(&d.socket());
    let main = format!(
        r#"
resource "kcore_network" "lan" {{
  name   = "tflan"
  mode   = "nat"
  subnet = "10.124.0.0/24"
}}
{a}
{b}
resource "kcore_volume" "data" {{
  name    = "tf-data"
  size_gb = 1
}}

data "kcore_nodes" "all" {{}}
data "kcore_images" "all" {{}}

output "ips" {{
  value = [kcore_vm.a.ipv4, kcore_vm.b.ipv4]
}}
output "node_names" {{
  value = [for n in data.kcore_nodes.all.nodes : n.name]
}}
"#,
        a = dhcp_vm("a", "kcore_network.lan.name", 128),
        b = dhcp_vm("b", "kcore_network.lan.name", 128),
    );
    tf.config(&main);
    tf.init();

    // Apply: the network, both VMs (waiting for ready and a lease), the volume.
    let r = tf.apply().expect_ok("terraform apply");
    assert!(
        r.stdout.contains("Apply complete! Resources: 4 added"),
        "{}",
        r.stdout
    );
    let outputs = tf.run(&["output", "-json"]).expect_ok("output").json();
    assert_eq!(outputs["node_names"]["value"], serde_json::json!(["node1"]));
    let net = tf.resource("kcore_network.lan");
    assert_eq!(net["gateway"], "10.124.0.1", "{net}");
    assert_eq!(net["bridge"], "kbr-tflan", "{net}");
    let mut ips = Vec::new();
    for vm in ["a", "b"] {
        let st = tf.resource(&format!("kcore_vm.{vm}"));
        let ip = st["ipv4"].as_str().expect("ipv4").to_string();
        assert!(ip.starts_with("10.124.0."), "{vm}: {st}");
        assert_eq!(st["nic"][0]["ipv4"], ip.as_str(), "{st}");
        assert_eq!(st["status"], "RUNNING", "{st}");
        assert_eq!(st["running"], true, "{st}");
        // What the guest leased, and what the API says.
        assert_eq!(guest_lease(&d, vm), ip, "{vm}'s lease");
        let v = d.vm(vm);
        assert_eq!(v["nics"][0]["ip"], ip.as_str());
        assert_eq!(st["id"], v["id"]);
        assert_eq!(st["nic"][0]["mac"], v["nics"][0]["mac"]);
        assert_eq!(st["nic"][0]["tap"], v["nics"][0]["tap"]);
        let phases = v["timeline"]["phases"].to_string();
        assert!(phases.contains("guest_ready"), "{phases}");
        ips.push(ip);
    }
    assert_ne!(ips[0], ips[1]);
    assert_eq!(outputs["ips"]["value"], serde_json::json!(ips));
    let vol = tf.resource("kcore_volume.data");
    assert_eq!(vol["pool"], "default", "{vol}");
    assert_eq!(vol["vm"], "", "{vol}");

    // Nothing changed: the second plan is empty.
    let r = tf.plan();
    assert_eq!(r.code, Some(0), "second plan:\n{}{}", r.stdout, r.stderr);

    // Drift: b deleted and a stopped behind Terraform's back.
    d.kctl(&["vm", "delete", "b", "--force"])
        .expect_ok("vm delete");
    d.kctl(&["vm", "stop", "a", "--timeout", "0"])
        .expect_ok("vm stop");
    let r = tf.plan();
    assert_eq!(
        r.code,
        Some(2),
        "plan after drift:\n{}{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stdout.contains("kcore_vm.b will be created"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("kcore_vm.a will be updated in-place"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("running       = false -> true"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("1 to add, 1 to change, 0 to destroy"),
        "{}",
        r.stdout
    );
    tf.apply().expect_ok("apply after drift");
    assert_eq!(d.vm("a")["status"], "VM_STATUS_RUNNING");
    assert_eq!(d.vm("b")["status"], "VM_STATUS_RUNNING");
    let r = tf.plan();
    assert_eq!(
        r.code,
        Some(0),
        "plan after repair:\n{}{}",
        r.stdout,
        r.stderr
    );

    // Import by name: a network and a (defined, stopped) VM made with kctl.
    d.kctl(&[
        "network",
        "create",
        "imported",
        "--mode",
        "nat",
        "--subnet",
        "10.125.0.0/24",
    ])
    .expect_ok("network create");
    let g = guest();
    d.kctl(&[
        "vm",
        "create",
        "imp",
        "--vcpu",
        "1",
        "--memory",
        "96",
        "--kernel",
        g.kernel.to_str().expect("utf8"),
        "--cmdline",
        "console=ttyS0",
        "--nic",
        "imported",
        "--start=false",
    ])
    .expect_ok("vm create");
    let imported = format!(
        r#"{main}
resource "kcore_network" "imported" {{
  name   = "imported"
  mode   = "nat"
  subnet = "10.125.0.0/24"
}}
resource "kcore_vm" "imp" {{
  name      = "imp"
  vcpu      = 1
  memory_mb = 96
  kernel    = "{kernel}"
  cmdline   = "console=ttyS0"
  running   = false
  nic {{
    network = kcore_network.imported.name
  }}
}}
"#,
        kernel = g.kernel.display()
    );
    tf.config(&imported);
    tf.run(&["import", "-no-color", "kcore_network.imported", "imported"])
        .expect_ok("import network");
    tf.run(&["import", "-no-color", "kcore_vm.imp", "imp"])
        .expect_ok("import vm");
    let st = tf.resource("kcore_vm.imp");
    assert_eq!(st["status"], "STOPPED", "{st}");
    assert_eq!(st["memory_mb"], 96, "{st}");
    let r = tf.plan();
    assert_eq!(
        r.code,
        Some(0),
        "plan after import:\n{}{}",
        r.stdout,
        r.stderr
    );

    // Destroy: nothing of it is left.
    let r = tf.run(&["destroy", "-auto-approve", "-no-color"]);
    let r = r.expect_ok("terraform destroy");
    assert!(r.stdout.contains("Resources: 6 destroyed"), "{}", r.stdout);
    assert!(tf.state_list().is_empty());
    assert_nothing_left(&d, &ns);
}

#[test]
fn terraform_bad_configuration_fails_with_the_servers_message_and_leaves_nothing() {
    let ns = NetNs::create();
    let d = Daemon::start_in_netns(&ns);
    let tf = Tf::new(&d.socket());
    tf.config("");
    tf.init();
    let g = guest();
    let kernel = g.kernel.display().to_string();
    let cases = [
        (
            format!(
                "resource \"kcore_vm\" \"bad\" {{\n  name = \"bad-net\"\n  vcpu = 1\n  \
                 memory_mb = 128\n  kernel = \"{kernel}\"\n  nic {{\n    network = \"nosuch\"\n  }}\n}}\n"
            ),
            r#"no network named "nosuch""#,
        ),
        (
            format!(
                "resource \"kcore_network\" \"n\" {{\n  name = \"badmacnet\"\n  mode = \"nat\"\n  \
                 subnet = \"10.126.0.0/24\"\n}}\nresource \"kcore_vm\" \"bad\" {{\n  name = \"bad-mac\"\n  \
                 vcpu = 1\n  memory_mb = 128\n  kernel = \"{kernel}\"\n  nic {{\n    network = \
                 kcore_network.n.name\n    mac = \"zz:54:00:00:00:01\"\n  }}\n}}\n"
            ),
            r#"invalid MAC address "zz:54:00:00:00:01""#,
        ),
        (
            "resource \"kcore_vm\" \"bad\" {\n  name = \"no-boot\"\n  vcpu = 1\n  memory_mb = 128\n}\n"
                .to_string(),
            "no boot source",
        ),
    ];
    for (body, message) in cases {
        tf.config(&body);
        let r = tf.apply();
        assert!(!r.ok, "apply of a bad config succeeded:\n{}", r.stdout);
        assert!(r.stderr.contains("Error: creating VM"), "{}", r.stderr);
        // Terraform wraps long lines: compare with the whitespace squeezed.
        let squeezed = r.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            squeezed.contains(message),
            "{message:?} not in:\n{}",
            r.stderr
        );
        assert!(
            !tf.state_list().iter().any(|a| a.starts_with("kcore_vm.")),
            "a failed VM is in the state: {:?}",
            tf.state_list()
        );
        // What the config did make (the network of the bad MAC) goes with destroy.
        tf.run(&["destroy", "-auto-approve", "-no-color"])
            .expect_ok("destroy");
        assert_nothing_left(&d, &ns);
    }
}

/// The create with cloud_init and the update through UpdateVM, on a running VM: stopped,
/// updated, started again, the guest reading the new seed.
#[test]
fn terraform_memory_and_cloud_init_changes_are_in_place_updates() {
    let ns = NetNs::create();
    let d = Daemon::start_in_netns(&ns);
    let tf = Tf::new(&d.socket());
    let g = guest();
    let vm = |memory: u32, user_data: &str| {
        format!(
            r#"
resource "kcore_vm" "m" {{
  name          = "m"
  vcpu          = 1
  memory_mb     = {memory}
  kernel        = "{kernel}"
  initrd        = "{initrd}"
  cmdline       = "console=ttyS0 quiet panic=-1"
  ready_pattern = "KCORE-GUEST-READY"
  cloud_init {{
    user_data = "{user_data}"
  }}
  wait_for {{
    ready = true
  }}
}}
"#,
            kernel = g.kernel.display(),
            initrd = g.initrd.display(),
        )
    };
    tf.config(&vm(128, "#cloud-config\\nhostname: one\\n"));
    tf.init();
    tf.apply().expect_ok("apply");
    // The guest read its NoCloud seed.
    d.wait_console("m", "KCORE-CIDATA user-data: hostname: one", 1, BOOT);
    let before = d.vm("m");
    let id = before["id"].clone();
    let pid = before["pid"].clone();

    tf.config(&vm(192, "#cloud-config\\nhostname: two\\n"));
    let r = tf.plan();
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("kcore_vm.m will be updated in-place"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("memory_mb     = 128 -> 192"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("0 to add, 1 to change, 0 to destroy"),
        "{}",
        r.stdout
    );
    tf.apply().expect_ok("apply of the memory change");
    let after = d.vm("m");
    assert_eq!(after["id"], id, "the same VM, not a new one");
    assert_ne!(after["pid"], pid, "stopped and started again");
    assert_eq!(after["memory_mb"], 192, "{after}");
    assert_eq!(after["status"], "VM_STATUS_RUNNING", "{after}");
    assert_eq!(
        after["spec"]["cloud_init"]["user_data"], "#cloud-config\nhostname: two\n",
        "{after}"
    );
    // Started again with the new seed.
    d.wait_console("m", "KCORE-CIDATA user-data: hostname: two", 1, BOOT);
    let r = tf.plan();
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    tf.run(&["destroy", "-auto-approve", "-no-color"])
        .expect_ok("destroy");
    assert_nothing_left(&d, &ns);
}

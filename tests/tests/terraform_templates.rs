//! Terraform and kcore's templates and profiles: a real Terraform 1.0.3
//! (scripts/fetch-terraform.sh) with the freshly built terraform-provider-kcore against a
//! real all-in-one daemon in a network namespace of its own (as terraform.rs):
//! - `profile = "turbo"` is refused at plan, naming the attribute, and nothing is made;
//! - `profile = "fast"` makes a microvm whose spec says PROFILE_FAST (read with kctl), and a
//!   profile change is planned as a replacement (UpdateVM cannot change it);
//! - `template` makes a clone of a template kctl took of a running test guest, with the
//!   template's vCPUs, memory and node, which the `kcore_template` data source lists;
//! - the `kcore_template` resource takes a template of a VM Terraform made and waited for,
//!   a clone of it follows, and destroy removes them in order.

use kcore_tests::terraform::{Tf, assert_nothing_left};
use kcore_tests::{Daemon, NetNs, guest};

/// A bad profile, a fast VM, a clone of kctl's template (read with the data source), a
/// template Terraform takes and a clone of it; an empty second plan; a profile change
/// planned as a replacement; destroy leaving nothing.
#[test]
fn terraform_fast_profile_and_a_clone_of_a_template() {
    let ns = NetNs::create();
    let d = Daemon::start_in_netns(&ns);
    let tf = Tf::new(&d.socket());
    let g = guest();
    d.template_of_a_guest("gold", "tpl");
    let fast = |profile: &str| {
        format!(
            r#"
resource "kcore_vm" "fast" {{
  name          = "fast"
  vcpu          = 1
  memory_mb     = 128
  kernel        = "{kernel}"
  initrd        = "{initrd}"
  cmdline       = "console=ttyS0 quiet panic=-1"
  ready_pattern = "KCORE-GUEST-READY"
  profile       = "{profile}"
  wait_for {{
    ready = true
  }}
}}
"#,
            kernel = g.kernel.display(),
            initrd = g.initrd.display(),
        )
    };

    // A profile that is none of the names: Terraform names the attribute, nothing is made.
    tf.config(&fast("turbo"));
    tf.init();
    let r = tf.apply();
    assert!(!r.ok, "apply with profile = turbo succeeded:\n{}", r.stdout);
    let squeezed = r.stderr.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        squeezed.contains(r#"profile "turbo" is not one of standard, fast"#)
            && squeezed.contains(r#"profile = "turbo""#),
        "{}",
        r.stderr
    );
    assert!(tf.state_list().is_empty(), "{:?}", tf.state_list());
    let vms = d
        .kctl(&["-o", "json", "vm", "list"])
        .expect_ok("vm list")
        .json();
    assert_eq!(
        vms["vms"].as_array().map(Vec::len),
        Some(1),
        "only gold: {vms}"
    );

    let clone = r#"
data "kcore_template" "tpl" {
  name = "tpl"
}

resource "kcore_vm" "kid" {
  name     = "kid"
  template = data.kcore_template.tpl.name
}

output "tpl" {
  value = data.kcore_template.tpl
}

data "kcore_vm" "kid" {
  name = kcore_vm.kid.id
}

output "kid" {
  value = data.kcore_vm.kid
}
"#;
    // And a template Terraform takes itself, of a VM it made and waited for.
    let taken = format!(
        r#"
resource "kcore_vm" "src" {{
  name          = "src"
  vcpu          = 1
  memory_mb     = 96
  kernel        = "{kernel}"
  initrd        = "{initrd}"
  cmdline       = "console=ttyS0 quiet panic=-1"
  ready_pattern = "KCORE-GUEST-READY"
  wait_for {{
    ready = true
  }}
}}

resource "kcore_template" "t2" {{
  name    = "t2"
  from_vm = kcore_vm.src.name
}}

resource "kcore_vm" "kid2" {{
  name     = "kid2"
  template = kcore_template.t2.name
}}
"#,
        kernel = g.kernel.display(),
        initrd = g.initrd.display(),
    );
    let clone = format!("{clone}{taken}");
    tf.config(&format!("{}{clone}", fast("fast")));
    tf.apply().expect_ok("apply of the fast VM and the clone");
    let st = tf.resource("kcore_vm.fast");
    assert_eq!(st["profile"], "fast", "{st}");
    assert_eq!(
        st["machine"], "microvm",
        "the machine the profile picked: {st}"
    );
    let v = d.vm("fast");
    assert_eq!(v["spec"]["profile"], "PROFILE_FAST", "{v}");
    assert_eq!(v["spec"]["machine"], "MACHINE_TYPE_MICROVM", "{v}");
    let text = d.kctl(&["vm", "get", "fast"]).expect_ok("vm get").stdout;
    assert!(text.contains("fast") && text.contains("microvm"), "{text}");

    let kid = tf.resource("kcore_vm.kid");
    assert_eq!(kid["template"], "tpl", "{kid}");
    assert_eq!(kid["vcpu"], 1, "the template's: {kid}");
    assert_eq!(kid["memory_mb"], 128, "the template's: {kid}");
    assert_eq!(kid["node"], "node1", "{kid}");
    assert_eq!(kid["profile"], "standard", "{kid}");
    let v = d.vm("kid");
    assert_eq!(v["spec"]["template"], "tpl", "{v}");
    assert_eq!(v["status"], "VM_STATUS_RUNNING", "{v}");
    let phases = v["timeline"]["phases"].to_string();
    assert!(
        phases.contains("state_loaded"),
        "restored, not booted: {phases}"
    );
    let out = tf.run(&["output", "-json"]).expect_ok("output").json();
    let t = &out["tpl"]["value"];
    assert_eq!(t["node"], "node1", "{t}");
    assert_eq!(t["source_vm"], "gold", "{t}");
    assert_eq!(t["memory_mb"], 128, "{t}");
    assert_eq!(t["vcpu"], 1, "{t}");
    assert_eq!(t["machine"], "q35", "{t}");
    assert!(
        t["created_at"].as_str().is_some_and(|c| !c.is_empty()),
        "{t}"
    );

    let dkid = &out["kid"]["value"];
    assert_eq!(dkid["template"], "tpl", "{dkid}");
    assert_eq!(dkid["profile"], "standard", "{dkid}");
    let t2 = tf.resource("kcore_template.t2");
    assert_eq!(t2["source_vm"], "src", "{t2}");
    assert_eq!(t2["memory_mb"], 96, "{t2}");
    assert_eq!(t2["node"], "node1", "{t2}");
    let v = d.vm("kid2");
    assert_eq!(v["spec"]["template"], "t2", "{v}");
    assert_eq!(v["memory_mb"], 96, "the template's: {v}");
    assert_eq!(
        d.vm("src")["status"],
        "VM_STATUS_RUNNING",
        "the source runs on"
    );
    // The data source read again sees its clone (read before the clone was made).
    tf.run(&["refresh", "-no-color"]).expect_ok("refresh");
    let out = tf.run(&["output", "-json"]).expect_ok("output").json();
    let t = &out["tpl"]["value"];
    assert_eq!(t["clones"], serde_json::json!(["kid"]), "{t}");
    assert_eq!(t["clone_count"], 1, "{t}");
    // Nothing changed: the server's picks (machine, profile, the clone's sizes) hold.
    let r = tf.plan();
    assert_eq!(r.code, Some(0), "second plan:\n{}{}", r.stdout, r.stderr);

    // UpdateVM has no profile: a change replaces the VM.
    tf.config(&format!("{}{clone}", fast("standard")));
    let r = tf.plan();
    assert_eq!(r.code, Some(2), "{}{}", r.stdout, r.stderr);
    let squeezed = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        squeezed.contains("kcore_vm.fast must be replaced")
            && squeezed.contains(r#"~ profile = "fast" -> "standard" # forces replacement"#),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("1 to add, 0 to change, 1 to destroy"),
        "{}",
        r.stdout
    );

    assert_eq!(
        tf.resource("kcore_template.t2")["clones"],
        serde_json::json!(["kid2"])
    );

    tf.run(&["destroy", "-auto-approve", "-no-color"])
        .expect_ok("destroy");
    assert!(tf.state_list().is_empty());
    // Destroyed in order: kid2, then t2 (refused while a clone exists), then src.
    d.kctl(&["template", "get", "t2"])
        .expect_err("template get t2", &["no template t2"]);
    // The clone is gone, so the template (kctl's) may go too.
    d.kctl(&["template", "delete", "tpl"])
        .expect_ok("template delete");
    d.kctl(&["vm", "delete", "gold", "--force"])
        .expect_ok("delete gold");
    assert_nothing_left(&d, &ns);
}

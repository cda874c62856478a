//! `kctl template` and `kctl vm create --template`.

use super::common::texts::*;
use super::common::*;

#[test]
fn template_list_and_get() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["template", "list"]));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "NAME     NODE    FROM VM  VCPU   MEMORY  DISKS       SIZE  CLONES",
            "web-tpl  node-1  web         2  512 MiB      1  180.0 MiB       1",
            "spare    node-1  db          1  128 MiB      0   40.0 MiB       0",
        ]
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&server.kctl(&["-o", "json", "template", "ls"]))).expect("json");
    assert_eq!(json["templates"][0]["clones"], serde_json::json!(["web-2"]));
    let out = ok(&server.kctl(&["template", "get", "web-tpl"]));
    assert!(out.contains("From VM: web\n"), "{out}");
    assert!(out.contains("Memory:  512 MiB\n"), "{out}");
    assert!(out.contains("Clones:  web-2\n"), "{out}");
    let err = failed(&server.kctl(&["template", "get", "nope"]));
    assert_eq!(
        err,
        format!("Error: {} (NotFound)\n", NO_TEMPLATE.fill(&["nope"]))
    );
}

#[test]
fn template_create_and_delete() {
    let server = Server::unix();
    let out = ok(&server.kctl(&["template", "create", "t1", "--from-vm", "web"]));
    assert_eq!(
        out,
        "Created template t1 from VM web on node-1 (2 vCPU, 512 MiB, 200.0 MiB on disk)\n"
    );
    let out = ok(&server.kctl(&[
        "template",
        "create",
        "t1",
        "--from-vm",
        "web",
        "--stop-source",
    ]));
    assert!(out.ends_with("; the VM is stopped\n"), "{out}");
    let err = failed(&server.kctl(&["template", "create", "t2", "--from-vm", "db"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            TEMPLATE_NOT_RUNNING.fill(&["db", "STOPPED"])
        )
    );
    let err = failed(&server.kctl(&["template", "create", "spare", "--from-vm", "web"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (AlreadyExists)\n",
            TEMPLATE_EXISTS.fill(&["spare", "node-1"])
        )
    );
    assert_eq!(
        ok(&server.kctl(&["template", "delete", "spare"])),
        "Deleted template spare\n"
    );
    let err = failed(&server.kctl(&["template", "rm", "web-tpl"]));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            TEMPLATE_HAS_CLONES.fill(&["web-tpl", "node-1", "web-2"])
        )
    );
}

#[test]
fn vm_create_from_a_template() {
    let server = Server::unix();
    let json: serde_json::Value = serde_json::from_str(&ok(&server.kctl(&[
        "-o",
        "json",
        "vm",
        "create",
        "c1",
        "--template",
        "web-tpl",
        "--nic",
        "default",
    ])))
    .expect("json");
    // kctl sends no vCPUs or memory: the template's are the clone's.
    assert_eq!(json["spec"]["template"], "web-tpl");
    assert_eq!(json["memory_mb"], 512);
    let out = ok(&server.kctl(&["vm", "create", "c1b", "--template", "web-tpl"]));
    assert!(out.contains("c1b"), "{out}");
    let err = failed(&server.kctl(&["vm", "create", "c2", "--template", "nope"]));
    assert_eq!(
        err,
        format!("Error: {} (NotFound)\n", NO_TEMPLATE.fill(&["nope"]))
    );
    // Without a template, vCPUs and memory are needed; a template boots no image.
    let out = server.kctl(&["vm", "create", "c3"]);
    assert_eq!(out.status.code(), Some(2));
    let out = server.kctl(&[
        "vm",
        "create",
        "c3",
        "--template",
        "web-tpl",
        "--image",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{out:?}"
    );
}

//! A cluster over TCP with mutual TLS: client certificates issued by the controller
//! (`kctl cert issue`), and nodes that join a controller with one-time tokens
//! (`kctl node join-token`, `kcored node --controller ... --join-token ...`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kcore_tests::bin;
use kcore_tests::cluster::{Kcored, free_port, node_args, start_node, wait_until};

/// GetNodeInfo on a node agent over a new TLS connection, as `cert` (files of the
/// controller's pki/) or without a certificate: the node's name.
fn node_info(
    ctl: &Kcored,
    port: u16,
    node: &str,
    cert: Option<(&str, &str)>,
) -> Result<String, tonic::Status> {
    let ca = std::fs::read(ctl.pki("ca.crt")).expect("ca");
    let ident = cert.map(|(c, k)| {
        tonic::transport::Identity::from_pem(
            std::fs::read(ctl.pki(c)).expect("cert"),
            std::fs::read(ctl.pki(k)).expect("key"),
        )
    });
    let node = node.to_string();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            let mut tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                .domain_name(node);
            if let Some(i) = ident {
                tls = tls.identity(i);
            }
            let ch = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
                .expect("uri")
                .tls_config(tls)
                .expect("tls")
                .connect()
                .await
                .map_err(|e| tonic::Status::unavailable(format!("{e:?}")))?;
            kcore_proto::v1::node_agent_client::NodeAgentClient::new(ch)
                .get_node_info(kcore_proto::v1::GetNodeInfoRequest {})
                .await
                .map(|r| r.into_inner().name)
        })
}

/// The end of a PEM certificate's validity, in unix seconds.
fn not_after(pem: &[u8]) -> i64 {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).expect("PEM");
    pem.parse_x509()
        .expect("X.509")
        .validity()
        .not_after
        .timestamp()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Node certificates issued for 30 s renew with a third left, and the node keeps working
/// past the first certificate's end: new connections to it (served with the new
/// certificate), calls from the controller, and a restart (registering with the new one).
#[test]
fn node_certificates_renew_before_they_expire() {
    let ctl = Kcored::start(&[
        "controller",
        "--node-cert-lifetime",
        "30",
        "--heartbeat-interval",
        "0.5",
        "--node-timeout",
        "2",
    ]);
    let mut n1 = start_node(&ctl, "n1", &ctl.join_token(), &[]);
    wait_until(30, "n1 READY", || ctl.ready_nodes() == ["n1"], || n1.log());
    let first = std::fs::read(n1.pki("node.crt")).expect("node.crt");
    let first_end = not_after(&first);
    wait_until(
        40,
        "the node certificate to be renewed",
        || std::fs::read(n1.pki("node.crt")).is_ok_and(|c| c != first),
        || n1.log(),
    );
    assert!(
        unix_now() < first_end,
        "renewed only after the certificate expired"
    );
    assert_eq!(mode(&n1.pki("node.key")), 0o600);
    // Past the first certificate's end.
    while unix_now() <= first_end + 1 {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ctl.ready_nodes(), ["n1"], "{}", ctl.log());
    assert_eq!(
        node_info(
            &ctl,
            n1.port,
            "n1",
            Some(("controller.crt", "controller.key"))
        )
        .expect("a new TLS connection to the node after its first certificate expired"),
        "n1"
    );
    ctl.admin(&[
        "vm",
        "create",
        "after-renewal",
        "--node",
        "n1",
        "--vcpu",
        "1",
        "--memory",
        "64",
        "--kernel",
        kcore_tests::guest().kernel.to_str().expect("utf-8"),
        "--start=false",
    ])
    .expect_ok("create on the node after renewal");
    let args = node_args(&ctl, "n1", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    n1.restart(&args);
    wait_until(
        30,
        "n1 READY after a restart with the renewed certificate",
        || ctl.ready_nodes() == ["n1"],
        || n1.log(),
    );
    let events = ctl.admin(&["events"]).expect_ok("events").stdout;
    assert!(events.contains("node.cert_renewed"), "{events}");
    ctl.admin(&["vm", "delete", "after-renewal"])
        .expect_ok("delete");
}

/// A revoked client certificate is refused (also after a controller restart); a node
/// taken out of the cluster is no longer followed and its certificate is refused.
#[test]
fn revoked_certificates_and_removed_nodes_are_refused() {
    let args = [
        "controller",
        "--heartbeat-interval",
        "0.5",
        "--node-timeout",
        "2",
    ];
    let mut ctl = Kcored::start(&args);
    let (_, cert, key) = ctl.issue_cert("alice", "viewer");
    ctl.kctl(&cert, &key, &["vm", "list"])
        .expect_ok("vm list before revocation");
    let list = ctl
        .admin(&["-o", "json", "cert", "list"])
        .expect_ok("cert list")
        .json();
    let roles: Vec<(String, String)> = list["certificates"]
        .as_array()
        .expect("certificates")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["role"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for want in [
        ("admin", "admin"),
        ("controller", "controller"),
        ("alice", "viewer"),
    ] {
        assert!(
            roles.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {roles:?}"
        );
    }

    // Refusals that change nothing.
    ctl.admin(&["cert", "revoke", "nobody"])
        .expect_err("revoke an unknown name", &["NotFound", "nobody"]);
    ctl.admin(&["cert", "revoke", "controller"])
        .expect_err("revoke the controller's own", &["controller's own"]);
    ctl.admin(&["cert", "revoke", "admin"])
        .expect_err("revoke the caller's own", &["making this call"]);
    ctl.kctl(&cert, &key, &["cert", "revoke", "admin"])
        .expect_err("revoke as a viewer", &["PermissionDenied"]);
    ctl.admin(&["vm", "list"]).expect_ok("admin still works");

    let r = ctl
        .admin(&["cert", "revoke", "alice"])
        .expect_ok("revoke alice");
    assert!(
        r.stdout.contains("Revoked viewer certificate"),
        "{}",
        r.stdout
    );
    ctl.kctl(&cert, &key, &["vm", "list"])
        .expect_err("a revoked certificate", &["Unauthenticated", "revoked"]);
    ctl.restart(&args);
    ctl.kctl(&cert, &key, &["vm", "list"]).expect_err(
        "a revoked certificate after a controller restart",
        &["Unauthenticated", "revoked"],
    );
    let table = ctl.admin(&["cert", "list"]).expect_ok("cert list").stdout;
    let alice = table
        .lines()
        .find(|l| l.contains("alice"))
        .expect("alice listed");
    assert!(
        !alice.trim_end().ends_with('-'),
        "not shown revoked: {alice}"
    );

    // A node with a VM is not removed; without, it is, and its certificate is refused.
    let mut n1 = start_node(&ctl, "n1", &ctl.join_token(), &[]);
    wait_until(30, "n1 READY", || ctl.ready_nodes() == ["n1"], || n1.log());
    ctl.admin(&[
        "vm",
        "create",
        "on-n1",
        "--vcpu",
        "1",
        "--memory",
        "64",
        "--kernel",
        kcore_tests::guest().kernel.to_str().expect("utf-8"),
        "--start=false",
    ])
    .expect_ok("create on n1");
    ctl.admin(&["node", "remove", "n1"])
        .expect_err("remove a node with VMs", &["FailedPrecondition", "on-n1"]);
    ctl.admin(&["vm", "delete", "on-n1"]).expect_ok("delete");
    let removed = ctl.admin(&["node", "remove", "n1"]).expect_ok("remove n1");
    assert!(
        removed.stdout.contains("1 certificate(s) revoked"),
        "{}",
        removed.stdout
    );
    assert!(ctl.node_states().is_empty(), "{:?}", ctl.node_states());
    ctl.kctl(&n1.pki("node.crt"), &n1.pki("node.key"), &["vm", "list"])
        .expect_err(
            "a removed node's certificate",
            &["Unauthenticated", "revoked"],
        );
    // Restarted, it cannot register again.
    let nargs = node_args(&ctl, "n1", &[]);
    let nargs: Vec<&str> = nargs.iter().map(String::as_str).collect();
    n1.restart(&nargs);
    wait_until(
        30,
        "the removed node's registration to be refused",
        || n1.log().contains("revoked"),
        || n1.log(),
    );
    assert!(ctl.node_states().is_empty(), "{:?}", ctl.node_states());
    // (A valid request: the node is what is wrong with it.)
    ctl.admin(&[
        "vm",
        "create",
        "x",
        "--vcpu",
        "1",
        "--memory",
        "64",
        "--node",
        "n1",
        "--kernel",
        "/boot/vmlinuz",
    ])
    .expect_err("create on a removed node", &["NotFound"]);
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

#[test]
fn issued_viewer_cert_lists_but_may_not_create() {
    let d = Kcored::start(&["all-in-one", "--accel", "tcg", "--node-name", "n1"]);
    let (run, cert, key) = d.issue_cert("alice", "viewer");
    let out = d.dir.path().join("certs");
    let ca = out.join("ca.crt");
    for p in [&cert, &key, &ca] {
        assert!(
            run.stdout.contains(p.to_str().expect("utf-8")),
            "{}",
            run.stdout
        );
    }
    assert_eq!(mode(&key), 0o600);
    assert_eq!(
        std::fs::read(&ca).expect("ca"),
        std::fs::read(d.pki("ca.crt")).expect("ca")
    );

    d.kctl(&cert, &key, &["-o", "json", "vm", "list"])
        .expect_ok("vm list as the issued viewer");
    d.kctl(&cert, &key, &["node", "list"])
        .expect_ok("node list as the issued viewer");
    d.kctl(
        &cert,
        &key,
        &[
            "vm",
            "create",
            "v1",
            "--vcpu",
            "1",
            "--memory",
            "128",
            "--kernel",
            "/nonexistent/vmlinuz",
        ],
    )
    .expect_err(
        "vm create as the issued viewer",
        &["role viewer may not call CreateVM", "PermissionDenied"],
    );
    // A viewer may not issue certificates either.
    let out2 = d.dir.path().join("certs2");
    d.kctl(
        &cert,
        &key,
        &[
            "cert",
            "issue",
            "mallory",
            "--role",
            "admin",
            "--out",
            out2.to_str().expect("utf-8"),
        ],
    )
    .expect_err(
        "cert issue as a viewer",
        &[
            "role viewer may not call IssueCertificate",
            "PermissionDenied",
        ],
    );
    assert!(!out2.join("mallory.key").exists());
    // Join tokens: admin only, printed alone.
    let token = d
        .admin(&["node", "join-token", "--ttl", "60"])
        .expect_ok("node join-token")
        .stdout;
    assert_eq!(token.lines().count(), 1, "{token:?}");
    let token = token.trim();
    assert!(
        token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()),
        "{token:?}"
    );
    d.kctl(&cert, &key, &["node", "join-token"]).expect_err(
        "join-token as a viewer",
        &[
            "role viewer may not call CreateJoinToken",
            "PermissionDenied",
        ],
    );
    // Existing files are not replaced.
    d.admin(&[
        "cert",
        "issue",
        "alice",
        "--role",
        "admin",
        "--out",
        out.to_str().expect("utf-8"),
    ])
    .expect_err("cert issue over existing files", &["alice.crt exists"]);
}

/// Run `kcored node` to its exit (a refused join), with its output.
fn join_fails(ctl: &Kcored, name: &str, token: &str) -> String {
    join_fails_with(ctl, name, &["--join-token", token])
}

/// Run `kcored node` with the join arguments `join` to its exit, with its output.
fn join_fails_with(ctl: &Kcored, name: &str, join: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(bin("kcored"))
        .args(["node", "--accel", "tcg", "--name", name, "--controller"])
        .arg(format!("127.0.0.1:{}", ctl.port))
        .args(join)
        .arg("--ca-cert")
        .arg(ctl.pki("ca.crt"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kcored node");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kcored node {name} did not exit: the join succeeded?");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    assert!(!status.success(), "the join succeeded:\n{err}");
    assert!(
        !dir.path().join("data/pki/node.crt").exists(),
        "a refused join left a certificate"
    );
    err
}

#[test]
fn nodes_join_with_tokens_and_run_vms() {
    let g = kcore_tests::guest();
    let mut ctl = Kcored::start(&["controller"]);
    let token = |ttl: &str| {
        ctl.admin(&["node", "join-token", "--ttl", ttl])
            .expect_ok("join-token")
            .stdout
            .trim()
            .to_string()
    };
    let t1 = token("600");
    let n1 = start_node(&ctl, "n1", &t1, &[]);
    let n2 = start_node(&ctl, "n2", &token("600"), &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while ctl.ready_nodes() != ["n1", "n2"] {
        assert!(
            Instant::now() < deadline,
            "nodes not READY: {:?}\ncontroller:\n{}\nn1:\n{}\nn2:\n{}",
            ctl.ready_nodes(),
            ctl.log(),
            n1.log(),
            n2.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let table = ctl.admin(&["node", "list"]).expect_ok("node list").stdout;
    assert!(table.contains("n1") && table.contains("n2"), "{table}");
    for n in [&n1, &n2] {
        assert_eq!(mode(&n.pki("node.key")), 0o600);
    }

    // A VM placed on n2 runs there (its QEMU is n2's).
    let vm = ctl
        .admin(&[
            "-o",
            "json",
            "vm",
            "create",
            "v2",
            "--node",
            "n2",
            "--vcpu",
            "1",
            "--memory",
            "128",
            "--kernel",
            g.kernel.to_str().expect("utf-8"),
            "--initrd",
            g.initrd.to_str().expect("utf-8"),
            "--cmdline",
            "console=ttyS0 quiet panic=-1",
            "--ready-pattern",
            "KCORE-GUEST-READY",
        ])
        .expect_ok("vm create on n2")
        .json();
    assert_eq!(vm["node"], "n2", "{vm}");
    assert_eq!(vm["status"], "VM_STATUS_RUNNING", "{vm}");
    assert!(
        n2.dir
            .path()
            .join("run/vms")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "no VM runtime dir on n2"
    );
    ctl.admin(&["vm", "delete", "v2", "--force"])
        .expect_ok("vm delete");

    // A used token and an expired one are refused.
    let e = join_fails(&ctl, "n3", &t1);
    assert!(
        e.contains("already used") && e.contains("Unauthenticated"),
        "{e}"
    );
    let short = token("1");
    std::thread::sleep(Duration::from_secs(2));
    let e = join_fails(&ctl, "n3", &short);
    assert!(
        e.contains("expired") && e.contains("Unauthenticated"),
        "{e}"
    );

    // A node's certificate may not use the public API.
    ctl.kctl(&n1.pki("node.crt"), &n1.pki("node.key"), &["vm", "list"])
        .expect_err(
            "vm list as a node",
            &["role node may not call ListVMs", "PermissionDenied"],
        );
    // Without a client certificate the public API answers UNAUTHENTICATED.
    let out = Command::new(bin("kctl"))
        .arg("--endpoint")
        .arg(format!("https://127.0.0.1:{}", ctl.port))
        .args(["vm", "list"])
        .env("XDG_CONFIG_HOME", ctl.dir.path().join("config"))
        .env_remove("KCORE_ENDPOINT")
        .env_remove("KCORE_CLIENT_CERT")
        .env_remove("KCORE_CLIENT_KEY")
        .env("KCORE_CA_CERT", ctl.pki("ca.crt"))
        .output()
        .expect("kctl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("Unauthenticated"),
        "{err}"
    );

    // A node agent answers only the controller's certificate.
    let node_port = n2.port;
    let call = |cert| node_info(&ctl, node_port, "n2", cert);
    assert_eq!(
        call(Some(("controller.crt", "controller.key"))).expect("as the controller"),
        "n2"
    );
    let e = call(Some(("admin.crt", "admin.key"))).expect_err("as admin");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        call(None).is_err(),
        "a node agent answered without a certificate"
    );

    // A name in the cluster cannot be joined again.
    let e = join_fails(&ctl, "n2", &token("60"));
    assert!(e.contains("already in the cluster"), "{e}");

    // A stopped node is no longer READY; restarted without a token it comes back with
    // its stored certificate.
    let mut n1 = n1;
    let _ = n1.child.kill();
    let _ = n1.child.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ctl.ready_nodes(), ["n2"]);
    let controller = format!("127.0.0.1:{}", ctl.port);
    n1.restart(&[
        "node",
        "--accel",
        "tcg",
        "--name",
        "n1",
        "--controller",
        &controller,
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctl.ready_nodes() != ["n1", "n2"] {
        assert!(
            Instant::now() < deadline,
            "n1 not READY again:\n{}",
            n1.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A restarted controller follows the registered nodes again (from its database).
    ctl.restart(&["controller"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctl.ready_nodes() != ["n1", "n2"] {
        assert!(
            Instant::now() < deadline,
            "nodes not READY after a controller restart:\n{}",
            ctl.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A registered node that is down is listed NOT_READY after a controller restart.
    let _ = n1.child.kill();
    let _ = n1.child.wait();
    ctl.restart(&["controller"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctl.ready_nodes() != ["n2"] {
        assert!(Instant::now() < deadline, "n2 not READY:\n{}", ctl.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let v = ctl
        .admin(&["-o", "json", "node", "get", "n2"])
        .expect_ok("node get")
        .json();
    assert_eq!(v["state"], "NODE_STATE_READY", "{v}");
    let v = ctl
        .admin(&["-o", "json", "node", "list"])
        .expect_ok("node list")
        .json();
    let n1 = v["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == "n1"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(n1["state"], "NODE_STATE_NOT_READY", "{v}");
    // What it had when last heard from, kept in the controller's database.
    assert!(n1["cpus"].as_u64().is_some_and(|c| c > 0), "{n1}");
    assert_eq!(n1["version"], v["nodes"][1]["version"], "{v}");
    assert_eq!(n1["pools"][0]["name"], "default", "{n1}");
    assert!(
        n1["last_heartbeat"].as_str().is_some_and(|t| !t.is_empty()),
        "{n1}"
    );
}

/// A token file (what the NixOS module gives kcored) is read only to join: the token is
/// never on the command line, an empty or missing file is refused naming it, and once
/// joined the node starts again without the file.
#[test]
fn a_token_file_joins_once_and_keeps_the_token_off_the_command_line() {
    let ctl = Kcored::start(&[
        "controller",
        "--heartbeat-interval",
        "0.5",
        "--node-timeout",
        "2",
    ]);
    let keys = tempfile::tempdir().expect("tempdir");
    let file = keys.path().join("kcore-join-token");
    let file_arg = file.to_str().expect("utf-8");
    let e = join_fails_with(&ctl, "n1", &["--join-token-file", file_arg]);
    assert!(
        e.contains(&format!("--join-token-file {file_arg}: cannot read it")),
        "{e}"
    );
    std::fs::write(&file, "\n").expect("write");
    let e = join_fails_with(&ctl, "n1", &["--join-token-file", file_arg]);
    assert!(
        e.contains(&format!("--join-token-file {file_arg} is empty")),
        "{e}"
    );
    let token = ctl.join_token();
    std::fs::write(&file, format!("{token}\n")).expect("write");
    let mut args = node_args(&ctl, "n1", &[]);
    args.extend(["--join-token-file".to_string(), file_arg.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut n1 = Kcored::start_waiting(&args, "node.sock");
    wait_until(30, "n1 READY", || ctl.ready_nodes() == ["n1"], || n1.log());
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", n1.pid())).expect("cmdline");
    assert!(
        !String::from_utf8_lossy(&cmdline).contains(&token),
        "the token is on the command line"
    );
    // Joined: the spent token's file may go, and a restart does not need it.
    std::fs::remove_file(&file).expect("rm");
    n1.restart(&args);
    wait_until(
        30,
        "n1 READY again without the token file",
        || ctl.ready_nodes() == ["n1"],
        || n1.log(),
    );
}

//! A controller and three joined nodes on loopback, each its own kcored process with its
//! own data and run dirs and port: VMs spread across the nodes; placement refusals that
//! change nothing; a node killed with -9 (its connection drops) and a node frozen with
//! SIGSTOP (a hung host: its connection stays open, only the heartbeats stop) turn
//! NOT_READY and come back READY with their VMs unchanged; the controller killed with -9
//! during a burst of creates loses no VM and leaves no orphan on any node.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kcore_tests::cluster::{Kcored, node_args, start_node, wait_until};
use kcore_tests::{Run, guest};
use serde_json::Value;

/// Heartbeats every 0.5 s, NotReady after 2 s of silence (defaults: 2 s and 6 s).
const CONTROLLER: &[&str] = &[
    "controller",
    "--heartbeat-interval",
    "0.5",
    "--node-timeout",
    "2",
];
/// What each node offers: 2 cpus (8 vCPUs with the default overcommit), 1 GiB.
const CAPACITY: &[&str] = &["--cpus", "2", "--memory", "1024"];
const NAMES: [&str; 3] = ["n1", "n2", "n3"];

fn cluster() -> (Kcored, Vec<Kcored>) {
    let ctl = Kcored::start(CONTROLLER);
    let nodes: Vec<Kcored> = NAMES
        .iter()
        .map(|n| start_node(&ctl, n, &ctl.join_token(), CAPACITY))
        .collect();
    wait_until(
        60,
        "three READY nodes",
        || ctl.ready_nodes() == NAMES,
        || logs(&ctl, &nodes),
    );
    (ctl, nodes)
}

fn logs(ctl: &Kcored, nodes: &[Kcored]) -> String {
    let mut s = format!("controller:\n{}", ctl.log());
    for (n, d) in NAMES.iter().zip(nodes) {
        s += &format!("\n{n}:\n{}", d.log());
    }
    s
}

fn create_args<'a>(name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let g = guest();
    let mut a = vec!["vm", "create", name];
    // 1 vCPU and 128 MiB unless `extra` says otherwise.
    if !extra.contains(&"--vcpu") {
        a.extend(["--vcpu", "1"]);
    }
    if !extra.contains(&"--memory") {
        a.extend(["--memory", "128"]);
    }
    a.extend([
        "--kernel",
        g.kernel.to_str().expect("utf-8"),
        "--initrd",
        g.initrd.to_str().expect("utf-8"),
        "--cmdline",
        "console=ttyS0 quiet panic=-1",
    ]);
    a.extend_from_slice(extra);
    a
}

fn create(ctl: &Kcored, name: &str, extra: &[&str]) -> Run {
    let mut a = vec!["-o", "json"];
    a.extend(create_args(name, extra));
    ctl.admin(&a)
}

fn field<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

/// VM name -> (node, status, pid).
fn placement(ctl: &Kcored) -> BTreeMap<String, (String, String, i64)> {
    ctl.vms()
        .iter()
        .map(|v| {
            (
                field(v, "name").to_string(),
                (
                    field(v, "node").to_string(),
                    field(v, "status").to_string(),
                    v["pid"].as_i64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

fn state_of(ctl: &Kcored, node: &str) -> String {
    ctl.node_states()
        .into_iter()
        .find(|(n, _)| n == node)
        .map(|(_, s)| s)
        .unwrap_or_default()
}

fn statuses_on(ctl: &Kcored, node: &str) -> BTreeSet<String> {
    placement(ctl)
        .into_values()
        .filter(|(n, _, _)| n == node)
        .map(|(_, s, _)| s)
        .collect()
}

/// Every VM of the store is on the node that has it, and every VM a node has (defined or
/// running) is in the store: nothing lost, nothing orphaned.
fn assert_store_matches_nodes(ctl: &Kcored, nodes: &[Kcored]) {
    let vms = ctl.vms();
    for (name, node) in NAMES.iter().zip(nodes) {
        let mut want: Vec<String> = vms
            .iter()
            .filter(|v| field(v, "node") == *name)
            .map(|v| field(v, "id").to_string())
            .collect();
        want.sort();
        assert_eq!(
            node.defined_vms(),
            want,
            "{name}: VMs defined on the node vs the store"
        );
        let running: Vec<String> = node.qemus().into_iter().map(|(id, _)| id).collect();
        assert_eq!(running, want, "{name}: QEMUs on the node vs the store");
    }
}

#[test]
fn vms_spread_and_nodes_fail_and_come_back() {
    let (ctl, mut nodes) = cluster();

    // Spread: six VMs without --node land two on each node.
    for i in 0..6 {
        let vm = create(&ctl, &format!("s{i}"), &[])
            .expect_ok("create")
            .json();
        assert_eq!(field(&vm, "status"), "VM_STATUS_RUNNING", "{vm}");
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for (node, _, _) in placement(&ctl).values() {
        *per_node.entry(node.clone()).or_default() += 1;
    }
    assert_eq!(
        per_node,
        NAMES.iter().map(|n| (n.to_string(), 2)).collect(),
        "VMs not spread"
    );
    for n in &nodes {
        assert_eq!(n.qemus().len(), 2, "QEMUs on a node");
    }

    // The heartbeat carries capacity; the controller adds the allocation.
    let n1 = ctl
        .admin(&["-o", "json", "node", "get", "n1"])
        .expect_ok("node get")
        .json();
    assert_eq!(n1["cpus"], 2, "{n1}");
    assert_eq!(n1["memory_mb"], 1024, "{n1}");
    assert_eq!(n1["vm_count"], 2, "{n1}");
    assert_eq!(n1["allocated_memory_mb"], 256, "{n1}");
    assert_eq!(n1["pools"][0]["name"], "default", "{n1}");
    assert!(
        field(&n1["pools"][0], "free_bytes")
            .parse::<u64>()
            .is_ok_and(|b| b > 0),
        "{n1}"
    );
    assert!(!field(&n1, "last_heartbeat").is_empty(), "{n1}");
    let text = ctl
        .admin(&["node", "get", "n1"])
        .expect_ok("node get")
        .stdout;
    assert!(
        text.contains("Pools:") && text.contains("default ("),
        "{text}"
    );

    // Refusals name the reason and change nothing.
    let before = placement(&ctl);
    let defined: Vec<Vec<String>> = nodes.iter().map(Kcored::defined_vms).collect();
    create(&ctl, "too-big", &["--memory", "900"]).expect_err(
        "create beyond free memory",
        &[
            "ResourceExhausted",
            "n1: 768 MiB of memory free, 900 asked",
            "n3: 768 MiB",
        ],
    );
    create(&ctl, "huge", &["--memory", "4096"]).expect_err(
        "create beyond any node",
        &["InvalidArgument", "more than any node has"],
    );
    create(&ctl, "many-cpus", &["--vcpu", "3"]).expect_err(
        "create beyond any node's cpus",
        &["InvalidArgument", "vcpu 3 is more than any node has"],
    );
    create(&ctl, "pinned", &["--node", "n2", "--memory", "900"])
        .expect_err("create on a full node", &["node n2 cannot take the VM"]);
    create(&ctl, "nowhere", &["--node", "n9"])
        .expect_err("create on an unknown node", &["NotFound", "n9"]);
    assert_eq!(placement(&ctl), before, "a refused create changed the VMs");
    let after: Vec<Vec<String>> = nodes.iter().map(Kcored::defined_vms).collect();
    assert_eq!(after, defined, "a refused create left something on a node");

    // kill -9 of n2: its connection drops, it is NOT_READY at once and its VMs UNKNOWN;
    // their QEMUs keep running.
    let n2_qemus = nodes[1].qemus();
    let killed = Instant::now();
    nodes[1].kill9();
    wait_until(
        10,
        "n2 NOT_READY after kill -9",
        || state_of(&ctl, "n2") == "NODE_STATE_NOT_READY",
        || ctl.log(),
    );
    eprintln!("n2 NOT_READY {:?} after kill -9", killed.elapsed());
    wait_until(
        10,
        "n2's VMs UNKNOWN",
        || statuses_on(&ctl, "n2") == BTreeSet::from(["VM_STATUS_UNKNOWN".to_string()]),
        || format!("{:?}", placement(&ctl)),
    );
    assert_eq!(nodes[1].qemus(), n2_qemus, "n2's QEMUs died with it");
    // New VMs go elsewhere meanwhile, and n2 is refused by name.
    let vm = create(&ctl, "while-down", &[])
        .expect_ok("create while n2 is down")
        .json();
    assert_ne!(field(&vm, "node"), "n2", "{vm}");
    create(&ctl, "on-n2", &["--node", "n2"])
        .expect_err("create on a NotReady node", &["Unavailable", "not ready"]);
    ctl.admin(&["vm", "stop", "s1"]).expect_err(
        "stop a VM of a NotReady node",
        &["Unavailable", "n2 is not ready"],
    );

    // Restarted (no token: it has its certificate), n2 is READY with the same VMs.
    let args = node_args(&ctl, "n2", CAPACITY);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let before = placement(&ctl);
    nodes[1].restart(&args);
    wait_until(
        30,
        "n2 READY with its VMs RUNNING",
        || {
            state_of(&ctl, "n2") == "NODE_STATE_READY"
                && statuses_on(&ctl, "n2") == BTreeSet::from(["VM_STATUS_RUNNING".to_string()])
        },
        || format!("{:?}\n{}", placement(&ctl), nodes[1].log()),
    );
    assert_eq!(nodes[1].qemus(), n2_qemus, "n2's VMs changed");
    let now = placement(&ctl);
    for (name, (node, _, pid)) in &before {
        let (n, s, p) = &now[name];
        assert_eq!((n, p), (node, pid), "{name} moved or restarted");
        assert_eq!(s, "VM_STATUS_RUNNING", "{name}");
    }
    assert_eq!(now.len(), 7, "VMs lost or duplicated: {now:?}");

    // SIGSTOP of n3: a hung host. The connection stays open; the missing heartbeats make
    // it NOT_READY after the node timeout (2 s), and SIGCONT brings it back.
    let frozen = Instant::now();
    nodes[2].freeze(true);
    wait_until(
        15,
        "n3 NOT_READY while frozen",
        || state_of(&ctl, "n3") == "NODE_STATE_NOT_READY",
        || ctl.log(),
    );
    let took = frozen.elapsed();
    eprintln!("n3 NOT_READY {took:?} after SIGSTOP (node timeout 2 s)");
    assert!(
        statuses_on(&ctl, "n3") == BTreeSet::from(["VM_STATUS_UNKNOWN".to_string()]),
        "{:?}",
        placement(&ctl)
    );
    let events = ctl
        .admin(&["-o", "json", "events"])
        .expect_ok("events")
        .stdout;
    assert!(
        events.contains("node.not_ready") && events.contains("no heartbeat for 2.0 s"),
        "{events}"
    );
    nodes[2].freeze(false);
    wait_until(
        30,
        "n3 READY again with its VMs RUNNING",
        || {
            state_of(&ctl, "n3") == "NODE_STATE_READY"
                && statuses_on(&ctl, "n3") == BTreeSet::from(["VM_STATUS_RUNNING".to_string()])
        },
        || format!("{:?}\n{}", placement(&ctl), ctl.log()),
    );
    assert_store_matches_nodes(&ctl, &nodes);

    for name in placement(&ctl).keys() {
        ctl.admin(&["vm", "delete", name, "--force"])
            .expect_ok("delete");
    }
    for n in &nodes {
        assert!(n.qemus().is_empty() && n.defined_vms().is_empty());
    }
}

#[test]
fn controller_killed_during_a_burst_of_creates_loses_no_vm_and_leaves_no_orphan() {
    let (mut ctl, nodes) = cluster();
    const BURST: usize = 9;
    let names: Vec<String> = (0..BURST).map(|i| format!("b{i}")).collect();
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            ctl.kctl_command(
                &ctl.pki("admin.crt"),
                &ctl.pki("admin.key"),
                &create_args(n, &[]),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kctl")
        })
        .collect();
    // Kill the controller as soon as the first QEMUs run: the burst is under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.iter().map(|n| n.qemus().len()).sum::<usize>() < 2 {
        assert!(Instant::now() < deadline, "no VM started");
        std::thread::sleep(Duration::from_millis(5));
    }
    ctl.kill9();
    let mut created = Vec::new();
    for (name, child) in names.iter().zip(children) {
        let out = child.wait_with_output().expect("kctl");
        if out.status.success() {
            created.push(name.clone());
        }
    }
    eprintln!("creates confirmed before the kill: {created:?}");
    assert!(
        created.len() < BURST,
        "every create finished before the kill: the test did not interrupt anything"
    );

    ctl.restart(CONTROLLER);
    // Reconciled: every VM in the store RUNNING (interrupted creates finished, or removed
    // when their node never had them), and the store and the nodes agree.
    wait_until(
        60,
        "the store and the nodes to agree, every VM RUNNING",
        || {
            let p = placement(&ctl);
            ctl.ready_nodes() == NAMES
                && p.values().all(|(_, s, _)| s == "VM_STATUS_RUNNING")
                && NAMES.iter().zip(&nodes).all(|(name, node)| {
                    let on: BTreeSet<&String> = p
                        .iter()
                        .filter(|(_, (n, _, _))| n == name)
                        .map(|(vm, _)| vm)
                        .collect();
                    on.len() == node.defined_vms().len() && on.len() == node.qemus().len()
                })
        },
        || format!("{:?}\n{}", placement(&ctl), ctl.log()),
    );
    assert_store_matches_nodes(&ctl, &nodes);
    let p = placement(&ctl);
    for name in &created {
        assert_eq!(
            p.get(name).map(|(_, s, _)| s.as_str()),
            Some("VM_STATUS_RUNNING"),
            "{name} was confirmed to the client and is not RUNNING: {p:?}"
        );
    }
    eprintln!(
        "after reconciliation: {} VMs running ({} confirmed, {} finished by the controller)",
        p.len(),
        created.len(),
        p.len() - created.len()
    );

    for name in p.keys() {
        ctl.admin(&["vm", "delete", name, "--force"])
            .expect_ok("delete");
    }
    for n in &nodes {
        assert!(n.qemus().is_empty() && n.defined_vms().is_empty());
    }
}

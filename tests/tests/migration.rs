//! Live migration between two joined nodes on this machine (real QEMU under TCG, real
//! mTLS, QEMU's migration and NBD over TLS on loopback): a guest with an image-backed
//! root disk and a data disk keeps running across `kctl vm migrate` (its console counter
//! goes on, data written before is there after) and the source keeps nothing; bad
//! requests are refused with nothing changed; a destination killed mid-way leaves the
//! guest running on the source and nothing on the destination once it is back.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kcore_tests::cluster::{Kcored, node_args, start_node, wait_until};
use kcore_tests::{Run, guest};

const CONTROLLER: &[&str] = &[
    "controller",
    "--heartbeat-interval",
    "0.5",
    "--node-timeout",
    "3",
];

/// A raw ext4 image in a directory both nodes may import from.
fn image_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kcore-mig-img-")
        .tempdir()
        .expect("tempdir");
    let raw = dir.path().join("root.raw");
    std::fs::write(&raw, vec![0u8; 64 << 20]).expect("image file");
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&raw)
        .output()
        .expect("mkfs.ext4 (apt-get install e2fsprogs)");
    assert!(out.status.success(), "mkfs.ext4: {:?}", out);
    dir
}

struct Cluster {
    ctl: Kcored,
    nodes: Vec<Kcored>,
    img: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let img = image_dir();
        let ctl = Kcored::start(CONTROLLER);
        let extra = ["--import-dir", img.path().to_str().expect("utf-8")];
        let nodes: Vec<Kcored> = ["n1", "n2"]
            .iter()
            .map(|n| start_node(&ctl, n, &ctl.join_token(), &extra))
            .collect();
        wait_until(
            60,
            "two READY nodes",
            || ctl.ready_nodes() == ["n1", "n2"],
            || ctl.log(),
        );
        let src = img.path().join("root.raw");
        for n in ["n1", "n2"] {
            ctl.admin(&[
                "image",
                "import",
                "rootfs",
                src.to_str().expect("utf-8"),
                "--node",
                n,
            ])
            .expect_ok("image import");
        }
        Cluster { ctl, nodes, img }
    }

    fn logs(&self) -> String {
        let mut s = format!("controller:\n{}", self.ctl.log());
        for (i, n) in self.nodes.iter().enumerate() {
            s += &format!("\nn{}:\n{}", i + 1, n.log());
        }
        s
    }

    fn node_args(&self, name: &str) -> Vec<String> {
        node_args(
            &self.ctl,
            name,
            &["--import-dir", self.img.path().to_str().expect("utf-8")],
        )
    }

    /// A VM of the test guest's kernel and initrd (1 vCPU, 128 MiB) on `node`, booted with
    /// `cmdline`, and `extra` create arguments (disks, NICs).
    fn create_kernel_vm(&self, name: &str, node: &str, cmdline: &str, extra: &[&str]) {
        let g = guest();
        let mut args = vec![
            "vm",
            "create",
            name,
            "--node",
            node,
            "--vcpu",
            "1",
            "--memory",
            "128",
            "--kernel",
            g.kernel.to_str().expect("utf-8"),
            "--initrd",
            g.initrd.to_str().expect("utf-8"),
            "--cmdline",
            cmdline,
        ];
        args.extend_from_slice(extra);
        self.ctl.admin(&args).expect_ok("vm create");
    }

    /// A VM whose root disk is a clone of the image, with a data disk.
    fn create(&self, name: &str, node: &str) {
        self.create_kernel_vm(
            name,
            node,
            "console=ttyS0 quiet panic=-1 kcore.root=/dev/vda kcore.echo=off",
            &["--image", "rootfs", "--disk", "default:1"],
        );
    }

    fn console(&self, vm: &str) -> String {
        self.ctl
            .admin(&["vm", "console", vm, "--tail", "400"])
            .stdout
    }

    fn type_in(&self, vm: &str, line: &str) {
        let mut child = self
            .ctl
            .kctl_command(
                &self.ctl.pki("admin.crt"),
                &self.ctl.pki("admin.key"),
                &["vm", "console", vm],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kctl console");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{line}\n").as_bytes())
            .expect("type");
        let out = child.wait_with_output().expect("kctl console");
        Run::from(out).expect_ok("console input");
    }

    fn wait_console(&self, vm: &str, needle: &str, secs: u64) {
        wait_until(
            secs,
            &format!("{needle:?} on {vm}'s console"),
            || self.console(vm).contains(needle),
            || format!("{}\n{}", self.console(vm), self.logs()),
        );
    }

    fn vm(&self, name: &str) -> serde_json::Value {
        self.ctl
            .admin(&["-o", "json", "vm", "get", name])
            .expect_ok("vm get")
            .json()
    }

    fn vm_id(&self, name: &str) -> String {
        self.vm(name)["id"].as_str().expect("id").to_string()
    }

    /// Restart node `index` (stopped or killed) with the arguments it started with.
    fn restart_node(&mut self, index: usize) {
        let args = self.node_args(&format!("n{}", index + 1));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.nodes[index].restart(&refs);
    }

    /// Start `kctl vm migrate <vm> --to n2` slowed to 1 MiB/s (so that a kill lands in the
    /// middle), and wait until n2 runs the incoming QEMU and 2 s more.
    fn start_slow_migration(&self, vm: &str) -> std::process::Child {
        let child = self
            .ctl
            .kctl_command(
                &self.ctl.pki("admin.crt"),
                &self.ctl.pki("admin.key"),
                &["vm", "migrate", vm, "--to", "n2", "--bandwidth", "1"],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kctl migrate");
        wait_until(
            60,
            "n2 to have the incoming VM",
            || !self.nodes[1].qemus().is_empty(),
            || self.logs(),
        );
        std::thread::sleep(Duration::from_secs(2));
        child
    }

    /// Whether `vm` runs on `node` and its console counter went past `seen + 2`.
    fn counting_on(&self, vm: &str, node: &str, seen: u64) -> bool {
        let v = self.vm(vm);
        v["node"] == node
            && v["status"] == "VM_STATUS_RUNNING"
            && last_count(&self.console(vm)) > seen + 2
    }
}

/// The highest `CNT-<n>` on a console.
fn last_count(console: &str) -> u64 {
    console
        .split("CNT-")
        .skip(1)
        .filter_map(|s| {
            s.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

fn volumes_of(node: &Kcored) -> Vec<PathBuf> {
    let dir = node.dir.path().join("data/pools/default/volumes");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Whether `node` has nothing left of the VM `id` (no definition, no volume) while one
/// QEMU of it runs (elsewhere).
fn only_copy_elsewhere(node: &Kcored, id: &str) -> bool {
    node.defined_vms().is_empty()
        && kcore_tests::qemus_with_uuid(id).len() == 1
        && volumes_of(node).is_empty()
}

/// A guest started with a counter on its console, data on its root disk.
fn counting_guest(c: &Cluster, name: &str) {
    c.create(name, "n1");
    c.wait_console(name, "KCORE-GUEST-SHELL", 120);
    c.type_in(
        name,
        "echo persisted-$((40+2)) > /mnt/before; sync; i=0; while true; do i=$((i+1)); \
         echo CNT-$i; sleep 0.5; done &",
    );
    c.wait_console(name, "CNT-3", 60);
}

#[test]
fn a_running_guest_moves_with_its_disks_and_the_source_keeps_nothing() {
    let c = Cluster::start();
    counting_guest(&c, "mover");
    let before = c.vm("mover");
    let id = before["id"].as_str().expect("id").to_string();
    let macs_before = before["nics"].clone();
    assert_eq!(before["node"], "n1");

    // Refused, and nothing changes: unknown node, the same node, a bad name.
    c.ctl
        .admin(&["vm", "migrate", "mover", "--to", "nosuch"])
        .expect_err("unknown node", &["no node named \"nosuch\""]);
    c.ctl
        .admin(&["vm", "migrate", "mover", "--to", "n1"])
        .expect_err("same node", &["already on node n1"]);
    c.ctl
        .admin(&["vm", "migrate", "ghost", "--to", "n2"])
        .expect_err("unknown VM", &["ghost"]);
    assert!(c.nodes[1].defined_vms().is_empty(), "n2 got something");
    assert!(volumes_of(&c.nodes[1]).is_empty(), "n2 got a volume");

    let seen = last_count(&c.console("mover"));
    let started = Instant::now();
    let run = c
        .ctl
        .admin(&["vm", "migrate", "mover", "--to", "n2"])
        .expect_ok("migrate");
    let took = started.elapsed();
    assert!(
        run.stdout.contains("Migrated mover from n1 to n2"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("disk-mirror"), "{}", run.stderr);
    eprintln!("migrated in {took:?}: {}", run.stdout.trim());

    let after = c.vm("mover");
    assert_eq!(after["node"], "n2", "{after}");
    assert_eq!(after["status"], "VM_STATUS_RUNNING", "{after}");
    assert_eq!(after["id"], id.as_str());
    assert_eq!(after["nics"], macs_before);
    // The counter goes on from where it was (no reboot: no new READY marker).
    wait_until(
        60,
        "the counter to go on on n2",
        || last_count(&c.console("mover")) > seen + 2,
        || format!("{}\n{}", c.console("mover"), c.logs()),
    );
    assert!(
        !c.console("mover").contains("KCORE-GUEST-READY"),
        "the guest booted again:\n{}",
        c.console("mover")
    );
    c.type_in("mover", "cat /mnt/before");
    c.wait_console("mover", "persisted-42", 30);
    // The migration timeline is the VM's timeline now.
    let timeline = c
        .ctl
        .admin(&["vm", "timeline", "mover"])
        .expect_ok("timeline")
        .stdout;
    assert!(timeline.contains("migration_resumed"), "{timeline}");

    // The source has nothing left: no QEMU, no definition, no volume.
    wait_until(
        30,
        "n1 to have nothing of the VM",
        || c.nodes[0].qemus().is_empty() && c.nodes[0].defined_vms().is_empty(),
        || c.logs(),
    );
    assert!(
        volumes_of(&c.nodes[0]).is_empty(),
        "{:?}",
        volumes_of(&c.nodes[0])
    );
    assert_eq!(c.nodes[1].defined_vms(), vec![id.clone()]);

    // Back to a node that lacks the image its root disk is an overlay of: refused, and
    // nothing is made there (by placement once n1's heartbeat says so: "node n1 cannot
    // take the VM: no image rootfs"; by n1 itself before: "no image named \"rootfs\" on
    // node n1").
    c.ctl
        .admin(&["image", "delete", "rootfs", "--node", "n1"])
        .expect_ok("image delete");
    c.ctl
        .admin(&["vm", "migrate", "mover", "--to", "n1"])
        .expect_err("no image there", &["n1", "image", "rootfs"]);
    assert!(c.nodes[0].defined_vms().is_empty());
    assert!(volumes_of(&c.nodes[0]).is_empty());
    assert_eq!(c.vm("mover")["status"], "VM_STATUS_RUNNING");

    // A paused VM is refused, and stays paused where it is.
    c.ctl.admin(&["vm", "pause", "mover"]).expect_ok("pause");
    c.ctl
        .admin(&["vm", "migrate", "mover", "--to", "n1"])
        .expect_err("paused", &["only a running VM can be migrated"]);
    assert_eq!(c.vm("mover")["node"], "n2");
    assert!(c.nodes[0].defined_vms().is_empty());
}

#[test]
fn a_destination_killed_midway_leaves_the_guest_on_the_source() {
    let mut c = Cluster::start();
    counting_guest(&c, "stayer");
    let id = c.vm_id("stayer");
    let child = c.start_slow_migration("stayer");
    c.nodes[1].kill9();
    let out = child.wait_with_output().expect("kctl migrate");
    let run = Run::from(out);
    assert!(!run.ok, "the migration succeeded?\n{}", run.stdout);
    // The guest runs on the source, still counting.
    let seen = last_count(&c.console("stayer"));
    wait_until(
        60,
        "the guest to run on n1",
        || c.counting_on("stayer", "n1", seen),
        || format!("{}\n{}", c.console("stayer"), c.logs()),
    );
    // Back, n2 removes what it had made: no QEMU, no definition, no volume.
    c.restart_node(1);
    wait_until(
        60,
        "n2 to have nothing of the VM",
        || only_copy_elsewhere(&c.nodes[1], &id),
        || c.logs(),
    );
    assert_eq!(c.vm("stayer")["node"], "n1");
}

#[test]
fn a_drain_migrates_every_running_vm_to_another_node() {
    let c = Cluster::start();
    let names = ["d1", "d2", "d3"];
    for n in names {
        c.create_kernel_vm(
            n,
            "n1",
            "console=ttyS0 quiet panic=-1",
            &["--disk", "default:1"],
        );
    }
    for n in names {
        c.wait_console(n, "KCORE-GUEST-SHELL", 120);
    }
    let run = c
        .ctl
        .admin(&["node", "drain", "n1"])
        .expect_ok("node drain");
    for n in names {
        assert!(
            run.stdout.contains(&format!("{n}: migrated to n2")),
            "{}",
            run.stdout
        );
    }
    assert!(
        run.stdout
            .contains("Drained node n1: cordoned, migrated 3, stopped 0"),
        "{}",
        run.stdout
    );
    for n in names {
        let v = c.vm(n);
        assert_eq!(v["node"], "n2", "{v}");
        assert_eq!(v["status"], "VM_STATUS_RUNNING", "{v}");
        // Still the same guest: it answers on its console, it did not boot again.
        c.type_in(n, "echo alive-$((6*7))");
        c.wait_console(n, "alive-42", 30);
        assert!(!c.console(n).contains("KCORE-GUEST-READY"), "{n} rebooted");
    }
    wait_until(
        30,
        "n1 to be empty",
        || c.nodes[0].qemus().is_empty() && c.nodes[0].defined_vms().is_empty(),
        || c.logs(),
    );
    assert!(volumes_of(&c.nodes[0]).is_empty());
    assert_eq!(c.nodes[1].defined_vms().len(), 3);
}

/// A host bridge both nodes' VMs join (the nodes share this host, as two hosts share a
/// LAN), with a veth into a namespace of the test's own that has an address on it.
struct Lan {
    bridge: String,
    veth: String,
    ns: kcore_tests::NetNs,
}

impl Lan {
    fn new() -> Lan {
        let tag = format!("{:04x}", std::process::id() & 0xffff);
        let (bridge, veth, peer) = (
            format!("kmb{tag}"),
            format!("kmv{tag}a"),
            format!("kmv{tag}b"),
        );
        let ns = kcore_tests::NetNs::create();
        let ip = |args: &[&str]| kcore_tests::run_tool("ip", args).expect_ok("ip");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["link", "set", &bridge, "up"]);
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &veth, "master", &bridge, "up"]);
        ip(&["link", "set", &peer, "netns", &ns.name]);
        ns.ip(&["addr", "add", "10.213.77.1/24", "dev", &peer])
            .expect_ok("address");
        ns.ip(&["link", "set", &peer, "up"]).expect_ok("peer up");
        Lan { bridge, veth, ns }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = kcore_tests::run_tool("ip", &["link", "del", &self.veth]);
        let _ = kcore_tests::run_tool("ip", &["link", "del", &self.bridge]);
    }
}

#[test]
fn its_mac_and_address_still_answer_after_the_move() {
    let c = Cluster::start();
    let lan = Lan::new();
    c.ctl
        .admin(&[
            "network",
            "create",
            "lan",
            "--mode",
            "bridge",
            "--bridge",
            &lan.bridge,
        ])
        .expect_ok("network create");
    c.create_kernel_vm(
        "pinged",
        "n1",
        "console=ttyS0 quiet panic=-1 kcore.echo=off",
        &["--nic", "lan"],
    );
    c.wait_console("pinged", "KCORE-GUEST-SHELL", 120);
    let mac = c.vm("pinged")["nics"][0]["mac"]
        .as_str()
        .expect("a MAC")
        .to_string();
    c.type_in(
        "pinged",
        "ip addr add 10.213.77.2/24 dev eth0; ip link set eth0 up; echo NET-$((1+1))",
    );
    c.wait_console("pinged", "NET-2", 30);
    wait_until(
        30,
        "the guest to answer ping on n1",
        || lan.ns.ping("10.213.77.2"),
        || c.console("pinged"),
    );
    c.ctl
        .admin(&["vm", "migrate", "pinged", "--to", "n2"])
        .expect_ok("migrate");
    let v = c.vm("pinged");
    assert_eq!(v["node"], "n2");
    assert_eq!(v["nics"][0]["mac"].as_str(), Some(mac.as_str()), "{v}");
    // The guest's own view of its MAC, and its address answering from its new port.
    c.type_in("pinged", "cat /sys/class/net/eth0/address");
    c.wait_console("pinged", &mac, 30);
    wait_until(
        30,
        "the guest to answer ping on n2",
        || lan.ns.ping("10.213.77.2"),
        || format!("{}\n{}", c.console("pinged"), c.logs()),
    );
    // The source's tap is gone from the bridge: only n2's is a port besides the veth.
    let ports = kcore_tests::run_tool("ip", &["-o", "link", "show", "master", &lan.bridge])
        .expect_ok("bridge ports")
        .stdout;
    assert_eq!(ports.lines().count(), 2, "{ports}");
}

#[test]
fn a_controller_killed_midway_is_reconciled_to_one_running_copy() {
    let mut c = Cluster::start();
    counting_guest(&c, "orphan");
    let id = c.vm_id("orphan");
    let child = c.start_slow_migration("orphan");
    c.ctl.restart(CONTROLLER);
    let out = child.wait_with_output().expect("kctl migrate");
    assert!(!out.status.success(), "the migration succeeded?");
    // The source gave up when its stream went; the restarted controller removes the
    // destination's copy, which never ran.
    wait_until(
        60,
        "one running copy, on n1",
        || only_copy_elsewhere(&c.nodes[1], &id),
        || c.logs(),
    );
    let seen = last_count(&c.console("orphan"));
    wait_until(
        60,
        "the guest to run on n1, still counting",
        || c.counting_on("orphan", "n1", seen),
        || format!("{}\n{}", c.console("orphan"), c.logs()),
    );
    let events = c
        .ctl
        .admin(&["events", "--vm", "orphan"])
        .expect_ok("events")
        .stdout;
    assert!(
        events.contains("removed the copy on node n2 left by a migration that did not finish"),
        "{events}"
    );
}

#[test]
fn a_source_killed_midway_runs_the_guest_again_when_it_is_back() {
    let mut c = Cluster::start();
    counting_guest(&c, "homebody");
    let id = c.vm_id("homebody");
    let child = c.start_slow_migration("homebody");
    // The source's daemon dies; its QEMU (not its child) lives on, mid-migration.
    c.nodes[0].kill9();
    let out = child.wait_with_output().expect("kctl migrate");
    assert!(!out.status.success(), "the migration succeeded?");
    c.restart_node(0);
    let seen = last_count(&c.console("homebody"));
    wait_until(
        90,
        "one running copy, on n1, still counting",
        || c.counting_on("homebody", "n1", seen) && only_copy_elsewhere(&c.nodes[1], &id),
        || format!("{}\n{}", c.console("homebody"), c.logs()),
    );
}

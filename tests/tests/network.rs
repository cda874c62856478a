//! Networks end to end, each test in a network namespace of its own with the daemon inside:
//! guests on a nat network lease addresses from kcore's dnsmasq and ping each other and the
//! gateway, keep doing so across a daemon kill -9, get a NIC hot-plugged and unplugged; a
//! guest on bridge networks (the namespace's own bridge, and one kcore builds around an
//! uplink veth) is reachable from outside; deleting everything leaves no link, dnsmasq or
//! nftables table behind; subnets that can never be a LAN (loopback, multicast, link-local,
//! 0/0, ...) are refused by the controller and by the node before anything is made.

use std::time::{Duration, Instant};

use kcore_tests::{Daemon, NetNs, alive};

const BOOT: Duration = Duration::from_secs(90);

/// The busybox udhcpc the guest has needs a script to apply the lease: write one, then
/// lease an address on `iface`.
fn dhcp(d: &Daemon, vm: &str, iface: &str, tag: &str) {
    let script = "printf '#!/bin/sh\\ncase \"$1\" in\\n\
        deconfig) ip addr flush dev $interface; ip link set $interface up;;\\n\
        bound|renew) ip addr add $ip/$mask dev $interface; \
        [ -n \"$router\" ] && ip route add default via $router 2>/dev/null;;\\n\
        esac\\n' > /tmp/u.sh; chmod +x /tmp/u.sh";
    let line = format!(
        "{script}; udhcpc -i {iface} -s /tmp/u.sh -q -n -t 10 -T 2 >/dev/null 2>&1 && \
         echo DHCP-{tag}-$((40+2))"
    );
    d.type_until(
        vm,
        &line,
        &format!("DHCP-{tag}-42"),
        Duration::from_secs(30),
    );
}

/// The guest pings `ip` (which the host side may need a moment to learn).
fn guest_pings(d: &Daemon, vm: &str, ip: &str, tag: &str) {
    d.type_until(
        vm,
        &format!("ping -c 1 -W 2 {ip} >/dev/null && echo PING-{tag}-$((40+2))"),
        &format!("PING-{tag}-42"),
        Duration::from_secs(4),
    );
}

/// The address the VM's NIC `i` leased, as `kctl vm get` shows it (waits for it).
fn leased_ip(d: &Daemon, vm: &str, i: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = d.vm(vm);
        if let Some(ip) = v["nics"][i]["ip"].as_str().filter(|s| !s.is_empty()) {
            return ip.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "NIC {i} of {vm} shows no lease: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tap_names(ns: &NetNs) -> Vec<String> {
    ns.links()
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .filter(|n| n.starts_with("ktap-"))
        .collect()
}

fn assert_nothing_left(ns: &NetNs, d: &Daemon) {
    let links = ns.links();
    assert!(
        !links.contains("ktap-") && !links.contains("kbr-") && !links.contains("kcore:"),
        "kcore links left behind:\n{links}"
    );
    let tables = ns.nft_tables();
    assert!(!tables.contains("kcore_"), "nft tables left: {tables}");
    assert_eq!(d.any_dnsmasq(), None, "a dnsmasq is left running");
}

#[test]
fn nat_guests_lease_ping_survive_a_restart_and_hotplug() {
    let ns = NetNs::create();
    let mut d = Daemon::start_in_netns(&ns);
    let net = d
        .kctl(&[
            "-o",
            "json",
            "network",
            "create",
            "nat1",
            "--mode",
            "nat",
            "--subnet",
            "10.123.0.0/24",
        ])
        .expect_ok("network create")
        .json();
    assert_eq!(net["gateway"], "10.123.0.1", "{net}");
    assert_eq!(net["bridge"], "kbr-nat1", "{net}");
    assert_eq!(net["nodes"][0]["ready"], true, "{net}");
    assert!(ns.links().contains("kbr-nat1"));
    assert!(ns.nft_tables().contains("table ip kcore_nat1"));
    let dnsmasq = d.dnsmasq_pids();
    assert_eq!(dnsmasq.len(), 1, "one dnsmasq");
    let forward = ns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(forward.stdout.trim(), "1");

    let a = d.create_guest("a", "kcore.echo=off", &["--nic", "nat1"]);
    let b = d.create_guest(
        "b",
        "kcore.echo=off",
        &["--nic", "nat1,mac=52:54:00:12:34:56"],
    );
    // MACs: generated in 52:54:00, or as given; taps on the bridge.
    let mac_a = a["nics"][0]["mac"].as_str().expect("mac").to_string();
    assert!(mac_a.starts_with("52:54:00:"), "{a}");
    assert_eq!(b["nics"][0]["mac"], "52:54:00:12:34:56", "{b}");
    let tap_a = a["nics"][0]["tap"].as_str().expect("tap").to_string();
    assert!(tap_a.starts_with("ktap-"), "{a}");
    let phases: Vec<&str> = a["timeline"]["phases"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(phases.contains(&"network_ready"), "{phases:?}");
    let master = ns
        .ip(&["-o", "link", "show", &tap_a])
        .expect_ok("tap")
        .stdout;
    assert!(master.contains("master kbr-nat1"), "{master}");

    for vm in ["a", "b"] {
        d.wait_console(vm, "KCORE-GUEST-SHELL", 1, BOOT);
        dhcp(&d, vm, "eth0", vm);
    }
    let ip_a = leased_ip(&d, "a", 0);
    let ip_b = leased_ip(&d, "b", 0);
    assert!(ip_a.starts_with("10.123.0.") && ip_b.starts_with("10.123.0."));
    assert_ne!(ip_a, ip_b);
    guest_pings(&d, "a", &ip_b, "ab");
    guest_pings(&d, "b", &ip_a, "ba");
    guest_pings(&d, "a", "10.123.0.1", "agw");
    assert!(ns.ping(&ip_a), "the host side reaches a guest");

    // A delete of the network in use is refused.
    d.kctl(&["network", "delete", "nat1"])
        .expect_err("in use", &["in use by VM(s) a, b", "FailedPrecondition"]);

    // kill -9 of the daemon: QEMU keeps its taps, dnsmasq keeps serving and is adopted.
    let pid_a = a["pid"].as_u64().expect("pid") as u32;
    // A leftover tap of a VM that no longer exists goes at the restart; a tap that is not
    // kcore's stays.
    for (tap, alias) in [
        (
            "ktap-leftover",
            Some("kcore:tap:00000000-0000-4000-8000-000000000000/net0"),
        ),
        ("mytap0", None),
    ] {
        ns.ip(&["tuntap", "add", tap, "mode", "tap"])
            .expect_ok("tuntap add");
        if let Some(alias) = alias {
            ns.ip(&["link", "set", tap, "alias", alias])
                .expect_ok("alias");
        }
    }
    d.restart();
    let links = ns.links();
    assert!(
        !links.contains("ktap-leftover") && links.contains("mytap0"),
        "{links}"
    );
    assert_eq!(d.dnsmasq_pids(), dnsmasq, "the same dnsmasq, adopted");
    let mut taps = tap_names(&ns);
    taps.sort();
    assert_eq!(taps.len(), 2, "{taps:?}");
    assert!(alive(pid_a));
    assert_eq!(leased_ip(&d, "a", 0), ip_a);
    guest_pings(&d, "a", &ip_b, "ab2");
    guest_pings(&d, "b", "10.123.0.1", "bgw2");

    // Hotplug a second NIC into a: eth1 appears with its MAC and leases an address.
    let v = d
        .kctl(&["-o", "json", "vm", "nic", "attach", "a", "nat1"])
        .expect_ok("nic attach")
        .json();
    let mac1 = v["nics"][1]["mac"].as_str().expect("mac").to_string();
    let tap1 = v["nics"][1]["tap"].as_str().expect("tap").to_string();
    assert_ne!(mac1, mac_a);
    assert!(tap_names(&ns).contains(&tap1));
    d.type_until(
        "a",
        "cat /sys/class/net/eth1/address",
        &mac1,
        Duration::from_secs(3),
    );
    dhcp(&d, "a", "eth1", "a1");
    let ip_a1 = leased_ip(&d, "a", 1);
    assert!(ns.ping(&ip_a1), "the hot-plugged NIC is on the network");
    // A MAC that is taken is refused, in the same VM or another.
    d.kctl(&["vm", "nic", "attach", "b", &format!("nat1,mac={mac1}")])
        .expect_err("duplicate MAC", &["already used by VM a", "AlreadyExists"]);
    // Unplug it: gone from the guest, its tap gone from the host.
    let v = d
        .kctl(&["-o", "json", "vm", "nic", "detach", "a", &mac1])
        .expect_ok("nic detach")
        .json();
    assert_eq!(v["nics"].as_array().map(Vec::len), Some(1), "{v}");
    d.type_until(
        "a",
        "[ -e /sys/class/net/eth1 ] || echo ETH1-$((6*7))",
        "ETH1-42",
        Duration::from_secs(3),
    );
    assert!(!tap_names(&ns).contains(&tap1), "{}", ns.links());
    // The boot NIC sits on q35's root bus: it only leaves a stopped VM.
    d.kctl(&["vm", "nic", "detach", "a", "net0"])
        .expect_err("root bus", &["root bus"]);

    // A stopped VM has no taps; deleting VMs and then the network leaves nothing behind.
    d.kctl(&["vm", "stop", "b", "--force"]).expect_ok("stop");
    assert_eq!(tap_names(&ns).len(), 1, "{}", ns.links());
    for vm in ["a", "b"] {
        d.kctl(&["vm", "delete", vm, "--force"])
            .expect_ok("vm delete");
    }
    assert!(tap_names(&ns).is_empty(), "{}", ns.links());
    d.kctl(&["network", "delete", "nat1"])
        .expect_ok("network delete");
    assert_nothing_left(&ns, &d);
    for p in dnsmasq {
        assert!(!alive(p), "dnsmasq {p} stopped");
    }
}

#[test]
fn bridge_networks_reach_the_lan() {
    let ns = NetNs::create();
    let lan2 = NetNs::create();
    // The namespace's own bridge with an address: the "host side" of a LAN.
    ns.ip(&["link", "add", "br-host", "type", "bridge"])
        .expect_ok("bridge");
    ns.ip(&["addr", "add", "192.168.77.1/24", "dev", "br-host"])
        .expect_ok("addr");
    ns.ip(&["link", "set", "br-host", "up"]).expect_ok("up");
    // An uplink: a veth whose other end is in a second namespace (another machine).
    ns.ip(&[
        "link", "add", "up0", "type", "veth", "peer", "name", "peer0", "netns", &lan2.name,
    ])
    .expect_ok("veth");
    ns.ip(&["link", "set", "up0", "up"]).expect_ok("up0 up");
    lan2.ip(&["addr", "add", "192.168.78.1/24", "dev", "peer0"])
        .expect_ok("addr");
    lan2.ip(&["link", "set", "peer0", "up"])
        .expect_ok("peer up");

    let d = Daemon::start_in_netns(&ns);
    d.kctl(&[
        "network", "create", "lan", "--mode", "bridge", "--bridge", "br-host",
    ])
    .expect_ok("bridge network on the host bridge");
    d.kctl(&[
        "network", "create", "lab", "--mode", "bridge", "--bridge", "kbr-lab", "--uplink", "up0",
    ])
    .expect_ok("bridge network around an uplink");
    let up0 = ns
        .ip(&["-o", "link", "show", "up0"])
        .expect_ok("up0")
        .stdout;
    assert!(up0.contains("master kbr-lab"), "{up0}");
    let list = d
        .kctl(&["-o", "json", "network", "list"])
        .expect_ok("list")
        .json();
    let names: Vec<&str> = list["networks"]
        .as_array()
        .expect("networks")
        .iter()
        .filter_map(|n| n["name"].as_str())
        .collect();
    assert_eq!(names, ["lab", "lan"]);

    d.create_guest(
        "g",
        "kcore.echo=off",
        &["--nic", "lan", "--nic", "lab,model=virtio"],
    );
    d.wait_console("g", "KCORE-GUEST-SHELL", 1, BOOT);
    d.type_until(
        "g",
        "ip addr add 192.168.77.10/24 dev eth0; ip link set eth0 up; \
         ip addr add 192.168.78.10/24 dev eth1; ip link set eth1 up; echo UP-$((40+2))",
        "UP-42",
        Duration::from_secs(10),
    );
    let reach = |ns: &NetNs, ip: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ns.ping(ip) {
            assert!(
                Instant::now() < deadline,
                "{ip} unreachable from {}",
                ns.name
            );
        }
    };
    reach(&ns, "192.168.77.10");
    reach(&lan2, "192.168.78.10");
    let v = d.vm("g");
    assert_eq!(v["nics"][0]["network"], "lan");
    assert_eq!(v["nics"][1]["ip"], "", "no lease on a bridge network: {v}");

    d.kctl(&["vm", "delete", "g", "--force"])
        .expect_ok("delete");
    for n in ["lan", "lab"] {
        d.kctl(&["network", "delete", n])
            .expect_ok("network delete");
    }
    // kcore's bridge is gone, the uplink is free again, the host's bridge untouched.
    let links = ns.links();
    assert!(
        !links.contains("kbr-lab") && !links.contains("ktap-"),
        "{links}"
    );
    let up0 = ns
        .ip(&["-o", "link", "show", "up0"])
        .expect_ok("up0")
        .stdout;
    assert!(!up0.contains("master"), "{up0}");
    let br = ns
        .ip(&["-o", "addr", "show", "br-host"])
        .expect_ok("br-host")
        .stdout;
    assert!(br.contains("192.168.77.1/24"), "{br}");
    assert_nothing_left(&ns, &d);
}

#[test]
fn bad_network_input_leaves_nothing_behind() {
    let ns = NetNs::create();
    let mut d = Daemon::start_in_netns(&ns);
    // A link with an address: the host routes 10.124.0.0/24 there.
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"])
        .expect_ok("veth");
    ns.ip(&["addr", "add", "10.124.0.1/24", "dev", "v0"])
        .expect_ok("addr");
    ns.ip(&["link", "set", "v0", "up"]).expect_ok("up");
    let baseline = ns.links();
    let net = |args: &[&str]| {
        let mut all = vec!["network", "create"];
        all.extend_from_slice(args);
        d.kctl(&all)
    };

    let cases: &[(&[&str], &[&str])] = &[
        (
            &["r", "--mode", "nat", "--subnet", "10.124.0.0/16"],
            &[
                "overlaps the route to 10.124.0.0/24 on v0",
                "InvalidArgument",
            ],
        ),
        (
            &[
                "u", "--mode", "bridge", "--bridge", "kbr-u", "--uplink", "nope0",
            ],
            &["uplink \"nope0\" does not exist", "NotFound"],
        ),
        (
            &[
                "u", "--mode", "bridge", "--bridge", "kbr-u", "--uplink", "v0",
            ],
            &[
                "uplink v0 on node node1 carries the host's traffic",
                "FailedPrecondition",
            ],
        ),
        (
            &["l", "--mode", "bridge", "--bridge", "averyverylongbridge"],
            &["at most 15", "InvalidArgument"],
        ),
        (
            &["l", "--mode", "bridge", "--bridge", "nobr0"],
            &["bridge nobr0 does not exist", "FailedPrecondition"],
        ),
        (
            &["l", "--mode", "bridge", "--bridge", "v0"],
            &["v0 on node node1 is not a bridge", "InvalidArgument"],
        ),
        (
            &[
                "n",
                "--mode",
                "nat",
                "--subnet",
                "10.125.0.0/24",
                "--bridge",
                "v0",
            ],
            &["v0 exists on node node1 and is not this network's bridge"],
        ),
        (
            &["n", "--mode", "nat", "--subnet", "10.125.0.1/24"],
            &["host bits are set", "InvalidArgument"],
        ),
        (&["n", "--mode", "nat"], &["needs a subnet"]),
        (
            &["Bad", "--mode", "nat", "--subnet", "10.125.0.0/24"],
            &["invalid network name"],
        ),
    ];
    for (args, needles) in cases {
        net(args).expect_err(&format!("network create {args:?}"), needles);
        assert_eq!(ns.links(), baseline, "{args:?} left a link");
        assert!(!ns.nft_tables().contains("kcore_"), "{args:?} left a table");
        assert_eq!(d.any_dnsmasq(), None, "{args:?} left a dnsmasq");
    }
    let list = d
        .kctl(&["-o", "json", "network", "list"])
        .expect_ok("list")
        .json();
    assert!(
        list["networks"].as_array().is_none_or(Vec::is_empty),
        "no network was kept: {list}"
    );

    net(&["n1", "--mode", "nat", "--subnet", "10.126.0.0/24"]).expect_ok("n1");
    net(&["n1", "--mode", "nat", "--subnet", "10.127.0.0/24"])
        .expect_err("duplicate", &["already exists", "AlreadyExists"]);
    net(&["n2", "--mode", "nat", "--subnet", "10.126.0.0/16"])
        .expect_err("overlap", &["overlaps network n1 (10.126.0.0/24)"]);
    net(&[
        "n3",
        "--mode",
        "nat",
        "--subnet",
        "10.128.0.0/24",
        "--bridge",
        "kbr-n1",
    ])
    .expect_err("same bridge", &["bridge kbr-n1 is network n1's"]);

    let g = kcore_tests::guest();
    let kernel = g.kernel.to_str().expect("utf8");
    let vm = |name: &str, nic: &str| {
        d.kctl(&[
            "vm",
            "create",
            name,
            "--vcpu",
            "1",
            "--memory",
            "64",
            "--kernel",
            kernel,
            "--nic",
            nic,
            "--start=false",
        ])
    };
    vm("x", "nope").expect_err(
        "unknown network",
        &["no network named \"nope\"", "NotFound"],
    );
    vm("x", "n1,mac=zz").expect_err("bad MAC", &["invalid MAC address \"zz\""]);
    vm("x", "n1,mac=01:00:5e:00:00:01").expect_err("multicast MAC", &["multicast"]);
    vm("x", "n1,model=rtl8139").expect_err("model", &["unknown NIC model"]);
    vm("x", "n1,mac=52:54:00:aa:bb:cc").expect_ok("x");
    vm("y", "n1,mac=52:54:00:AA:BB:CC").expect_err(
        "duplicate MAC",
        &["MAC 52:54:00:aa:bb:cc is already used by VM x"],
    );
    assert!(
        d.kctl(&["vm", "get", "y"]).stderr.contains("NotFound"),
        "a refused VM is not kept"
    );
    // A stopped VM's NICs change in its spec only: no tap until it starts.
    d.kctl(&["vm", "nic", "attach", "x", "n1"])
        .expect_ok("offline attach");
    assert!(!ns.links().contains("ktap-"));
    d.kctl(&["vm", "nic", "detach", "x", "1"])
        .expect_ok("offline detach");
    d.kctl(&["vm", "nic", "detach", "x", "net7"])
        .expect_err("unknown NIC", &["no NIC \"net7\"", "NotFound"]);
    d.kctl(&["network", "delete", "n1"])
        .expect_err("in use", &["in use by VM(s) x"]);
    d.kctl(&["network", "delete", "zz"])
        .expect_err("unknown", &["no network named \"zz\"", "NotFound"]);
    // A network that cannot be ensured after a restart (a route now overlaps it) is
    // reported, its bridge kept; once the route is gone the node repairs it.
    ns.ip(&["route", "add", "10.126.0.0/25", "dev", "v0"])
        .expect_ok("route");
    d.restart();
    let n1 = d
        .kctl(&["-o", "json", "network", "get", "n1"])
        .expect_ok("get")
        .json();
    assert_eq!(n1["nodes"][0]["ready"], false, "{n1}");
    let msg = n1["nodes"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("overlaps the route to 10.126.0.0/25"), "{n1}");
    assert!(ns.links().contains("kbr-n1"), "the bridge stays");
    ns.ip(&["route", "del", "10.126.0.0/25", "dev", "v0"])
        .expect_ok("route del");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n1 = d
            .kctl(&["-o", "json", "network", "get", "n1"])
            .expect_ok("get")
            .json();
        if n1["nodes"][0]["ready"] == true && n1["nodes"][0]["dnsmasq_pid"].as_u64() > Some(0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not repaired: {n1}");
        std::thread::sleep(Duration::from_millis(500));
    }
    d.kctl(&["vm", "delete", "x"]).expect_ok("delete x");
    d.kctl(&["network", "delete", "n1"]).expect_ok("delete n1");
    assert_eq!(ns.links(), baseline);
    assert_nothing_left(&ns, &d);
}

/// Call the node agent itself (its `<run-dir>/node.sock`), as a controller would: the node
/// must refuse a bad network on its own, whatever the controller let through.
fn node_ensure_network(d: &Daemon, net: kcore_proto::v1::Network) -> tonic::Status {
    use kcore_proto::v1::node_agent_client::NodeAgentClient;
    let path = d.run_dir().join("node.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let ch = tonic::transport::Endpoint::try_from("http://[::]:50051")
            .expect("endpoint")
            .connect_with_connector(tower::service_fn(move |_| {
                let p = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(p).await?,
                    ))
                }
            }))
            .await
            .expect("dial node.sock");
        match NodeAgentClient::new(ch).ensure_network(net).await {
            Ok(r) => panic!("the node accepted the network: {:?}", r.into_inner()),
            Err(s) => s,
        }
    })
}

#[test]
fn reserved_subnets_are_refused_before_anything_is_made() {
    let ns = NetNs::create();
    let d = Daemon::start_in_netns(&ns);
    let baseline = ns.links();
    let nothing_made = |what: &str| {
        assert_eq!(ns.links(), baseline, "{what} left a link");
        let tables = ns.nft_tables();
        assert!(!tables.contains("kcore_"), "{what} left a table: {tables}");
        assert_eq!(d.any_dnsmasq(), None, "{what} left a dnsmasq");
        let list = d
            .kctl(&["-o", "json", "network", "list"])
            .expect_ok("list")
            .json();
        assert!(
            list["networks"].as_array().is_none_or(Vec::is_empty),
            "{what} kept a network: {list}"
        );
    };
    for (subnet, needle) in [
        ("127.1.0.0/24", "overlaps the loopback range 127.0.0.0/8"),
        ("224.1.0.0/24", "overlaps the multicast range 224.0.0.0/4"),
        (
            "169.254.0.0/16",
            "overlaps the link-local range 169.254.0.0/16",
        ),
        ("0.0.0.0/0", "a /0 is far too large"),
        ("0.0.0.0/8", "overlaps the \"this network\" range 0.0.0.0/8"),
        (
            "255.255.255.255/32",
            "the broadcast address 255.255.255.255",
        ),
        ("10.99.0.0/31", "too small for a gateway and a DHCP range"),
        ("10.99.0.1/32", "too small for a gateway and a DHCP range"),
    ] {
        d.kctl(&[
            "network", "create", "x", "--mode", "nat", "--subnet", subnet,
        ])
        .expect_err(
            &format!("network create --subnet {subnet}"),
            &[
                &format!("invalid subnet \"{subnet}\""),
                needle,
                "InvalidArgument",
            ],
        );
        nothing_made(subnet);
    }

    // The node refuses on its own too (a controller of another version, or a bug in ours).
    let status = node_ensure_network(
        &d,
        kcore_proto::v1::Network {
            name: "x".into(),
            mode: kcore_proto::v1::NetworkMode::Nat as i32,
            subnet: "127.1.0.0/24".into(),
            bridge: "kbr-x".into(),
            ..Default::default()
        },
    );
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("loopback range 127.0.0.0/8"),
        "{status:?}"
    );
    nothing_made("EnsureNetwork on the node");

    // A good subnet still works, and the daemon is none the worse.
    d.kctl(&[
        "network",
        "create",
        "x",
        "--mode",
        "nat",
        "--subnet",
        "10.99.0.0/24",
    ])
    .expect_ok("a private subnet");
    assert!(ns.nft_tables().contains("table ip kcore_x"));
    d.kctl(&["network", "delete", "x"]).expect_ok("delete");
    assert_nothing_left(&ns, &d);
}

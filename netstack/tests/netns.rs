//! Kernel tests: bridges, taps, uplinks, dnsmasq and nftables, each inside its own
//! throwaway network namespace (see `common`). Missing `ip`, `dnsmasq` or `nft` fail the
//! tests with the Debian package to install; nothing is skipped.

mod common;

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{exec_in, in_netns, require};
use kcore_netstack::dnsmasq::{self, Dnsmasq, DnsmasqConfig, Upstream};
use kcore_netstack::nft::{self, NatSpec};
use kcore_netstack::tap::{self, TapSpec};
use kcore_netstack::tool;
use kcore_netstack::{BridgeSpec, Ipv4Cidr, MacAddr, Mark, NetError, Netlink};

/// Wait until a link is gone: the kernel unregisters a tap as its last reference drops,
/// which under load can finish a moment after the close or TUNSETPERSIST that ended it.
async fn wait_gone(nl: &Netlink, name: &str) {
    for _ in 0..100 {
        if nl.get(name).await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} still exists 2 s after its last reference went");
}

fn bridge_spec(name: &str, owner: &str, mtu: Option<u32>) -> BridgeSpec {
    BridgeSpec {
        name: name.to_string(),
        mac: MacAddr::generate().expect("mac"),
        mtu,
        mark: Mark::new("bridge", owner).expect("mark"),
    }
}

/// `ip -d link show <name>` inside the namespace.
fn ip_details(ns: &str, name: &str) -> String {
    exec_in(ns, tool::IP, &["-d", "link", "show", name])
}

#[test]
fn bridge_tap_and_uplink_lifecycle() {
    require(tool::IP);
    in_netns(|ns| async move {
        let nl = Netlink::new().expect("netlink");

        // A bridge with a fixed MAC, MTU 9000, up and marked.
        let spec = bridge_spec("kbr-test", "testnet", Some(9000));
        let br = nl.create_bridge(&spec).await.expect("create bridge");
        assert_eq!(br.kind.as_deref(), Some("bridge"));
        assert_eq!(br.mac, Some(spec.mac));
        assert_eq!(br.mtu, Some(9000));
        assert!(br.up);
        assert_eq!(br.mark(), Some(spec.mark.clone()));

        // Creating it again is a clear error; ensuring it is idempotent.
        let err = nl.create_bridge(&spec).await.expect_err("exists");
        assert!(matches!(err, NetError::LinkExists { .. }), "{err}");
        let again = nl.ensure_bridge(&spec).await.expect("ensure");
        assert_eq!(again.index, br.index);
        // Another owner's spec for the same name is refused.
        let other = bridge_spec("kbr-test", "othernet", None);
        assert!(matches!(
            nl.ensure_bridge(&other).await,
            Err(NetError::NotKcore { .. })
        ));

        // A name over 15 bytes gets the clear error, before the kernel is asked.
        let long = bridge_spec("kbr-much-too-long", "x", None);
        let err = nl.create_bridge(&long).await.expect_err("too long");
        assert_eq!(
            err.to_string(),
            "invalid interface name \"kbr-much-too-long\": 17 bytes long; Linux interface names are at most 15"
        );
        let err = tap::open_tap(&TapSpec::new("ktap-much-too-long")).expect_err("too long");
        assert!(matches!(err, NetError::InvalidName { .. }), "{err}");

        // A tap with vnet_hdr, owned by nobody, attached to the bridge.
        let tap_mark = Mark::new("tap", "vm-1:0").expect("mark");
        let mut tap_spec = TapSpec::new("ktap-test0");
        tap_spec.owner = Some(65534);
        tap_spec.group = Some(65534);
        let fd = nl
            .create_tap(&tap_spec, "kbr-test", &tap_mark)
            .await
            .expect("create tap");
        assert!(fd.as_raw_fd() >= 0);
        let tap = nl.require("tap", "ktap-test0").await.expect("tap exists");
        assert_eq!(tap.kind.as_deref(), Some("tun"));
        assert_eq!(tap.controller, Some(br.index));
        assert!(tap.up);
        assert_eq!(tap.mtu, Some(9000), "tap takes the bridge MTU");
        assert_eq!(tap.mark(), Some(tap_mark.clone()));
        // The bridge kept its MAC and MTU with a port in it.
        let br_now = nl.require("bridge", "kbr-test").await.expect("bridge");
        assert_eq!(br_now.mac, Some(spec.mac));
        assert_eq!(br_now.mtu, Some(9000));
        assert!(br_now.up);

        // What iproute2 sees agrees.
        let details = ip_details(&ns, "ktap-test0");
        assert!(details.contains("master kbr-test"), "{details}");
        assert!(details.contains("tun type tap"), "{details}");
        assert!(details.contains("vnet_hdr on"), "{details}");
        assert!(details.contains("persist off"), "{details}");
        assert!(
            details.contains("user nobody") || details.contains("user 65534"),
            "{details}"
        );
        assert!(
            details.contains("bridge_slave state forwarding"),
            "{details}"
        );
        assert!(details.contains("alias kcore:tap:vm-1:0"), "{details}");
        assert!(details.contains("mtu 9000"), "{details}");
        assert!(details.contains("<BROADCAST,MULTICAST,UP"), "{details}");
        let details = ip_details(&ns, "kbr-test");
        assert!(details.contains("bridge forward_delay 0"), "{details}");
        assert!(
            details.contains(&format!("link/ether {}", spec.mac)),
            "{details}"
        );
        assert!(details.contains("alias kcore:bridge:testnet"), "{details}");
        assert!(details.contains(",UP"), "{details}");

        // A missing uplink is a clear error.
        let err = nl
            .enslave("eth-missing", "kbr-test")
            .await
            .expect_err("missing");
        assert_eq!(err.to_string(), "uplink \"eth-missing\" does not exist");
        let err = nl
            .enslave("ktap-test0", "kbr-none")
            .await
            .expect_err("no bridge");
        assert_eq!(err.to_string(), "bridge \"kbr-none\" does not exist");

        // A veth pair (not kcore's) as an uplink.
        exec_in(
            &ns,
            tool::IP,
            &[
                "link", "add", "kup0", "type", "veth", "peer", "name", "kup1",
            ],
        );
        nl.enslave("kup0", "kbr-test")
            .await
            .expect("enslave uplink");
        let up = nl.require("uplink", "kup0").await.expect("veth");
        assert_eq!(up.controller, Some(br.index));
        assert!(up.up);
        assert!(!up.is_kcore(), "the uplink is not marked");
        assert!(ip_details(&ns, "kup0").contains("master kbr-test"));
        // kcore refuses to delete or reconfigure a link it does not own.
        assert!(matches!(
            nl.delete("kup0").await,
            Err(NetError::NotKcore { .. })
        ));
        assert!(matches!(
            nl.set_mtu("kup0", 1400).await,
            Err(NetError::NotKcore { .. })
        ));
        nl.release("kup0").await.expect("release");
        assert_eq!(
            nl.require("uplink", "kup0").await.expect("veth").controller,
            None
        );

        // A bridge that is not kcore's is neither used nor deleted.
        exec_in(&ns, tool::IP, &["link", "add", "hostbr", "type", "bridge"]);
        assert!(matches!(
            nl.enslave("kup0", "hostbr").await,
            Err(NetError::NotKcore { .. })
        ));
        assert!(matches!(
            nl.delete("hostbr").await,
            Err(NetError::NotKcore { .. })
        ));

        // A tap joins the host's own bridge (a bridge-mode network) with its host-side MAC
        // and the bridge's MTU, in one request; the bridge stays unmarked.
        let hostbr = nl.require("bridge", "hostbr").await.expect("hostbr");
        let fd4 = tap::open_tap(&TapSpec::new("ktap-test4")).expect("tap 4");
        let mac: MacAddr = "fe:54:00:12:34:56".parse().expect("mac");
        let mark4 = Mark::new("tap", "vm-3:0").expect("mark");
        nl.attach_tap("ktap-test4", &hostbr, &mark4, Some(mac))
            .await
            .expect("attach to the host bridge");
        let t4 = nl.require("tap", "ktap-test4").await.expect("tap 4");
        assert_eq!(t4.controller, Some(hostbr.index));
        assert_eq!(t4.mac, Some(mac));
        assert_eq!(t4.mtu, hostbr.mtu);
        assert!(t4.up);
        assert_eq!(t4.mark(), Some(mark4.clone()));
        assert!(!nl.require("bridge", "hostbr").await.expect("br").is_kcore());
        // On its bridge already: nothing to do; off it (a bridge made again): back on.
        assert!(!nl.reattach_tap(&t4, &hostbr).await.expect("reattach"));
        exec_in(&ns, tool::IP, &["link", "set", "ktap-test4", "nomaster"]);
        let t4 = nl.require("tap", "ktap-test4").await.expect("tap 4");
        assert_eq!(t4.controller, None);
        assert!(nl.reattach_tap(&t4, &hostbr).await.expect("reattach"));
        let t4 = nl.require("tap", "ktap-test4").await.expect("tap 4");
        assert_eq!(t4.controller, Some(hostbr.index));
        // Only a kcore tap is put back, and only a bridge takes one.
        let up = nl.require("uplink", "kup0").await.expect("veth");
        assert!(matches!(
            nl.reattach_tap(&up, &hostbr).await,
            Err(NetError::NotKcore { .. })
        ));
        let err = nl
            .attach_tap("ktap-test4", &up, &mark4, None)
            .await
            .expect_err("a veth is no bridge");
        assert!(matches!(err, NetError::Invalid { .. }), "{err}");
        drop(fd4);

        // MTU and up on a kcore link.
        nl.set_mtu("kbr-test", 8000).await.expect("set mtu");
        assert_eq!(
            nl.require("bridge", "kbr-test").await.expect("br").mtu,
            Some(8000)
        );
        nl.set_up("kbr-test").await.expect("up");

        // A persistent tap outlives its descriptor and is deleted by delete_tap.
        let mut persistent = TapSpec::new("ktap-test1");
        persistent.persist = true;
        persistent.owner = Some(65534);
        let fd1 = nl
            .create_tap(
                &persistent,
                "kbr-test",
                &Mark::new("tap", "vm-1:1").expect("mark"),
            )
            .await
            .expect("persistent tap");
        drop(fd1);
        assert!(
            nl.get("ktap-test1").await.expect("get").is_some(),
            "persistent"
        );
        assert!(nl.delete_tap("ktap-test1").await.expect("delete tap"));
        assert!(nl.get("ktap-test1").await.expect("get").is_none());
        assert!(!nl.delete_tap("ktap-test1").await.expect("already gone"));
        // delete_tap refuses what is not a tap.
        assert!(nl.delete_tap("kbr-test").await.is_err());

        // A persistent tap is also removed by clearing TUNSETPERSIST once nothing has it open.
        let mut p2 = TapSpec::new("ktap-test2");
        p2.persist = true;
        p2.vnet_hdr = false;
        drop(tap::open_tap(&p2).expect("persistent tap"));
        assert!(nl.get("ktap-test2").await.expect("get").is_some());
        assert!(!ip_details(&ns, "ktap-test2").contains("vnet_hdr on"));
        tap::set_persist("ktap-test2", false).expect("clear persist");
        wait_gone(&nl, "ktap-test2").await;

        // The listing has exactly kcore's links.
        let mut marked: Vec<String> = nl
            .list_kcore_links()
            .await
            .expect("list")
            .into_iter()
            .map(|l| l.name)
            .collect();
        marked.sort();
        assert_eq!(marked, ["kbr-test", "ktap-test0"]);
        let all = nl.list().await.expect("list all");
        assert!(all.iter().any(|l| l.name == "lo"));

        // A non-persistent tap goes away with its descriptor (the kernel unregisters it as
        // the last reference drops, which under load can finish a moment after close).
        drop(fd);
        wait_gone(&nl, "ktap-test0").await;

        // Delete everything of kcore's: nothing marked remains, the rest is untouched.
        nl.create_tap(
            &TapSpec {
                persist: true,
                ..TapSpec::new("ktap-test3")
            },
            "kbr-test",
            &Mark::new("tap", "vm-2:0").expect("mark"),
        )
        .await
        .map(drop)
        .expect("tap 3");
        assert_eq!(
            nl.delete_kcore_links(Some("vm-2:0"))
                .await
                .expect("delete by owner"),
            ["ktap-test3"]
        );
        assert_eq!(
            nl.delete_kcore_links(None).await.expect("delete all"),
            ["kbr-test"]
        );
        assert!(nl.list_kcore_links().await.expect("list").is_empty());
        for name in ["kup0", "kup1", "hostbr", "lo"] {
            assert!(
                nl.get(name).await.expect("get").is_some(),
                "{name} must survive"
            );
        }
    });
}

/// Kills a dnsmasq left running by a failed assertion, so it does not outlive the test.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if dnsmasq::is_running_dnsmasq(self.0)
            && let Ok(pid) = i32::try_from(self.0)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn dnsmasq_serves_the_bridge() {
    require(tool::IP);
    let program = require(tool::DNSMASQ);
    in_netns(|_ns| async move {
        let nl = Netlink::new().expect("netlink");
        let subnet: Ipv4Cidr = "10.77.0.0/24".parse().expect("cidr");
        let spec = bridge_spec("kbr-dns", "dnsnet", None);
        nl.create_bridge(&spec).await.expect("bridge");
        let gw = subnet.gateway().expect("gw");
        nl.add_address("kbr-dns", gw, subnet.prefix())
            .await
            .expect("address");

        // The gateway route is visible in this thread's namespace, and only here.
        let routes = kcore_netstack::subnet::host_routes().expect("routes");
        assert!(
            routes
                .iter()
                .any(|r| r.iface == "kbr-dns" && r.destination == subnet),
            "{routes:?}"
        );
        assert!(
            kcore_netstack::subnet::conflicting_routes(&subnet, &routes, Some("kbr-dns"))
                .is_empty()
        );
        assert_eq!(
            kcore_netstack::subnet::conflicting_routes(&subnet, &routes, None).len(),
            1
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = DnsmasqConfig::new("kbr-dns", subnet, dir.path());
        cfg.upstream = Upstream::LocalOnly;
        let argv = dnsmasq::dnsmasq_argv(&program, &cfg).expect("argv");
        let log_path = dir.path().join("dnsmasq.log");
        let log = std::fs::File::create(&log_path).expect("log");
        let mut proc = Dnsmasq::spawn(&argv, &cfg, Some(&log)).expect("spawn dnsmasq");
        if let Err(e) = proc.wait_ready(Duration::from_secs(10)).await {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("dnsmasq did not start: {e}\n{text}");
        }
        let pid = proc.pid();
        let _kill = KillOnDrop(pid);
        assert_eq!(
            dnsmasq::read_pid_file(&cfg.pid_file).expect("pid"),
            Some(pid)
        );
        assert!(dnsmasq::is_running_dnsmasq(pid));
        assert!(cfg.lease_file.exists(), "lease file created");
        assert!(
            dnsmasq::read_leases(&cfg.lease_file)
                .expect("leases")
                .is_empty()
        );
        // It listens on the DHCP port (67 = 0x0043) and DNS (53 = 0x0035) on the gateway.
        let udp = std::fs::read_to_string("/proc/thread-self/net/udp").expect("udp");
        assert!(udp.contains(":0043 "), "no DHCP socket:\n{udp}");
        let gw_hex = format!("{:08X}:0035", u32::from_ne_bytes(gw.octets()));
        assert!(udp.contains(&gw_hex), "no DNS socket on {gw}:\n{udp}");
        assert_ne!(gw, Ipv4Addr::UNSPECIFIED);

        let status = proc.stop(Duration::from_secs(5)).await.expect("stop");
        assert!(
            status.code().is_some()
                || std::os::unix::process::ExitStatusExt::signal(&status).is_some()
        );
        assert!(!dnsmasq::is_running_dnsmasq(pid));
        assert!(!cfg.pid_file.exists(), "pid file removed");

        // dnsmasq exits at once on a bridge without the gateway address: wait_ready says so.
        let spec2 = bridge_spec("kbr-dns2", "dnsnet2", None);
        nl.create_bridge(&spec2).await.expect("bridge 2");
        let cfg2 = DnsmasqConfig::new(
            "kbr-dns2",
            "10.78.0.0/24".parse().expect("cidr"),
            dir.path(),
        );
        let argv2 = dnsmasq::dnsmasq_argv(&program, &cfg2).expect("argv");
        let mut bad = Dnsmasq::spawn(&argv2, &cfg2, Some(&log)).expect("spawn");
        let _kill2 = KillOnDrop(bad.pid());
        let err = bad
            .wait_ready(Duration::from_secs(10))
            .await
            .expect_err("cannot bind");
        assert!(err.to_string().contains("exited during startup"), "{err}");

        assert_eq!(nl.delete_kcore_links(None).await.expect("cleanup").len(), 2);
    });
}

#[test]
fn nft_nat_table_in_namespace() {
    require(tool::IP);
    require(tool::NFT);
    in_netns(|ns| async move {
        let spec = NatSpec {
            network: "test-net".into(),
            subnet: "10.79.0.0/24".parse().expect("cidr"),
            bridge: "kbr-test-net".into(),
        };
        assert!(nft::list_kcore_tables().await.expect("list").is_empty());
        nft::apply_nat(&spec).await.expect("apply");
        // Applying again replaces the table instead of failing or duplicating rules.
        nft::apply_nat(&spec).await.expect("apply again");
        assert_eq!(nft::list_kcore_tables().await.expect("list"), ["test-net"]);

        let tables = exec_in(&ns, tool::NFT, &["list", "tables"]);
        assert!(tables.contains("table ip kcore_test-net"), "{tables}");
        let table = exec_in(&ns, tool::NFT, &["list", "table", "ip", "kcore_test-net"]);
        assert_eq!(table.matches("masquerade").count(), 1, "{table}");
        assert!(table.contains("ip saddr 10.79.0.0/24"), "{table}");
        assert!(table.contains("oifname != \"kbr-test-net\""), "{table}");
        assert!(
            table.contains("ct state established,related accept"),
            "{table}"
        );

        assert!(nft::delete_nat("test-net").await.expect("delete"));
        assert!(!nft::delete_nat("test-net").await.expect("already gone"));
        assert!(nft::list_kcore_tables().await.expect("list").is_empty());
    });
}

#[test]
fn missing_tools_name_the_debian_package() {
    let err = tool::find(tool::Tool {
        name: "kcore-absent-tool",
        package: "kcore-absent-package",
    })
    .expect_err("absent");
    assert!(
        err.to_string()
            .contains("install the Debian package kcore-absent-package")
    );
    let result = std::panic::catch_unwind(|| {
        require(tool::Tool {
            name: "kcore-absent-tool",
            package: "kcore-absent-package",
        })
    });
    assert!(result.is_err(), "a missing tool fails the test");
}

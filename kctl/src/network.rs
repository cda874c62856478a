//! `kctl network create|list|get|delete` and `kctl vm nic attach|detach`, and the NIC
//! table of `kctl vm get`.

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use kcore_proto::v1::{
    AttachNicRequest, CreateNetworkRequest, DeleteNetworkRequest, DetachNicRequest,
    GetNetworkRequest, ListNetworksRequest, Network, NetworkMode, NicRequest, VmNic,
};

use crate::endpoint::Client;
use crate::output::{self, Format};

/// `kctl network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network on every node.
    Create(NetworkCreateArgs),
    /// List networks.
    #[command(visible_alias = "ls")]
    List,
    /// Show one network and how each node has it.
    Get {
        /// Network name.
        name: String,
    },
    /// Delete a network (refused while a VM has a NIC on it).
    #[command(visible_alias = "rm")]
    Delete {
        /// Network name.
        name: String,
    },
}

/// Network modes accepted by `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// An isolated bridge with DHCP and DNS (dnsmasq), masqueraded to the host's route.
    Nat,
    /// VMs join a host bridge; addresses come from the LAN.
    Bridge,
}

/// `kctl network create`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kctl network create default --mode nat --subnet 10.77.0.0/24
  kctl network create lan --mode bridge --bridge br0
  kctl network create lab --mode bridge --bridge kbr-lab --uplink eth1")]
pub struct NetworkCreateArgs {
    /// Network name: [a-z][a-z0-9-]{0,62}.
    pub name: String,
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// nat: the IPv4 subnet (CIDR); the gateway is its first address.
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// bridge: the host bridge VMs join (with --uplink, kcore creates it). nat: the name of
    /// kcore's bridge (default kbr-NAME).
    #[arg(long, value_name = "BRIDGE")]
    pub bridge: Option<String>,
    /// bridge: the host interface kcore makes a port of the bridge it creates.
    #[arg(long, value_name = "IFACE", requires = "bridge")]
    pub uplink: Option<String>,
}

/// `kctl vm nic ...`.
#[derive(Debug, Subcommand)]
pub enum NicCommand {
    /// Add a NIC (hot-plugged when the VM runs).
    Attach {
        /// VM name.
        name: String,
        /// NETWORK[,mac=MAC][,model=virtio|e1000].
        #[arg(value_parser = parse_nic)]
        nic: NicRequest,
    },
    /// Remove a NIC (waits for the guest to release it).
    Detach {
        /// VM name.
        name: String,
        /// The NIC: its id (net1), MAC, tap name or index (1).
        nic: String,
    },
}

/// Parses `--nic NETWORK[,mac=MAC][,model=MODEL]`. The MAC and model are the server's to
/// check, so every client gets the same answer.
pub fn parse_nic(s: &str) -> Result<NicRequest, String> {
    let mut parts = s.split(',');
    let network = parts.next().unwrap_or_default().trim();
    if network.is_empty() || network.contains('=') {
        return Err(format!(
            "{s:?} names no network (expected NETWORK[,mac=MAC][,model=virtio])"
        ));
    }
    let mut nic = NicRequest {
        network: network.to_string(),
        ..Default::default()
    };
    for part in parts {
        match part.split_once('=') {
            Some(("mac", v)) if nic.mac.is_empty() => nic.mac = v.trim().to_string(),
            Some(("model", v)) if nic.model.is_empty() => nic.model = v.trim().to_string(),
            _ => {
                return Err(format!(
                    "{s:?}: unknown or repeated option {part:?} (mac=, model=)"
                ));
            }
        }
    }
    Ok(nic)
}

/// `kctl network create`.
pub async fn create(client: &Client, format: Format, args: NetworkCreateArgs) -> Result<()> {
    let request = CreateNetworkRequest {
        name: args.name,
        mode: match args.mode {
            Mode::Nat => NetworkMode::Nat,
            Mode::Bridge => NetworkMode::Bridge,
        } as i32,
        subnet: args.subnet.unwrap_or_default(),
        bridge: args.bridge.unwrap_or_default(),
        uplink: args.uplink.unwrap_or_default(),
    };
    let net = client
        .api()
        .create_network(request)
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &net);
    }
    let mut line = format!(
        "Created network {} ({}, bridge {})",
        net.name,
        mode(net.mode),
        net.bridge
    );
    let failed: Vec<String> = net
        .nodes
        .iter()
        .filter(|n| !n.ready)
        .map(|n| format!("{}: {}", n.node, n.message))
        .collect();
    if !failed.is_empty() {
        line.push_str(&format!("; not ready on {}", failed.join(", ")));
    }
    line.push('\n');
    output::write_stdout(line.as_bytes())
}

/// `kctl network list`.
pub async fn list(client: &Client, format: Format) -> Result<()> {
    let response = client
        .api()
        .list_networks(ListNetworksRequest {})
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &response);
    }
    output::print_table(&networks_table(&response.networks))
}

/// `kctl network get`.
pub async fn get(client: &Client, format: Format, name: String) -> Result<()> {
    let net = client
        .api()
        .get_network(GetNetworkRequest { name })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format != Format::Table {
        return output::print_structured(format, &net);
    }
    output::write_stdout(describe(&net).as_bytes())
}

/// `kctl network delete`.
pub async fn delete(client: &Client, format: Format, name: String) -> Result<()> {
    client
        .api()
        .delete_network(DeleteNetworkRequest { name: name.clone() })
        .await
        .map_err(|s| client.error(s))?;
    match format {
        Format::Table => output::write_stdout(format!("Deleted network {name}\n").as_bytes()),
        Format::Json | Format::Yaml => output::write_stdout(b"{}\n"),
    }
}

/// `kctl vm nic attach | detach`.
pub async fn nic(client: &Client, format: Format, command: NicCommand) -> Result<()> {
    let mut api = client.api();
    let (verb, reply) = match command {
        NicCommand::Attach { name, nic } => (
            "Attached a NIC to",
            api.attach_nic(AttachNicRequest {
                vm: name,
                network: nic.network,
                mac: nic.mac,
                model: nic.model,
            })
            .await,
        ),
        NicCommand::Detach { name, nic } => (
            "Detached a NIC from",
            api.detach_nic(DetachNicRequest { vm: name, nic }).await,
        ),
    };
    let vm = reply.map_err(|s| client.error(s))?.into_inner();
    if format != Format::Table {
        return output::print_structured(format, &vm);
    }
    let mut text = format!("{verb} VM {}\n", vm.name);
    if !vm.nics.is_empty() {
        text.push_str(&nics_table(&vm.nics).trim_fmt());
        text.push('\n');
    }
    output::write_stdout(text.as_bytes())
}

/// `nat`, `bridge`.
pub fn mode(mode: i32) -> String {
    match NetworkMode::try_from(mode) {
        Ok(NetworkMode::Nat) => "nat".into(),
        Ok(NetworkMode::Bridge) => "bridge".into(),
        _ => format!("unknown({mode})"),
    }
}

/// `1/1`: nodes where the network is ready, of those asked.
fn nodes_ready(net: &Network) -> String {
    let ready = net.nodes.iter().filter(|n| n.ready).count();
    format!("{ready}/{}", net.nodes.len())
}

/// NAME, MODE, SUBNET, GATEWAY, BRIDGE, UPLINK, VMS, READY.
pub fn networks_table(nets: &[Network]) -> comfy_table::Table {
    let mut table = output::table(&[
        "NAME", "MODE", "SUBNET", "GATEWAY", "BRIDGE", "UPLINK", "VMS", "READY",
    ]);
    output::align_right(&mut table, &[6]);
    for n in nets {
        table.add_row(vec![
            n.name.clone(),
            mode(n.mode),
            output::or_dash(&n.subnet),
            output::or_dash(&n.gateway),
            output::or_dash(&n.bridge),
            output::or_dash(&n.uplink),
            n.vm_count.to_string(),
            nodes_ready(n),
        ]);
    }
    table
}

/// The key/value description of `network get`, then its nodes.
pub fn describe(net: &Network) -> String {
    let mut text = output::key_values(&[
        ("Name", net.name.clone()),
        ("Mode", mode(net.mode)),
        ("Subnet", net.subnet.clone()),
        ("Gateway", net.gateway.clone()),
        ("Bridge", net.bridge.clone()),
        ("Uplink", net.uplink.clone()),
        ("VMs", net.vm_count.to_string()),
        (
            "Created",
            if net.created_at.is_empty() {
                String::new()
            } else {
                format!("{} UTC", output::short_time(&net.created_at))
            },
        ),
    ]);
    let mut table = output::table(&["NODE", "READY", "DNSMASQ", "LEASES", "MESSAGE"]);
    output::align_right(&mut table, &[2, 3]);
    for n in &net.nodes {
        table.add_row(vec![
            n.node.clone(),
            if n.ready { "yes" } else { "no" }.to_string(),
            if n.dnsmasq_pid > 0 {
                n.dnsmasq_pid.to_string()
            } else {
                "-".into()
            },
            n.leases.to_string(),
            output::or_dash(&n.message),
        ]);
    }
    text.push_str("\nNodes:\n");
    for line in table.trim_fmt().lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// ID, NETWORK, MAC, MODEL, TAP, IP: a VM's NICs for `vm get`.
pub fn nics_table(nics: &[VmNic]) -> comfy_table::Table {
    let mut table = output::table(&["ID", "NETWORK", "MAC", "MODEL", "TAP", "IP"]);
    for n in nics {
        table.add_row(vec![
            n.id.clone(),
            output::or_dash(&n.network),
            output::or_dash(&n.mac),
            output::or_dash(&n.model),
            output::or_dash(&n.tap),
            output::or_dash(&n.ip),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use kcore_proto::v1::NetworkOnNode;

    use super::*;
    use crate::cli::{Cli, Command, VmCommand};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kctl").chain(args.iter().copied()))
    }

    fn create(args: &[&str]) -> crate::cli::CreateArgs {
        let mut full = vec!["vm", "create", "web", "--vcpu", "2", "--memory", "512"];
        full.extend_from_slice(args);
        match parse(&full).expect("parses").command {
            Command::Vm(VmCommand::Create(c)) => *c,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn nics_and_networks() {
        let c = create(&["--nic", "default", "--nic", "lan,mac=52:54:00:00:00:09"]);
        assert_eq!(c.nics.len(), 2);
        assert_eq!(c.nics[1].mac, "52:54:00:00:00:09");
        let base = ["vm", "create", "w", "--vcpu", "1", "--memory", "1", "--nic"];
        let err = parse(&[&base[..], &["lan,bogus=1"]].concat()).expect_err("bad nic");
        assert!(err.to_string().contains("mac=, model="), "{err}");
        assert!(matches!(
            parse(&["vm", "nic", "attach", "w", "lan,model=e1000"])
                .expect("parses")
                .command,
            Command::Vm(VmCommand::Nic(NicCommand::Attach { .. }))
        ));
        assert!(parse(&["vm", "nic", "detach", "w", "net1"]).is_ok());
        assert!(
            parse(&[
                "network",
                "create",
                "n",
                "--mode",
                "nat",
                "--subnet",
                "10.0.0.0/24"
            ])
            .is_ok()
        );
        assert!(parse(&["network", "create", "n", "--mode", "other"]).is_err());
        // --uplink needs --bridge.
        assert!(
            parse(&[
                "network", "create", "n", "--mode", "bridge", "--uplink", "eth0"
            ])
            .is_err()
        );
        assert!(parse(&["network", "rm", "n"]).is_ok());
    }

    #[test]
    fn nic_specs() {
        let n = parse_nic("default").expect("plain");
        assert_eq!((n.network.as_str(), n.mac.as_str()), ("default", ""));
        let n = parse_nic("lan,mac=52:54:00:aa:bb:cc,model=e1000").expect("full");
        assert_eq!(n.mac, "52:54:00:aa:bb:cc");
        assert_eq!(n.model, "e1000");
        // A bad MAC goes through: the server says why it is wrong.
        assert_eq!(parse_nic("lan,mac=zz").expect("server checks").mac, "zz");
        for bad in [
            "",
            ",mac=x",
            "mac=x",
            "lan,speed=1",
            "lan,mac=a,mac=b",
            "lan,",
        ] {
            assert!(parse_nic(bad).is_err(), "{bad:?}");
        }
    }

    fn sample() -> Network {
        Network {
            name: "default".into(),
            mode: NetworkMode::Nat as i32,
            subnet: "10.77.0.0/24".into(),
            gateway: "10.77.0.1".into(),
            bridge: "kbr-default".into(),
            vm_count: 2,
            nodes: vec![NetworkOnNode {
                node: "node-1".into(),
                ready: true,
                dnsmasq_pid: 812,
                leases: 2,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn network_tables() {
        let text = networks_table(&[sample()]).trim_fmt();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME     MODE  SUBNET        GATEWAY    BRIDGE       UPLINK  VMS  READY",
                "default  nat   10.77.0.0/24  10.77.0.1  kbr-default  -         2  1/1",
            ]
        );
        let text = describe(&sample());
        assert!(text.contains("Gateway: 10.77.0.1\n"), "{text}");
        assert!(
            text.contains("  node-1  yes        812       2  -"),
            "{text}"
        );
        assert!(!text.contains("Created"), "{text}");
        let nics = [VmNic {
            id: "net0".into(),
            network: "default".into(),
            mac: "52:54:00:12:34:56".into(),
            model: "virtio".into(),
            tap: "ktap-0a1b2c3d4e".into(),
            ip: "10.77.0.23".into(),
        }];
        let text = nics_table(&nics).trim_fmt();
        assert_eq!(
            text.lines().nth(1),
            Some("net0  default  52:54:00:12:34:56  virtio  ktap-0a1b2c3d4e  10.77.0.23")
        );
    }
}

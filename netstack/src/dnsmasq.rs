//! A per-network dnsmasq: DHCP (and optionally DNS) on one bridge. The argv is built by a
//! pure function from a [`DnsmasqConfig`]; [`Dnsmasq::spawn`] starts it (argv, no shell,
//! `--keep-in-foreground` so the caller supervises it as a child and its pid file holds
//! its own pid); [`parse_leases`] reads the lease file (`expiry mac ip hostname clientid`
//! lines).
//!
//! Everything is on the command line (`--conf-file=/dev/null`, `--no-hosts`): the host's
//! /etc/dnsmasq.conf and /etc/hosts never leak into a VM network.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::link::validate_ifname;
use crate::{Ipv4Cidr, MacAddr, NetError};

/// Where dnsmasq gets upstream DNS answers from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The host's /etc/resolv.conf (dnsmasq's default; it follows changes to it).
    ResolvConf,
    /// These servers only (`--no-resolv --server=...`).
    Servers(Vec<IpAddr>),
    /// No upstream: only names dnsmasq knows itself (`--no-resolv`).
    LocalOnly,
    /// No DNS service at all, DHCP only (`--port=0`).
    Disabled,
}

/// A fixed DHCP lease (`--dhcp-host=mac,ip[,hostname]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticHost {
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub hostname: Option<String>,
}

/// Everything dnsmasq needs for one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqConfig {
    /// The bridge to serve (it must carry the gateway address before dnsmasq starts).
    pub bridge: String,
    /// The network: the gateway is its first host, the DHCP range the rest.
    pub subnet: Ipv4Cidr,
    /// Lease time in seconds (dnsmasq's minimum is 120).
    pub lease_secs: u32,
    pub lease_file: PathBuf,
    pub pid_file: PathBuf,
    pub upstream: Upstream,
    /// A local DNS domain for the VMs (`--domain=d --local=/d/`).
    pub domain: Option<String>,
    pub hosts: Vec<StaticHost>,
    /// The user dnsmasq drops to after binding (`--user`); dnsmasq's default is `nobody`.
    pub user: Option<String>,
}

impl DnsmasqConfig {
    /// A config for `bridge` and `subnet` with the lease and pid files in `state_dir`
    /// (`<bridge>.leases`, `<bridge>.pid`), one-hour leases and upstream DNS from the
    /// host's resolv.conf.
    pub fn new(bridge: impl Into<String>, subnet: Ipv4Cidr, state_dir: &Path) -> Self {
        let bridge = bridge.into();
        DnsmasqConfig {
            lease_file: state_dir.join(format!("{bridge}.leases")),
            pid_file: state_dir.join(format!("{bridge}.pid")),
            bridge,
            subnet,
            lease_secs: 3600,
            upstream: Upstream::ResolvConf,
            domain: None,
            hosts: Vec::new(),
            user: None,
        }
    }
}

fn path_arg(what: &'static str, path: &Path) -> Result<String, NetError> {
    if !path.is_absolute() {
        return Err(NetError::invalid(
            what,
            format!("{} is not an absolute path", path.display()),
        ));
    }
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| NetError::invalid(what, format!("{} is not UTF-8", path.display())))
}

fn is_dns_label_text(s: &str, dots: bool) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || (dots && c == b'.'))
        && !s.starts_with(['-', '.'])
        && !s.ends_with(['-', '.'])
}

/// The dnsmasq arguments (without the program name) for `cfg`.
pub fn dnsmasq_args(cfg: &DnsmasqConfig) -> Result<Vec<String>, NetError> {
    validate_ifname(&cfg.bridge)?;
    let gateway = cfg.subnet.gateway()?;
    let (start, end) = cfg.subnet.dhcp_range()?;
    if cfg.lease_secs < 120 {
        return Err(NetError::invalid(
            "lease time",
            format!("{}s is below dnsmasq's minimum of 120s", cfg.lease_secs),
        ));
    }
    let lease_file = path_arg("lease file", &cfg.lease_file)?;
    let pid_file = path_arg("pid file", &cfg.pid_file)?;

    let mut args: Vec<String> = [
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-hosts",
        "--log-facility=-",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--pid-file={pid_file}"));
    args.extend([
        "--bind-interfaces".to_string(),
        format!("--interface={}", cfg.bridge),
        "--except-interface=lo".to_string(),
        format!("--listen-address={gateway}"),
        format!("--dhcp-range={start},{end},{}", cfg.lease_secs),
        format!("--dhcp-leasefile={lease_file}"),
        "--dhcp-no-override".to_string(),
        "--dhcp-authoritative".to_string(),
        "--domain-needed".to_string(),
        "--bogus-priv".to_string(),
    ]);
    match &cfg.upstream {
        Upstream::ResolvConf => {}
        Upstream::Servers(servers) => {
            if servers.is_empty() {
                return Err(NetError::invalid(
                    "upstream DNS",
                    "an empty server list (use LocalOnly)",
                ));
            }
            args.push("--no-resolv".to_string());
            args.extend(servers.iter().map(|s| format!("--server={s}")));
        }
        Upstream::LocalOnly => args.push("--no-resolv".to_string()),
        Upstream::Disabled => args.push("--port=0".to_string()),
    }
    if let Some(domain) = &cfg.domain {
        if !is_dns_label_text(domain, true) {
            return Err(NetError::invalid("DNS domain", format!("{domain:?}")));
        }
        args.push(format!("--domain={domain}"));
        args.push(format!("--local=/{domain}/"));
    }
    for host in &cfg.hosts {
        if !cfg.subnet.contains(host.ip)
            || host.ip == gateway
            || host.ip == cfg.subnet.broadcast()
            || host.ip == cfg.subnet.network()
        {
            return Err(NetError::invalid(
                "static DHCP host",
                format!(
                    "{} is not a host address of {} other than the gateway",
                    host.ip, cfg.subnet
                ),
            ));
        }
        let mut arg = format!("--dhcp-host={},{}", host.mac, host.ip);
        if let Some(name) = &host.hostname {
            if !is_dns_label_text(name, false) || name.len() > 63 {
                return Err(NetError::invalid(
                    "static DHCP host",
                    format!("hostname {name:?}"),
                ));
            }
            arg.push(',');
            arg.push_str(name);
        }
        args.push(arg);
    }
    if let Some(user) = &cfg.user {
        if user.is_empty() || user.contains(['=', ',', '\n']) {
            return Err(NetError::invalid("dnsmasq user", format!("{user:?}")));
        }
        args.push(format!("--user={user}"));
    }
    Ok(args)
}

/// The full argv: `program` followed by [`dnsmasq_args`].
pub fn dnsmasq_argv(program: &Path, cfg: &DnsmasqConfig) -> Result<Vec<String>, NetError> {
    let mut argv = vec![path_arg("dnsmasq program", program)?];
    argv.extend(dnsmasq_args(cfg)?);
    Ok(argv)
}

/// One DHCP lease from the lease file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Expiry in seconds since the epoch; 0 means never.
    pub expiry: u64,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub hostname: Option<String>,
    pub client_id: Option<String>,
}

impl Lease {
    /// Parse one lease-file line. IPv6 lines (and the `duid` line) give `Ok(None)`.
    pub fn parse_line(line: &str) -> Result<Option<Lease>, NetError> {
        let bad = |reason| NetError::InvalidLease {
            line: line.to_string(),
            reason,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || fields[0] == "duid" {
            return Ok(None);
        }
        if fields.len() < 4 {
            return Err(bad("expected `expiry mac ip hostname [clientid]`"));
        }
        if fields[2].contains(':') {
            // DHCPv6: `expiry iaid ipv6 hostname duid`.
            return Ok(None);
        }
        let expiry = fields[0]
            .parse::<u64>()
            .map_err(|_| bad("expiry is not a number"))?;
        let mac = fields[1]
            .parse::<MacAddr>()
            .map_err(|_| bad("not a unicast Ethernet MAC address"))?;
        let ip = fields[2]
            .parse::<Ipv4Addr>()
            .map_err(|_| bad("not an IPv4 address"))?;
        let opt = |s: Option<&&str>| s.filter(|s| **s != "*").map(|s| s.to_string());
        Ok(Some(Lease {
            expiry,
            mac,
            ip,
            hostname: opt(fields.get(3)),
            client_id: opt(fields.get(4)),
        }))
    }
}

/// Parse a dnsmasq lease file; lines that do not parse are skipped with a warning.
pub fn parse_leases(text: &str) -> Vec<Lease> {
    text.lines()
        .filter_map(|line| match Lease::parse_line(line) {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(error = %e, "skipping lease line");
                None
            }
        })
        .collect()
}

/// Read and parse a lease file; a missing file means no leases.
pub fn read_leases(path: &Path) -> Result<Vec<Lease>, NetError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse_leases(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(NetError::io("read", path, e)),
    }
}

/// The pid in a pid file, or `None` if the file is missing or empty.
pub fn read_pid_file(path: &Path) -> Result<Option<u32>, NetError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => text.trim().parse::<u32>().map(Some).map_err(|_| {
            NetError::io(
                "parse pid in",
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, "not a pid"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(NetError::io("read", path, e)),
    }
}

/// True if `pid` is a live (not zombie) process named `dnsmasq`, by its /proc entry.
pub fn is_running_dnsmasq(pid: u32) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised command name: `pid (comm) S ...`.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    comm.trim() == "dnsmasq" && !matches!(state, None | Some("Z") | Some("X"))
}

fn signal(pid: u32, sig: Signal) -> Result<(), NetError> {
    let raw = libc::pid_t::try_from(pid)
        .map_err(|_| NetError::invalid("pid", format!("{pid} is out of range")))?;
    match kill(Pid::from_raw(raw), sig) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(e) => Err(NetError::sys("kill", format!("dnsmasq pid {pid}"), e)),
    }
}

/// Stop a dnsmasq that is not our child (one a previous daemon started, found through its
/// pid file): check it is dnsmasq, SIGTERM, wait up to `grace`, then SIGKILL.
pub async fn stop_pid(pid: u32, grace: Duration) -> Result<(), NetError> {
    if !is_running_dnsmasq(pid) {
        return Ok(());
    }
    signal(pid, Signal::SIGTERM)?;
    let deadline = tokio::time::Instant::now() + grace;
    while is_running_dnsmasq(pid) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(pid, "dnsmasq ignored SIGTERM; killing it");
            signal(pid, Signal::SIGKILL)?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A dnsmasq started by us, running in the foreground as our child.
#[derive(Debug)]
pub struct Dnsmasq {
    child: tokio::process::Child,
    pid: u32,
    pid_file: PathBuf,
}

impl Dnsmasq {
    /// Spawn `argv` (from [`dnsmasq_argv`]; no shell) in its own process group, with
    /// stdin from /dev/null and stdout/stderr appended to `log` (or discarded). A stale
    /// pid file is removed first. Dropping the handle does not stop the process.
    pub fn spawn(
        argv: &[String],
        cfg: &DnsmasqConfig,
        log: Option<&File>,
    ) -> Result<Self, NetError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| NetError::invalid("dnsmasq argv", "empty"))?;
        match std::fs::remove_file(&cfg.pid_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(NetError::io("remove stale", &cfg.pid_file, e)),
        }
        let output = |f: Option<&File>| -> Result<Stdio, NetError> {
            match f {
                Some(f) => f
                    .try_clone()
                    .map(Stdio::from)
                    .map_err(|e| NetError::io("dup", "dnsmasq log", e)),
                None => Ok(Stdio::null()),
            }
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(output(log)?)
            .stderr(output(log)?)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .process_group(0)
            .kill_on_drop(false);
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                NetError::ToolMissing {
                    tool: crate::tool::DNSMASQ.name,
                    package: crate::tool::DNSMASQ.package,
                }
            } else {
                NetError::io("spawn", program.as_str(), e)
            }
        })?;
        let pid = child
            .id()
            .ok_or_else(|| NetError::invalid("dnsmasq", "exited before its pid was known"))?;
        tracing::info!(pid, bridge = %cfg.bridge, "started dnsmasq");
        Ok(Dnsmasq {
            child,
            pid,
            pid_file: cfg.pid_file.clone(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Wait until dnsmasq has written its pid file (it does so once its sockets are
    /// bound), or fail if it exits first or `timeout` passes.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), NetError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if read_pid_file(&self.pid_file)? == Some(self.pid) {
                return Ok(());
            }
            if let Some(status) = self.try_exited()? {
                return Err(NetError::CommandFailed {
                    program: "dnsmasq".into(),
                    status: status.to_string(),
                    stderr: "exited during startup (see its log)".into(),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NetError::CommandFailed {
                    program: "dnsmasq".into(),
                    status: "running".into(),
                    stderr: format!("no pid file {} after {timeout:?}", self.pid_file.display()),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The exit status if it has exited (reaping it), without waiting.
    pub fn try_exited(&mut self) -> Result<Option<ExitStatus>, NetError> {
        self.child
            .try_wait()
            .map_err(|e| NetError::io("wait for", "dnsmasq", e))
    }

    /// Wait for it to exit.
    pub async fn wait(&mut self) -> Result<ExitStatus, NetError> {
        self.child
            .wait()
            .await
            .map_err(|e| NetError::io("wait for", "dnsmasq", e))
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; reaps it and removes the pid file.
    pub async fn stop(mut self, grace: Duration) -> Result<ExitStatus, NetError> {
        if let Some(status) = self.try_exited()? {
            return Ok(status);
        }
        signal(self.pid, Signal::SIGTERM)?;
        let status = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status.map_err(|e| NetError::io("wait for", "dnsmasq", e))?,
            Err(_) => {
                tracing::warn!(pid = self.pid, "dnsmasq ignored SIGTERM; killing it");
                signal(self.pid, Signal::SIGKILL)?;
                self.wait().await?
            }
        };
        match std::fs::remove_file(&self.pid_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.pid_file.display(), error = %e, "could not remove pid file")
            }
        }
        tracing::info!(pid = self.pid, ?status, signal = ?status.signal(), "dnsmasq stopped");
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DnsmasqConfig {
        let subnet: Ipv4Cidr = "10.77.0.0/24".parse().expect("cidr");
        DnsmasqConfig::new("kbr-default", subnet, Path::new("/var/lib/kcore/net"))
    }

    #[test]
    fn golden_argv() {
        let argv = dnsmasq_argv(Path::new("/usr/sbin/dnsmasq"), &config()).expect("argv");
        let expected = [
            "/usr/sbin/dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-hosts",
            "--log-facility=-",
            "--pid-file=/var/lib/kcore/net/kbr-default.pid",
            "--bind-interfaces",
            "--interface=kbr-default",
            "--except-interface=lo",
            "--listen-address=10.77.0.1",
            "--dhcp-range=10.77.0.2,10.77.0.254,3600",
            "--dhcp-leasefile=/var/lib/kcore/net/kbr-default.leases",
            "--dhcp-no-override",
            "--dhcp-authoritative",
            "--domain-needed",
            "--bogus-priv",
        ];
        assert_eq!(argv, expected);
    }

    #[test]
    fn golden_argv_with_options() {
        let mut cfg = config();
        cfg.upstream = Upstream::Servers(vec![
            "1.1.1.1".parse().expect("ip"),
            "2606:4700::1111".parse().expect("ip"),
        ]);
        cfg.domain = Some("vms.internal".into());
        cfg.lease_secs = 86400;
        cfg.user = Some("kcore".into());
        cfg.hosts = vec![StaticHost {
            mac: "52:54:00:00:00:10".parse().expect("mac"),
            ip: "10.77.0.10".parse().expect("ip"),
            hostname: Some("web-1".into()),
        }];
        let args = dnsmasq_args(&cfg).expect("args");
        let tail: Vec<&str> = args[args.len() - 8..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "--bogus-priv",
                "--no-resolv",
                "--server=1.1.1.1",
                "--server=2606:4700::1111",
                "--domain=vms.internal",
                "--local=/vms.internal/",
                "--dhcp-host=52:54:00:00:00:10,10.77.0.10,web-1",
                "--user=kcore",
            ]
        );
        assert!(args.contains(&"--dhcp-range=10.77.0.2,10.77.0.254,86400".to_string()));

        cfg.upstream = Upstream::LocalOnly;
        assert!(
            dnsmasq_args(&cfg)
                .expect("args")
                .contains(&"--no-resolv".to_string())
        );
        cfg.upstream = Upstream::Disabled;
        assert!(
            dnsmasq_args(&cfg)
                .expect("args")
                .contains(&"--port=0".to_string())
        );
    }

    #[test]
    fn invalid_configs() {
        let mut cfg = config();
        cfg.lease_secs = 60;
        assert!(dnsmasq_args(&cfg).is_err());

        let mut cfg = config();
        cfg.bridge = "kbr-much-too-long-name".into();
        assert!(matches!(
            dnsmasq_args(&cfg),
            Err(NetError::InvalidName { .. })
        ));

        let mut cfg = config();
        cfg.subnet = "10.0.0.0/31".parse().expect("cidr");
        assert!(dnsmasq_args(&cfg).is_err());

        let mut cfg = config();
        cfg.lease_file = "relative.leases".into();
        assert!(dnsmasq_args(&cfg).is_err());

        let mut cfg = config();
        cfg.upstream = Upstream::Servers(vec![]);
        assert!(dnsmasq_args(&cfg).is_err());

        let mut cfg = config();
        cfg.domain = Some("bad domain".into());
        assert!(dnsmasq_args(&cfg).is_err());

        for ip in ["10.77.0.1", "10.77.1.5", "10.77.0.255", "10.77.0.0"] {
            let mut cfg = config();
            cfg.hosts = vec![StaticHost {
                mac: "52:54:00:00:00:10".parse().expect("mac"),
                ip: ip.parse().expect("ip"),
                hostname: None,
            }];
            assert!(dnsmasq_args(&cfg).is_err(), "{ip}");
        }
    }

    #[test]
    fn parses_lease_file() {
        let text = "\
1735689600 52:54:00:12:34:56 10.77.0.23 web-1 01:52:54:00:12:34:56
0 52:54:00:ab:cd:ef 10.77.0.24 * *
1735689700 52:54:00:00:00:01 10.77.0.25 *
duid 00:01:00:01:2c:2f:5e:1a:52:54:00:12:34:56
1735689600 1234567 fd00::23 web-1 00:01:00:01:aa
garbage line here
1735689600 ff:ff:ff:ff:ff:ff 10.77.0.26 bcast *

";
        let leases = parse_leases(text);
        assert_eq!(
            leases,
            vec![
                Lease {
                    expiry: 1_735_689_600,
                    mac: "52:54:00:12:34:56".parse().expect("mac"),
                    ip: "10.77.0.23".parse().expect("ip"),
                    hostname: Some("web-1".into()),
                    client_id: Some("01:52:54:00:12:34:56".into()),
                },
                Lease {
                    expiry: 0,
                    mac: "52:54:00:ab:cd:ef".parse().expect("mac"),
                    ip: "10.77.0.24".parse().expect("ip"),
                    hostname: None,
                    client_id: None,
                },
                Lease {
                    expiry: 1_735_689_700,
                    mac: "52:54:00:00:00:01".parse().expect("mac"),
                    ip: "10.77.0.25".parse().expect("ip"),
                    hostname: None,
                    client_id: None,
                },
            ]
        );
        let err = Lease::parse_line("soon 52:54:00:00:00:01 10.0.0.1 x").expect_err("bad");
        assert!(err.to_string().contains("expiry"), "{err}");
        assert!(Lease::parse_line("1 52:54:00:00:00:01 10.0.0.300 x").is_err());
        assert!(Lease::parse_line("1 52:54:00:00:00:01").is_err());
    }

    #[test]
    fn missing_files_are_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            read_leases(&dir.path().join("none"))
                .expect("ok")
                .is_empty()
        );
        assert_eq!(read_pid_file(&dir.path().join("none")).expect("ok"), None);
        let pid = dir.path().join("pid");
        std::fs::write(&pid, "1234\n").expect("write");
        assert_eq!(read_pid_file(&pid).expect("ok"), Some(1234));
        std::fs::write(&pid, "x\n").expect("write");
        assert!(read_pid_file(&pid).is_err());
        // Our own process is not dnsmasq.
        assert!(!is_running_dnsmasq(std::process::id()));
    }
}

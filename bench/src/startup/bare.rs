//! Bare QEMU: the argv kcore used for the same guest (its `qemu.argv`), spawned by the
//! benchmark with descriptors of its own in the same places: pre-bound QMP (fd 3) and
//! console (fd 4) sockets, a fresh qcow2 for each `-add-fd` disk, a tap on the bench
//! bridge for each `-netdev tap,fd=N`. Running = exec -> greeting + `qmp_capabilities` +
//! `cont`; ready = the marker on the console; stop = SIGKILL -> exit.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use kcore_bench::ms_since;
use kcore_netstack::TapSpec;
use kcore_vmm::process::{PidFd, spawn_detached};
use kcore_vmm::qmp::{QmpClient, QmpOptions};
use tokio::net::UnixStream;

use crate::probe::{ReadyTask, until_marker};
use crate::run;

/// A bare QEMU the benchmark started.
pub struct BareVm {
    pidfd: PidFd,
    /// Exec of QEMU.
    pub t0: Instant,
    /// The ready marker.
    pub ready: Option<ReadyTask>,
    files: Vec<PathBuf>,
    _fds: Vec<OwnedFd>,
    _disks: Vec<std::fs::File>,
}

impl BareVm {
    pub fn pid(&self) -> u32 {
        self.pidfd.pid()
    }
}

/// `-add-fd fd=N,...,opaque=O`: (N, O).
fn added_fds(argv: &[String]) -> anyhow::Result<Vec<(i32, String)>> {
    let mut out = Vec::new();
    for pair in argv.windows(2).filter(|w| w[0] == "-add-fd") {
        let field = |key: &str| pair[1].split(',').find_map(|kv| kv.strip_prefix(key));
        let fd = field("fd=").context("-add-fd without fd=")?.parse()?;
        let opaque = field("opaque=").context("-add-fd without opaque=")?;
        out.push((fd, opaque.to_string()));
    }
    Ok(out)
}

/// `-netdev tap,...,fd=N`: the Ns.
fn tap_fds(argv: &[String]) -> anyhow::Result<Vec<i32>> {
    let mut out = Vec::new();
    for pair in argv.windows(2).filter(|w| w[0] == "-netdev") {
        if let Some(rest) = pair[1].strip_prefix("tap,") {
            let fd = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("fd="))
                .context("-netdev tap without fd=")?;
            out.push(fd.parse()?);
        }
    }
    Ok(out)
}

/// `argv` with every `mac=` set to one of the bench's own (ten bare QEMUs share a bridge).
fn with_mac(argv: &[String], idx: usize) -> Vec<String> {
    argv.iter()
        .map(|a| {
            a.split(',')
                .map(|kv| match kv.strip_prefix("mac=") {
                    Some(_) => format!("mac=52:54:00:be:{:02x}:{:02x}", idx >> 8, idx & 0xff),
                    None => kv.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// Start bare QEMU number `idx` from kcore's `argv`, in `dir`, its NICs on `bridge`; it
/// returns once the vCPUs run, with exec -> running in ms.
pub async fn start(
    argv: &[String],
    idx: usize,
    dir: &Path,
    bridge: &str,
) -> anyhow::Result<(BareVm, f64)> {
    let argv = with_mac(argv, idx);
    let mut fds = Vec::new();
    let mut files = Vec::new();
    let mut disks = Vec::new();
    for (fd, opaque) in added_fds(&argv)? {
        if opaque.ends_with("-base") || opaque == "uefi-vars" || opaque == "seed" {
            bail!("bare QEMU: the benchmark gives only empty data disks, not {opaque}");
        }
        // A fresh empty disk like kcore's new volume (made before the clock starts).
        let path = dir.join(format!("bare-{idx}-{opaque}.qcow2"));
        let p = path.to_string_lossy();
        run::cmd("qemu-img", ["create", "-q", "-f", "qcow2", &p, "1G"]).await?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        fds.push((f.as_raw_fd(), fd));
        files.push(path);
        disks.push(f);
    }
    let mut taps = Vec::new();
    for (i, fd) in tap_fds(&argv)?.into_iter().enumerate() {
        let name = format!("kbb-{idx}-{i}");
        let tap = kcore_netstack::tap::open_tap(&TapSpec::new(&name))
            .with_context(|| format!("open tap {name}"))?;
        run::cmd("ip", ["link", "set", "dev", &name, "master", bridge, "up"]).await?;
        fds.push((tap.as_raw_fd(), fd));
        taps.push(tap);
    }
    let qmp_path = dir.join(format!("bare-{idx}-qmp.sock"));
    let con_path = dir.join(format!("bare-{idx}-con.sock"));
    for p in [&qmp_path, &con_path] {
        let _ = std::fs::remove_file(p);
        files.push(p.clone());
    }
    let qmp_l = std::os::unix::net::UnixListener::bind(&qmp_path)?;
    let con_l = std::os::unix::net::UnixListener::bind(&con_path)?;
    let log_path = dir.join(format!("bare-{idx}-qemu.log"));
    let log = std::fs::File::create(&log_path)?;
    files.push(log_path);
    fds.push((qmp_l.as_raw_fd(), 3));
    fds.push((con_l.as_raw_fd(), 4));
    let t0 = Instant::now();
    let pid = spawn_detached(&argv, &log, &fds, None)?;
    let pidfd = PidFd::open(pid)?;
    let con = UnixStream::connect(&con_path).await?;
    let qmp_conn = UnixStream::connect(&qmp_path).await?;
    drop(qmp_l);
    drop(con_l);
    let ready = Some(tokio::spawn(until_marker(con)));
    let mut vm = BareVm {
        pidfd,
        t0,
        ready,
        files,
        _fds: taps,
        _disks: disks,
    };
    let running = async {
        let (qmp, _events) = QmpClient::connect(qmp_conn, QmpOptions::default()).await?;
        qmp.cont().await?;
        anyhow::Ok(ms_since(t0))
    }
    .await;
    match running {
        Ok(ms) => Ok((vm, ms)),
        Err(e) => {
            vm.ready = None;
            kill(vm).await;
            Err(e.context("bare QEMU did not start"))
        }
    }
}

/// SIGKILL the QEMU; ms until it has exited. Its disks, sockets and taps go with it.
pub async fn kill(vm: BareVm) -> f64 {
    let t = Instant::now();
    let _ = vm.pidfd.signal(nix::sys::signal::Signal::SIGKILL);
    vm.pidfd.exited().await;
    let ms = ms_since(t);
    for f in &vm.files {
        let _ = std::fs::remove_file(f);
    }
    ms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_the_descriptors_kcore_placed() {
        let argv = v(&[
            "qemu",
            "-add-fd",
            "fd=5,set=1,opaque=disk0",
            "-netdev",
            "tap,id=net0,fd=6,vhost=off",
            "-device",
            "virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,id=net0",
        ]);
        assert_eq!(
            added_fds(&argv).expect("parses"),
            vec![(5, "disk0".to_string())]
        );
        assert_eq!(tap_fds(&argv).expect("parses"), vec![6]);
        assert_eq!(
            with_mac(&argv, 258)[6],
            "virtio-net-pci,netdev=net0,mac=52:54:00:be:01:02,id=net0"
        );
    }
}

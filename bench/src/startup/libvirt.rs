//! libvirt: `virsh create` of the domain XML equivalent to kcore's VM (same kernel, initrd,
//! command line, firmware, memory, vCPUs, an empty qcow2 data disk and a virtio NIC on
//! the bench bridge; `type='qemu'`, i.e. TCG), against the foreground `libvirtd` that
//! `scripts/bench-startup.sh` started. Running = `virsh create` (it returns once the vCPUs
//! run); ready = the marker on a serial socket the benchmark listens on (QEMU connects to
//! it); stop = `virsh destroy`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::probe::{ReadyTask, listen_for_marker, stop_and_exit};
use crate::run;

/// The system connection (libvirtd runs as root).
pub const URI: &str = "qemu:///system";

/// What the domain is made of.
#[derive(Clone, Debug)]
pub struct Guest {
    /// q35, pc or microvm.
    pub machine: String,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    /// `-bios` (`<loader type='rom'>`); None: libvirt's default (SeaBIOS).
    pub bios: Option<PathBuf>,
    /// An empty 1 GiB qcow2 data disk (vda).
    pub disk: bool,
    /// A virtio NIC on this bridge.
    pub bridge: Option<String>,
}

/// A domain the benchmark created.
pub struct Domain {
    pub name: String,
    /// Its QEMU.
    pub pid: u32,
    /// `virsh create` spawned.
    pub t0: Instant,
    pub ready: ReadyTask,
    files: Vec<PathBuf>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

/// The domain XML of `g` named `name`, its console on the unix socket `console`.
pub fn domain_xml(name: &str, g: &Guest, disk: Option<&Path>, console: &Path) -> String {
    let p = |p: &Path| esc(&p.to_string_lossy());
    let mut x = format!(
        "<domain type='qemu'>\n  <name>{}</name>\n  <memory unit='MiB'>{}</memory>\n  \
         <vcpu>{}</vcpu>\n  <os>\n    <type arch='x86_64' machine='{}'>hvm</type>\n",
        esc(name),
        g.memory_mib,
        g.vcpus,
        esc(&g.machine)
    );
    if let Some(bios) = &g.bios {
        x += &format!(
            "    <loader type='rom' readonly='yes'>{}</loader>\n",
            p(bios)
        );
    }
    x += &format!(
        "    <kernel>{}</kernel>\n    <initrd>{}</initrd>\n    <cmdline>{}</cmdline>\n  </os>\n",
        p(&g.kernel),
        p(&g.initrd),
        esc(&g.cmdline)
    );
    if g.machine != "microvm" {
        // Without <acpi/> libvirt passes -no-acpi; kcore's q35/pc guests have ACPI.
        x += "  <features><acpi/></features>\n";
    }
    // on_reboot restart (libvirt's default): a guest reboot resets QEMU in place, as
    // under kcore.
    x += "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  \
          <on_crash>destroy</on_crash>\n  <devices>\n    \
          <emulator>/usr/bin/qemu-system-x86_64</emulator>\n";
    // microvm has no PCI bus: its virtio devices sit on virtio-mmio transports.
    let addr = if g.machine == "microvm" {
        "<address type='virtio-mmio'/>"
    } else {
        ""
    };
    if let Some(d) = disk {
        x += &format!(
            "    <disk type='file' device='disk'><driver name='qemu' type='qcow2' \
             discard='unmap'/><source file='{}'/><target dev='vda' bus='virtio'/>{addr}</disk>\n",
            p(d)
        );
    }
    if let Some(br) = &g.bridge {
        x += &format!(
            "    <interface type='bridge'><source bridge='{}'/><model type='virtio'/>{addr}</interface>\n",
            esc(br)
        );
    }
    x += &format!(
        "    <serial type='unix'><source mode='connect' path='{}'/><target port='0'/></serial>\n    \
         <controller type='usb' model='none'/>\n    <memballoon model='none'/>\n  </devices>\n</domain>\n",
        p(console)
    );
    x
}

/// `virsh create` of `g` as `name`, files in `dir`; returns once it is running, with
/// `virsh create`'s wall time in ms.
pub async fn create(name: &str, g: &Guest, dir: &Path) -> anyhow::Result<(Domain, f64)> {
    let mut files = Vec::new();
    let disk = if g.disk {
        let path = dir.join(format!("{name}.qcow2"));
        let ps = path.to_string_lossy();
        run::cmd("qemu-img", ["create", "-q", "-f", "qcow2", &ps, "1G"]).await?;
        files.push(path.clone());
        Some(path)
    } else {
        None
    };
    let console = dir.join(format!("{name}.con"));
    let xml_path = dir.join(format!("{name}.xml"));
    std::fs::write(&xml_path, domain_xml(name, g, disk.as_deref(), &console))?;
    files.push(console.clone());
    files.push(xml_path.clone());
    let ready = listen_for_marker(&console)?;
    let t0 = Instant::now();
    let created = run::timed(
        "virsh",
        ["-q", "-c", URI, "create", &xml_path.to_string_lossy()],
    )
    .await;
    match created.and_then(|(ms, _)| Ok((pid(name)?, ms))) {
        Ok((pid, ms)) => Ok((
            Domain {
                name: name.to_string(),
                pid,
                t0,
                ready,
                files,
            },
            ms,
        )),
        Err(e) => {
            ready.abort();
            remove_files(&files);
            Err(e)
        }
    }
}

fn remove_files(files: &[PathBuf]) {
    for f in files {
        let _ = std::fs::remove_file(f);
    }
}

/// The last lines of the domain's QEMU log (what libvirt and QEMU said).
pub fn log_tail(name: &str) -> String {
    kcore_bench::tail(Path::new(&format!("/var/log/libvirt/qemu/{name}.log")), 8)
}

/// QEMU's pid (libvirt's pidfile).
fn pid(name: &str) -> anyhow::Result<u32> {
    let path = format!("/run/libvirt/qemu/{name}.pid");
    std::fs::read_to_string(&path)
        .with_context(|| format!("read {path}"))?
        .trim()
        .parse()
        .with_context(|| format!("{path} holds no pid"))
}

/// `virsh destroy` (kill QEMU at once): its wall time and the time until QEMU had
/// exited, in ms. The domain's files go too.
pub async fn destroy(dom: Domain) -> anyhow::Result<(f64, f64)> {
    dom.ready.abort();
    let destroy = async {
        Ok(run::timed("virsh", ["-q", "-c", URI, "destroy", &dom.name])
            .await?
            .0)
    };
    let r = stop_and_exit(dom.pid, destroy).await.with_context(|| {
        format!(
            "destroy {}; its log ends:\n{}",
            dom.name,
            log_tail(&dom.name)
        )
    });
    remove_files(&dom.files);
    r
}

/// Destroy every running domain whose name starts with `prefix` (cleanup; errors ignored).
pub fn destroy_all(prefix: &str) {
    let Ok(out) = std::process::Command::new("virsh")
        .args(["-q", "-c", URI, "list", "--name"])
        .output()
    else {
        return;
    };
    for name in String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with(prefix))
    {
        let _ = std::process::Command::new("virsh")
            .args(["-q", "-c", URI, "destroy", name])
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_matches_kcores_guest() {
        let g = Guest {
            machine: "q35".into(),
            memory_mib: 128,
            vcpus: 1,
            kernel: "/w/vmlinuz".into(),
            initrd: "/w/initrd.img".into(),
            cmdline: "console=ttyS0 quiet".into(),
            bios: Some("/usr/share/qemu/qboot.rom".into()),
            disk: true,
            bridge: Some("kbench0".into()),
        };
        let x = domain_xml(
            "kb-1",
            &g,
            Some(Path::new("/w/kb-1.qcow2")),
            Path::new("/w/c"),
        );
        for want in [
            "<domain type='qemu'>",
            "<memory unit='MiB'>128</memory>",
            "machine='q35'",
            "<loader type='rom' readonly='yes'>/usr/share/qemu/qboot.rom</loader>",
            "<cmdline>console=ttyS0 quiet</cmdline>",
            "<acpi/>",
            "<source file='/w/kb-1.qcow2'/>",
            "<source bridge='kbench0'/>",
            "<source mode='connect' path='/w/c'/>",
            "<memballoon model='none'/>",
        ] {
            assert!(x.contains(want), "{want} missing from\n{x}");
        }
        let micro = Guest {
            machine: "microvm".into(),
            bios: None,
            ..g
        };
        let x = domain_xml("kb-2", &micro, Some(Path::new("/w/d")), Path::new("/w/c"));
        assert!(!x.contains("<acpi/>") && !x.contains("<loader"), "{x}");
        assert_eq!(x.matches("<address type='virtio-mmio'/>").count(), 2, "{x}");
    }
}

//! Host-level settings shared by every VM on a node, and the few host facts they come from.
//! Everything here is probed once when the node starts, never on a VM's start path.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::VmmError;
use crate::argv::Accel;
use crate::process::RunAs;
use crate::spec::HostLimits;

/// How this node runs QEMU.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub qemu_binary: PathBuf,
    pub accel: Accel,
    /// The unprivileged user QEMU runs as; None: as the daemon's user (root).
    pub run_as: Option<RunAs>,
    pub sandbox: bool,
    /// `-bios` for direct kernel boot on q35/pc (qboot: faster than SeaBIOS).
    pub kernel_boot_bios: Option<PathBuf>,
    pub tsc_khz: Option<u32>,
    /// Where fast-profile VMs' kernels are unpacked for a PVH boot (`crate::kernel`);
    /// None: every kernel boots as it is given.
    pub kernel_cache: Option<std::sync::Arc<crate::kernel::KernelCache>>,
    /// `<run-dir>/vms`.
    pub run_root: PathBuf,
    pub qmp_greeting_timeout: Duration,
    /// Told of every QMP command of every VM (the daemon's latency metrics).
    pub qmp_observer: Option<crate::qmp::QmpObserver>,
}

/// The accelerator the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

impl std::str::FromStr for AccelChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Kvm),
            "tcg" => Ok(AccelChoice::Tcg),
            o => Err(format!("unknown accel {o:?} (auto, kvm, tcg)")),
        }
    }
}

/// Resolve `auto`: KVM when /dev/kvm can be opened read-write, by the QEMU user too; else
/// TCG. An explicit `kvm` that the QEMU user cannot use is an error that says what to do.
pub fn resolve_accel(choice: AccelChoice, run_as: Option<&RunAs>) -> Result<Accel, VmmError> {
    const KVM: &str = "/dev/kvm";
    let usable = || -> Result<(), String> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(KVM)
            .map_err(|e| format!("{KVM}: {e}"))?;
        if let Some(r) = run_as {
            let meta = std::fs::metadata(KVM).map_err(|e| format!("{KVM}: {e}"))?;
            if !r.can_read_write(&meta) {
                return Err(format!(
                    "the QEMU user (uid {}) may not open {KVM}: add it to the group that owns \
                     {KVM} (usermod -aG kvm kcore-qemu)",
                    r.uid
                ));
            }
        }
        Ok(())
    };
    match choice {
        AccelChoice::Tcg => Ok(Accel::Tcg),
        AccelChoice::Kvm => usable()
            .map(|()| Accel::Kvm)
            .map_err(|e| VmmError::InvalidSpec(format!("accel kvm: {e}"))),
        AccelChoice::Auto => match usable() {
            Ok(()) => Ok(Accel::Kvm),
            Err(e) => {
                tracing::info!("accel auto: using TCG ({e})");
                Ok(Accel::Tcg)
            }
        },
    }
}

/// CPUs and memory of this host.
pub fn host_limits() -> HostLimits {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| (kb / 1024) as u32)
        .unwrap_or(0);
    HostLimits { cpus, memory_mib }
}

/// The host's TSC frequency in kHz, from /proc/cpuinfo ("cpu MHz").
pub fn host_tsc_khz() -> Option<u32> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0).round() as u32)
}

/// The QEMU version line (`QEMU emulator version 7.2.22 ...`), for node info.
pub fn qemu_version(binary: &Path) -> Result<String, VmmError> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| VmmError::io("run", binary, e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("").trim();
    Ok(first
        .strip_prefix("QEMU emulator version ")
        .unwrap_or(first)
        .to_string())
}

/// Look up a user by name (for `--qemu-user`).
pub fn lookup_user(name: &str) -> Result<RunAs, VmmError> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => {
            let cname = std::ffi::CString::new(name)
                .map_err(|_| VmmError::InvalidSpec(format!("bad user name {name:?}")))?;
            let groups = nix::unistd::getgrouplist(&cname, u.gid)
                .map_err(|e| VmmError::Sys {
                    op: "getgrouplist",
                    source: e,
                })?
                .into_iter()
                .map(|g| g.as_raw())
                .collect();
            Ok(RunAs {
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
                groups,
            })
        }
        Ok(None) => Err(VmmError::InvalidSpec(format!(
            "user {name:?} does not exist (create it: useradd --system --no-create-home \
             --shell /usr/sbin/nologin {name})"
        ))),
        Err(e) => Err(VmmError::Sys {
            op: "getpwnam",
            source: e,
        }),
    }
}

/// Check that `path` can be read by the QEMU user (by the mode bits of the file and of
/// every directory above it), so a start fails with a clear message instead of a QEMU error.
pub fn check_readable(what: &str, path: &Path, run_as: Option<&RunAs>) -> Result<(), VmmError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| VmmError::InvalidSpec(format!("{what} {}: {e}", path.display())))?;
    let Some(r) = run_as else { return Ok(()) };
    let allowed = |m: &std::fs::Metadata, bit: u32| {
        let mode = m.mode();
        if m.uid() == r.uid {
            mode & (bit << 6) != 0
        } else if m.gid() == r.gid || r.groups.contains(&m.gid()) {
            mode & (bit << 3) != 0
        } else {
            mode & bit != 0
        }
    };
    let deny = |p: &Path| {
        Err(VmmError::InvalidSpec(format!(
            "{what} {} is not readable by the QEMU user (uid {}): {} denies it; \
             make it world-readable or move it",
            path.display(),
            r.uid,
            p.display()
        )))
    };
    if !allowed(&meta, 0o4) {
        return deny(path);
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        if let Ok(m) = std::fs::metadata(d)
            && !allowed(&m, 0o1)
        {
            return deny(d);
        }
        dir = d.parent();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn readability_follows_mode_bits_of_file_and_parents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("vmlinuz");
        std::fs::write(&f, b"x").expect("write");
        let nobody = RunAs {
            uid: 65534,
            gid: 65534,
            groups: vec![65534],
        };
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        check_readable("kernel", &f, Some(&nobody)).expect("readable");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = check_readable("kernel", &f, Some(&nobody)).expect_err("not readable");
        assert!(
            e.to_string().contains("not readable by the QEMU user"),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let e = check_readable("kernel", &f, Some(&nobody)).expect_err("dir denies");
        assert!(
            e.to_string().contains(&dir.path().display().to_string()),
            "{e}"
        );
        check_readable("kernel", &f, None).expect("root reads anything");
    }

    #[test]
    fn accel_parses() {
        assert_eq!("tcg".parse::<AccelChoice>(), Ok(AccelChoice::Tcg));
        assert!("xen".parse::<AccelChoice>().is_err());
        assert_eq!(resolve_accel(AccelChoice::Tcg, None).ok(), Some(Accel::Tcg));
    }
}

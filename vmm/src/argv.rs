//! `VmSpec` + `LaunchConfig` -> QEMU argv. A pure function: no I/O, no probing, so the
//! start path spends no time here and every change shows in the golden files.
//!
//! The QMP and serial console sockets are not created by QEMU: the daemon binds them and
//! hands the listening sockets over as file descriptors (`fd=N`), so it can connect before
//! QEMU is even exec'd and learns QEMU is ready from the greeting, without polling.

use std::path::PathBuf;

use crate::spec::{Firmware, MachineType, Profile, VmSpec};

/// The accelerator QEMU runs the guest with (already resolved from `auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Host-side settings of one launch, decided by the node (not part of the VM spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchConfig {
    pub qemu_binary: PathBuf,
    pub accel: Accel,
    /// File descriptor number of the listening QMP socket inside QEMU.
    pub qmp_fd: i32,
    /// File descriptor number of the listening serial console socket inside QEMU.
    pub console_fd: i32,
    /// Firmware for `-bios` (e.g. qboot.rom for fast direct kernel boot); None: QEMU's default.
    pub bios: Option<PathBuf>,
    /// Host TSC frequency, passed to microvm guests (`tsc_early_khz=`): without it the
    /// kernel may hang calibrating the TSC against a PIT that microvm does not have.
    pub tsc_khz: Option<u32>,
    /// File descriptor number inside QEMU of the kernel to load instead of `spec.kernel`:
    /// the uncompressed PVH image of a fast-profile VM's kernel (`crate::kernel`).
    pub kernel_fd: Option<i32>,
    /// Run QEMU under its seccomp sandbox.
    pub sandbox: bool,
    /// File descriptor numbers inside QEMU of the NICs' taps, in the order of `spec.nics`.
    pub nic_fds: Vec<i32>,
    /// File descriptor numbers inside QEMU of the disks (and their backing images), in the
    /// order of `spec.disks`: QEMU opens `/dev/fdset/N`, never a path of the pool.
    pub disk_fds: Vec<DiskFds>,
    /// File descriptor number inside QEMU of the VM's UEFI variable store.
    pub uefi_vars_fd: Option<i32>,
    /// File descriptor number inside QEMU of the seed image (`VmSpec::seed`), read-only.
    pub seed_fd: Option<i32>,
    /// Guest RAM in a file the daemon opened (a template's memory), instead of anonymous
    /// memory: see [`MemoryFd`].
    pub memory: Option<MemoryFd>,
    /// `-incoming defer`: QEMU waits for `migrate-incoming` (a restore) instead of booting.
    pub incoming: bool,
}

/// Guest RAM backed by a file the daemon hands over as descriptor `fd`. QEMU 7.2's
/// `memory-backend-file` opens `mem-path` itself (plain `open`, not `/dev/fdset`), so the
/// path is the descriptor's `/proc/self/fd/N`. `shared`: `share=on` (writes reach the file,
/// for making a template); else `share=off`, a private copy-on-write mapping (a clone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryFd {
    pub fd: i32,
    pub shared: bool,
}

/// The id of a machine's RAM block when QEMU makes it from `-m` alone: a file backend given
/// to `-machine memory-backend=` must have this id, or a migration stream of a VM started
/// with `-m` names a RAM block the restoring QEMU does not have.
pub fn default_ram_id(machine: MachineType) -> &'static str {
    match machine {
        MachineType::Microvm => "microvm.ram",
        MachineType::Q35 | MachineType::Pc => "pc.ram",
    }
}

/// The descriptors of one disk inside QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskFds {
    /// The volume, opened read-write.
    pub file: i32,
    /// Its backing image (`Disk::backing`), opened read-only.
    pub backing: Option<i32>,
}

/// fd sets for `-add-fd`, numbered from 1 in the order they are added; hot-added disks get
/// the next free ones from QEMU.
struct FdSets(u32);

impl FdSets {
    /// `-add-fd` for `fd`, tagged with `opaque` (so a detach can find and drop it); returns
    /// the path QEMU opens.
    fn add(&mut self, a: &mut Vec<String>, fd: i32, opaque: &str) -> String {
        self.0 += 1;
        a.push("-add-fd".into());
        a.push(format!("fd={fd},set={},opaque={opaque}", self.0));
        format!("/dev/fdset/{}", self.0)
    }
}

/// Spare PCIe root ports on q35, for hot-added disks and NICs.
pub const HOTPLUG_PORTS: usize = 4;

/// The seccomp policy: deny everything QEMU does not need at run time. `-runas` cannot be
/// combined with `elevateprivileges=deny`, so the daemon starts QEMU as the target user.
pub const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// Build the QEMU argv; element 0 is the QEMU binary.
pub fn build_argv(spec: &VmSpec, cfg: &LaunchConfig) -> Vec<String> {
    let mut a: Vec<String> = Vec::with_capacity(48);
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    push(&[&cfg.qemu_binary.to_string_lossy()]);
    push(&["-name", &format!("guest={},debug-threads=on", spec.name)]);
    push(&["-uuid", &spec.id]);
    let uefi = match (spec.firmware, &spec.uefi_code, &spec.uefi_vars) {
        (Firmware::Uefi, Some(code), Some(vars)) => Some((code, vars)),
        _ => None,
    };
    let mut machine = machine_arg(spec.machine, spec.profile, cfg.accel);
    if uefi.is_some() {
        machine.push_str(",pflash0=pflash0,pflash1=pflash1");
    }
    if let Some(m) = cfg.memory {
        let id = default_ram_id(spec.machine);
        machine.push_str(&format!(",memory-backend={id}"));
        push(&[
            "-object",
            &format!(
                "memory-backend-file,id={id},size={}M,mem-path=/proc/self/fd/{},share={}",
                spec.memory_mib,
                m.fd,
                if m.shared { "on" } else { "off" }
            ),
        ]);
    }
    push(&["-machine", &machine]);
    if cfg.accel == Accel::Kvm {
        // With KVM the guest sees the host CPU; under TCG QEMU's default model is the fast one.
        push(&["-cpu", "host"]);
    }
    push(&["-smp", &spec.vcpus.to_string()]);
    push(&["-m", &format!("{}M", spec.memory_mib)]);
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    // Start with vCPUs stopped: the node connects QMP, then `cont`.
    push(&["-S"]);
    push(&[
        "-chardev",
        &format!("socket,id=qmp,fd={},server=on,wait=off", cfg.qmp_fd),
        "-mon",
        "chardev=qmp,mode=control",
    ]);
    push(&[
        "-chardev",
        &format!("socket,id=console,fd={},server=on,wait=off", cfg.console_fd),
        "-serial",
        "chardev:console",
    ]);
    let mut sets = FdSets(0);
    if let Some((code, vars)) = uefi {
        // The firmware code is a shared read-only system file; the variable store is this
        // VM's own and reaches QEMU as a descriptor.
        let vars_path = match cfg.uefi_vars_fd {
            Some(fd) => sets.add(&mut a, fd, "uefi-vars"),
            None => vars.to_string_lossy().into_owned(),
        };
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&[
            "-blockdev",
            &format!(
                "driver=file,filename={},node-name=pflash0-file,read-only=on",
                code.to_string_lossy()
            ),
            "-blockdev",
            "driver=raw,file=pflash0-file,node-name=pflash0,read-only=on",
            "-blockdev",
            &format!("driver=file,filename={vars_path},node-name=pflash1-file"),
            "-blockdev",
            "driver=raw,file=pflash1-file,node-name=pflash1",
        ]);
    } else if let Some(bios) = &cfg.bios {
        a.extend(["-bios".to_string(), bios.to_string_lossy().into_owned()]);
    }
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    if spec.machine == MachineType::Q35 && spec.profile == Profile::Standard {
        // q35's root bus takes no hotplug: spare PCIe root ports do (not in the fast
        // profile: four PCI bridges the guest enumerates at every boot).
        for i in 0..HOTPLUG_PORTS {
            push(&[
                "-device",
                &format!("pcie-root-port,id=hp{i},bus=pcie.0,chassis={}", i + 1),
            ]);
        }
    }
    let blk = if spec.machine == MachineType::Microvm {
        "virtio-blk-device"
    } else {
        "virtio-blk-pci"
    };
    for (i, d) in spec.disks.iter().enumerate() {
        let fds = cfg.disk_fds.get(i);
        let driver = if d.path.starts_with("/dev/") {
            "host_device"
        } else {
            "file"
        };
        let mut backing = String::new();
        if let (Some(b), Some(fd)) = (&d.backing, fds.and_then(|f| f.backing)) {
            let path = sets.add(&mut a, fd, &format!("{}-base", d.id));
            a.extend([
                "-blockdev".to_string(),
                format!(
                    "driver=file,filename={path},node-name={}-base-file,read-only=on",
                    d.id
                ),
                "-blockdev".to_string(),
                format!(
                    "driver={},file={}-base-file,node-name={}-base,read-only=on",
                    b.format.as_str(),
                    d.id,
                    d.id
                ),
            ]);
            backing = format!(",backing={}-base", d.id);
        }
        let path = match fds {
            Some(f) => sets.add(&mut a, f.file, &d.id),
            None => d.path.to_string_lossy().into_owned(),
        };
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&[
            "-blockdev",
            &format!(
                "driver={driver},filename={path},node-name={}-file,discard=unmap",
                d.id
            ),
            "-blockdev",
            &format!(
                "driver={},file={}-file,node-name={}{backing}",
                d.format.as_str(),
                d.id,
                d.id
            ),
        ]);
        let mut dev = format!("{blk},drive={},id={}", d.id, d.id);
        if let Some(port) = &d.port {
            dev.push_str(&format!(",bus={port}"));
        }
        if let Some(i) = d.bootindex {
            dev.push_str(&format!(",bootindex={i}"));
        }
        push(&["-device", &dev]);
    }
    if let Some(seed) = &spec.seed {
        // Read-only, after the disks (so it does not move their guest names), with the
        // serial `cidata` (/dev/disk/by-id/virtio-cidata in the guest).
        let path = match cfg.seed_fd {
            Some(fd) => sets.add(&mut a, fd, "seed"),
            None => seed.to_string_lossy().into_owned(),
        };
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&[
            "-blockdev",
            &format!("driver=file,filename={path},node-name=seed-file,read-only=on"),
            "-blockdev",
            "driver=raw,file=seed-file,node-name=seed,read-only=on",
            "-device",
            &format!("{blk},drive=seed,id=seed,serial=cidata"),
        ]);
    }
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    // qboot (a `-bios` for direct kernel boot) hangs on the table-loader command vmgenid
    // needs (measured with QEMU 7.2): only SeaBIOS and OVMF get the device.
    if let Some(g) = &spec.vmgenid
        && spec.machine != MachineType::Microvm
        && cfg.bios.is_none()
    {
        push(&["-device", &format!("vmgenid,guid={g},id=vmgenid0")]);
    }
    // The daemon opened the taps; QEMU only gets their descriptors (no vhost: an
    // unprivileged QEMU cannot open /dev/vhost-net).
    for (n, fd) in spec.nics.iter().zip(&cfg.nic_fds) {
        push(&["-netdev", &format!("tap,id={},fd={fd},vhost=off", n.id)]);
        let mut dev = format!(
            "{},netdev={},mac={},id={}",
            n.model.device(spec.machine),
            n.id,
            n.mac,
            n.id
        );
        if let Some(port) = &n.port {
            dev.push_str(&format!(",bus={port}"));
        }
        push(&["-device", &dev]);
    }
    if let Some(kernel) = &spec.kernel {
        let kernel = match cfg.kernel_fd {
            Some(fd) => format!("/proc/self/fd/{fd}"),
            None => kernel.to_string_lossy().into_owned(),
        };
        push(&["-kernel", &kernel]);
        if let Some(initrd) = &spec.initrd {
            push(&["-initrd", &initrd.to_string_lossy()]);
        }
        let cmdline = kernel_cmdline(spec, cfg);
        if !cmdline.is_empty() {
            push(&["-append", &cmdline]);
        }
    }
    if cfg.incoming {
        push(&["-incoming", "defer"]);
    }
    if cfg.sandbox {
        push(&["-sandbox", SANDBOX]);
    }
    push(&["-msg", "timestamp=on"]);
    a
}

/// What the fast profile turns off, per machine: devices a guest booted directly from a
/// kernel, with a serial console and virtio devices, does not use. microvm keeps its
/// PIT, PIC, RTC and ACPI: without the PIT a kernel can hang calibrating its APIC timer
/// under TCG, without the RTC it waits ~2 s for a clock, without ACPI there is no power
/// button (`stop` could only quit).
pub fn fast_machine_options(machine: MachineType) -> &'static str {
    match machine {
        // No option ROMs: its firmware (qboot) loads the kernel itself.
        MachineType::Microvm => ",x-option-roms=off",
        // No SATA controller, SMBus, SMM, VMware port or PS/2 controller.
        MachineType::Q35 => ",sata=off,smbus=off,smm=off,vmport=off,i8042=off",
        MachineType::Pc => ",smbus=off,smm=off,vmport=off,i8042=off",
    }
}

fn machine_arg(machine: MachineType, profile: Profile, accel: Accel) -> String {
    let extra = match profile {
        Profile::Standard => "",
        Profile::Fast => fast_machine_options(machine),
    };
    format!("{},accel={}{extra}", machine.qemu_name(), accel.as_str())
}

/// Kernel parameters the fast profile adds (unless the command line sets them): skip the
/// crypto API's boot-time self-tests (~0.2 s under TCG; a kernel booted with `fips=1`
/// runs them anyway), and keep the SMP instructions on one vCPU instead of patching the
/// whole kernel to their uniprocessor forms (~0.1 s under TCG). Kata Containers boots its
/// guests with both. Measured in docs/profiles.md.
pub const FAST_KERNEL_PARAMS: [&str; 2] = ["cryptomgr.notests", "noreplace-smp"];

fn kernel_cmdline(spec: &VmSpec, cfg: &LaunchConfig) -> String {
    let mut c = spec.cmdline.clone().unwrap_or_default();
    let has = |c: &str, key: &str| {
        c.split_whitespace()
            .any(|t| t.split('=').next() == Some(key))
    };
    let add = |c: &mut String, param: &str| {
        if !c.is_empty() {
            c.push(' ');
        }
        c.push_str(param);
    };
    if let (MachineType::Microvm, Some(khz)) = (spec.machine, cfg.tsc_khz)
        && !has(&c, "tsc_early_khz")
    {
        add(&mut c, &format!("tsc_early_khz={khz}"));
    }
    if spec.profile == Profile::Fast {
        for p in FAST_KERNEL_PARAMS {
            if !has(&c, p) {
                add(&mut c, p);
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spec::RestartPolicy;

    fn spec(machine: MachineType) -> VmSpec {
        VmSpec {
            id: "0b1e3c9e-5a8e-4c2e-9f59-6a4f1d2b7c10".into(),
            name: "web-1".into(),
            machine,
            profile: crate::spec::Profile::Standard,
            vcpus: 2,
            memory_mib: 512,
            kernel: Some("/var/lib/kcore/images/vmlinuz".into()),
            initrd: Some("/var/lib/kcore/images/initrd.img".into()),
            cmdline: Some("console=ttyS0 quiet".into()),
            ready_pattern: None,
            restart_policy: RestartPolicy::Never,
            disks: Vec::new(),
            firmware: crate::spec::Firmware::Bios,
            uefi_code: None,
            uefi_vars: None,
            nics: Vec::new(),
            qemu_uid: None,
            autostart: false,
            seed: None,
            vmgenid: None,
            restore: None,
        }
    }

    fn cfg(accel: Accel) -> LaunchConfig {
        LaunchConfig {
            qemu_binary: "/usr/bin/qemu-system-x86_64".into(),
            accel,
            qmp_fd: 3,
            console_fd: 4,
            bios: None,
            tsc_khz: Some(2_500_000),
            kernel_fd: None,
            sandbox: true,
            nic_fds: Vec::new(),
            disk_fds: Vec::new(),
            uefi_vars_fd: None,
            seed_fd: None,
            memory: None,
            incoming: false,
        }
    }

    /// Compare with `src/golden/NAME.argv` (one argument a line). Set
    /// `KCORE_UPDATE_GOLDEN=1` to rewrite the files after an intended change.
    fn golden(name: &str, argv: &[String]) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/golden")
            .join(format!("{name}.argv"));
        let got = argv.join("\n") + "\n";
        if std::env::var_os("KCORE_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &got).expect("write golden file");
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("{}: {e} (KCORE_UPDATE_GOLDEN=1 creates it)", path.display())
        });
        assert_eq!(got, want, "argv differs from {}", path.display());
    }

    #[test]
    fn q35_tcg() {
        golden(
            "q35-tcg",
            &build_argv(&spec(MachineType::Q35), &cfg(Accel::Tcg)),
        );
    }

    #[test]
    fn a_clone_maps_its_template_privately_and_waits_for_its_state() {
        let mut s = spec(MachineType::Q35);
        s.vmgenid = Some("6c1b1ad3-43c5-4a9e-8f33-7f3f7c2c1a10".into());
        let mut c = cfg(Accel::Tcg);
        c.memory = Some(MemoryFd {
            fd: 7,
            shared: false,
        });
        c.incoming = true;
        let argv = build_argv(&s, &c);
        golden("q35-clone", &argv);
        // qboot gets no vmgenid (it hangs on the device's table-loader command).
        c.bios = Some("/usr/share/qemu/qboot.rom".into());
        c.memory = Some(MemoryFd {
            fd: 7,
            shared: true,
        });
        let argv = build_argv(&s, &c);
        assert!(!argv.iter().any(|a| a.starts_with("vmgenid")), "{argv:?}");
        assert!(
            argv.iter()
                .any(|a| a.ends_with("mem-path=/proc/self/fd/7,share=on")),
            "{argv:?}"
        );
    }

    #[test]
    fn q35_kvm_with_qboot() {
        let mut c = cfg(Accel::Kvm);
        c.bios = Some("/usr/share/qemu/qboot.rom".into());
        golden("q35-kvm-qboot", &build_argv(&spec(MachineType::Q35), &c));
    }

    #[test]
    fn pc_without_sandbox_or_initrd() {
        let mut s = spec(MachineType::Pc);
        s.initrd = None;
        s.cmdline = None;
        let mut c = cfg(Accel::Tcg);
        c.sandbox = false;
        golden("pc-tcg-nosandbox", &build_argv(&s, &c));
    }

    #[test]
    fn microvm_gets_tsc_khz() {
        let argv = build_argv(&spec(MachineType::Microvm), &cfg(Accel::Tcg));
        golden("microvm-tcg", &argv);
        let append = argv
            .iter()
            .skip_while(|a| *a != "-append")
            .nth(1)
            .expect("-append present");
        assert_eq!(append, "console=ttyS0 quiet tsc_early_khz=2500000");
    }

    #[test]
    fn disks_and_uefi() {
        use crate::spec::{Backing, Disk, DiskFormat, Firmware};
        let mut s = spec(MachineType::Q35);
        s.kernel = None;
        s.initrd = None;
        s.cmdline = None;
        s.firmware = Firmware::Uefi;
        s.uefi_code = Some("/usr/share/OVMF/OVMF_CODE_4M.fd".into());
        s.uefi_vars = Some("/var/lib/kcore/vms/x/OVMF_VARS.fd".into());
        s.disks = vec![
            Disk {
                id: "disk0".into(),
                path: "/var/lib/kcore/pools/default/volumes/web-1-root.qcow2".into(),
                format: DiskFormat::Qcow2,
                bootindex: Some(1),
                pool: "default".into(),
                volume: "web-1-root".into(),
                image: "debian".into(),
                size_bytes: 1 << 30,
                port: None,
                backing: Some(Backing {
                    path: "/var/lib/kcore/pools/default/images/debian.qcow2".into(),
                    format: DiskFormat::Qcow2,
                }),
            },
            Disk {
                id: "disk1".into(),
                path: "/dev/vg0/kcore-web-1-disk1".into(),
                format: DiskFormat::Raw,
                bootindex: None,
                pool: "fast".into(),
                volume: "web-1-disk1".into(),
                image: String::new(),
                size_bytes: 1 << 30,
                port: Some("hp0".into()),
                backing: None,
            },
        ];
        let mut c = cfg(Accel::Tcg);
        c.disk_fds = vec![
            DiskFds {
                file: 5,
                backing: Some(6),
            },
            DiskFds {
                file: 7,
                backing: None,
            },
        ];
        c.uefi_vars_fd = Some(8);
        let argv = build_argv(&s, &c);
        golden("q35-uefi-disks", &argv);
        // No path of a pool or of the VM's own files reaches QEMU: only descriptors.
        for a in &argv {
            assert!(
                !a.contains("/var/lib/kcore") && !a.contains("/dev/vg0"),
                "{a}"
            );
        }
    }

    #[test]
    fn nics_get_tap_fds() {
        use crate::spec::{Nic, NicModel};
        let nic = |i: usize, model: NicModel, port: Option<&str>| Nic {
            id: format!("net{i}"),
            network: "default".into(),
            mac: format!("52:54:00:12:34:{i:02x}").parse().expect("a MAC"),
            model,
            tap: format!("ktap-{i}"),
            port: port.map(str::to_string),
        };
        let mut s = spec(MachineType::Q35);
        s.nics = vec![
            nic(0, NicModel::Virtio, None),
            nic(1, NicModel::E1000, None),
            nic(2, NicModel::Virtio, Some("hp1")),
        ];
        let mut c = cfg(Accel::Tcg);
        c.nic_fds = vec![5, 6, 7];
        golden("q35-nics", &build_argv(&s, &c));
        let mut s = spec(MachineType::Microvm);
        s.nics = vec![nic(0, NicModel::Virtio, None)];
        c.nic_fds = vec![5];
        let argv = build_argv(&s, &c);
        assert!(argv.contains(&"tap,id=net0,fd=5,vhost=off".to_string()));
        assert!(
            argv.contains(
                &"virtio-net-device,netdev=net0,mac=52:54:00:12:34:00,id=net0".to_string()
            )
        );
    }

    #[test]
    fn a_seed_is_a_read_only_disk_after_the_others() {
        use crate::spec::{Disk, DiskFormat};
        let mut s = spec(MachineType::Q35);
        s.disks = vec![Disk {
            id: "disk0".into(),
            path: "/var/lib/kcore/pools/default/volumes/web-1-disk1.qcow2".into(),
            format: DiskFormat::Qcow2,
            bootindex: None,
            pool: "default".into(),
            volume: "web-1-disk1".into(),
            image: String::new(),
            size_bytes: 1 << 30,
            port: None,
            backing: None,
        }];
        s.seed = Some("/var/lib/kcore/vms/x/cidata.img".into());
        let mut c = cfg(Accel::Tcg);
        c.disk_fds = vec![DiskFds {
            file: 5,
            backing: None,
        }];
        c.seed_fd = Some(6);
        let argv = build_argv(&s, &c);
        golden("q35-seed", &argv);
        assert!(argv.iter().all(|a| !a.contains("cidata.img")), "{argv:?}");
        let disk = argv
            .iter()
            .position(|a| a.starts_with("virtio-blk-pci,drive=disk0"))
            .expect("disk0");
        let seed = argv
            .iter()
            .position(|a| a == "virtio-blk-pci,drive=seed,id=seed,serial=cidata")
            .expect("seed device");
        assert!(disk < seed, "the seed comes after the disks");
        s.machine = MachineType::Microvm;
        let argv = build_argv(&s, &c);
        assert!(argv.contains(&"virtio-blk-device,drive=seed,id=seed,serial=cidata".to_string()));
    }

    #[test]
    fn fast_profile_drops_what_the_guest_does_not_use() {
        let mut s = spec(MachineType::Microvm);
        s.profile = Profile::Fast;
        let mut c = cfg(Accel::Tcg);
        c.kernel_fd = Some(5);
        let argv = build_argv(&s, &c);
        golden("microvm-fast", &argv);
        assert!(argv.contains(&"/proc/self/fd/5".to_string()), "{argv:?}");
        assert!(
            argv.contains(
                &"console=ttyS0 quiet tsc_early_khz=2500000 cryptomgr.notests noreplace-smp"
                    .to_string()
            )
        );
        let mut c = cfg(Accel::Tcg);
        c.bios = Some("/usr/share/qemu/qboot.rom".into());
        s.machine = MachineType::Q35;
        let argv = build_argv(&s, &c);
        golden("q35-fast", &argv);
        assert!(
            !argv.iter().any(|a| a.starts_with("pcie-root-port")),
            "no hotplug ports: {argv:?}"
        );
        s.machine = MachineType::Pc;
        golden("pc-fast", &build_argv(&s, &c));
    }

    #[test]
    fn fast_kernel_params_never_override_the_users() {
        let mut s = spec(MachineType::Q35);
        s.profile = Profile::Fast;
        s.cmdline = Some("console=ttyS0 cryptomgr.notests=0 noreplace-smp".into());
        let argv = build_argv(&s, &cfg(Accel::Tcg));
        assert!(
            argv.contains(&"console=ttyS0 cryptomgr.notests=0 noreplace-smp".to_string()),
            "{argv:?}"
        );
        // A kernel without a command line still gets them; standard never does.
        s.cmdline = None;
        let argv = build_argv(&s, &cfg(Accel::Tcg));
        assert!(argv.contains(&"cryptomgr.notests noreplace-smp".to_string()));
        s.profile = Profile::Standard;
        let argv = build_argv(&s, &cfg(Accel::Tcg));
        assert!(!argv.iter().any(|a| a.contains("notests")), "{argv:?}");
        assert!(argv.contains(&"/var/lib/kcore/images/vmlinuz".to_string()));
    }

    #[test]
    fn microvm_keeps_an_explicit_tsc_khz() {
        let mut s = spec(MachineType::Microvm);
        s.cmdline = Some("console=ttyS0 tsc_early_khz=1000".into());
        let argv = build_argv(&s, &cfg(Accel::Tcg));
        assert!(argv.contains(&"console=ttyS0 tsc_early_khz=1000".to_string()));
    }

    #[test]
    fn every_vm_is_started_paused_and_findable_by_uuid() {
        for m in [MachineType::Q35, MachineType::Pc, MachineType::Microvm] {
            let argv = build_argv(&spec(m), &cfg(Accel::Tcg));
            assert!(argv.contains(&"-S".to_string()));
            let i = argv.iter().position(|a| a == "-uuid").expect("-uuid");
            assert_eq!(argv[i + 1], "0b1e3c9e-5a8e-4c2e-9f59-6a4f1d2b7c10");
        }
    }
}

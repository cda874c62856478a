//! The VM spec as the node stores it (`spec.json`) and as the argv builder reads it.
//!
//! This is kcore's domain type, independent of the gRPC API: the daemon translates the
//! proto `VMSpec` into this and back.

use std::path::{Path, PathBuf};

use kcore_types::MacAddr;
use serde::{Deserialize, Serialize};

use crate::VmmError;

/// Upper bound on vCPUs per VM, whatever the host has.
pub const MAX_VCPUS: u32 = 512;
/// Lower bound on memory: below this no Linux guest boots.
pub const MIN_MEMORY_MIB: u32 = 16;
/// Longest kernel command line we accept (x86 boot protocol limit is 2048 by default).
pub const MAX_CMDLINE_LEN: usize = 2048;

/// The QEMU machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MachineType {
    /// Modern PC with PCIe (the default).
    #[default]
    Q35,
    /// i440FX PC.
    Pc,
    /// Minimal machine without PCI, for direct kernel boot.
    Microvm,
}

impl MachineType {
    /// The name QEMU knows the machine by.
    pub fn qemu_name(self) -> &'static str {
        match self {
            MachineType::Q35 => "q35",
            MachineType::Pc => "pc",
            MachineType::Microvm => "microvm",
        }
    }
}

impl MachineType {
    /// How many disks and NICs fit on the machine's root bus, measured with QEMU 7.2: q35
    /// has 30 free PCIe slots, 4 of which hold kcore's hotplug ports; pc has 30 free PCI
    /// slots; microvm has 24 virtio-mmio transports. (Devices hot-added to a q35 VM sit in
    /// the hotplug ports, not on the root bus.)
    pub fn max_root_devices(self) -> usize {
        match self {
            MachineType::Q35 => 26,
            MachineType::Pc => 30,
            MachineType::Microvm => 24,
        }
    }

    /// Refuse more disks and NICs on the root bus than the machine has room for.
    pub fn check_device_count(self, disks: usize, nics: usize) -> Result<(), VmmError> {
        let max = self.max_root_devices();
        if disks + nics > max {
            return Err(VmmError::InvalidSpec(format!(
                "{disks} disks and {nics} NICs are {} devices; machine {self} has room for \
                 {max}",
                disks + nics
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for MachineType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.qemu_name())
    }
}

/// How a VM's machine and firmware are chosen: for compatibility or for the fastest boot.
/// docs/profiles.md says what each costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// q35 with PCIe hotplug ports (or the machine asked), SeaBIOS, qboot for a direct
    /// kernel boot, or UEFI: everything kcore offers.
    #[default]
    Standard,
    /// The fastest machine for a direct kernel boot: microvm (qboot-based firmware, no
    /// PCI, no ACPI, no legacy timers; TSC frequency given to the kernel), or, when the
    /// VM needs a PCI device, pc with qboot and no PC extras (SATA, SMBus, SMM, vmport,
    /// PS/2). No hotplug, no UEFI, no boot from a disk.
    Fast,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Standard => "standard",
            Profile::Fast => "fast",
        }
    }

    /// The machine a VM of this profile gets: the one asked for, else the profile's own
    /// (fast: microvm, or pc when a NIC needs PCI, `needs_pci`).
    pub fn machine(self, asked: Option<MachineType>, needs_pci: bool) -> MachineType {
        match (asked, self) {
            (Some(m), _) => m,
            (None, Profile::Standard) => MachineType::default(),
            (None, Profile::Fast) if needs_pci => MachineType::Pc,
            (None, Profile::Fast) => MachineType::Microvm,
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "standard" => Ok(Profile::Standard),
            "fast" => Ok(Profile::Fast),
            o => Err(format!("unknown profile {o:?} (standard, fast)")),
        }
    }
}

/// What the fast profile cannot do, refused before anything is made: it boots a kernel
/// directly (its firmware, qboot, boots no disk) and has no UEFI.
pub fn check_profile(profile: Profile, kernel: bool, firmware: Firmware) -> Result<(), VmmError> {
    if profile != Profile::Fast {
        return Ok(());
    }
    if firmware == Firmware::Uefi {
        return Err(VmmError::InvalidSpec(
            "profile fast has no UEFI (its firmware is qboot): use --profile standard with \
             --firmware uefi"
                .into(),
        ));
    }
    if !kernel {
        return Err(VmmError::InvalidSpec(
            "profile fast needs a direct kernel boot (--kernel): its firmware, qboot, cannot \
             boot from a disk; use --profile standard to boot an image's own bootloader"
                .into(),
        ));
    }
    Ok(())
}

/// What to do when QEMU exits without an operator asking for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Leave the VM CRASHED (or STOPPED after a guest poweroff).
    #[default]
    Never,
    /// Restart after a crash, with backoff; a guest poweroff stays STOPPED.
    OnFailure,
    /// Restart after a crash or a guest poweroff, with backoff.
    Always,
}

/// Firmware of q35/pc machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// SeaBIOS (or qboot for direct kernel boot).
    #[default]
    Bios,
    /// OVMF, with a per-VM copy of the variable store.
    Uefi,
}

/// Disk image formats QEMU opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    #[default]
    Qcow2,
    Raw,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

/// A disk attached to the VM as virtio-blk, in order (vda, vdb, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// QEMU id / node name, e.g. `disk0`.
    pub id: String,
    pub path: PathBuf,
    pub format: DiskFormat,
    /// Boot order (1 = first); None: not bootable.
    #[serde(default)]
    pub bootindex: Option<u32>,
    /// The owner's labels (pool and volume), kept in spec.json; vmm does not use them.
    #[serde(default)]
    pub pool: String,
    #[serde(default)]
    pub volume: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub size_bytes: u64,
    /// The hotplug port (q35 `pcie-root-port` id) a hot-added disk sits on; None: the
    /// root bus. Kept, so the disk is on the same port after a restart and can leave again.
    #[serde(default)]
    pub port: Option<String>,
    /// The image a qcow2 overlay reads through to. QEMU gets it, like the disk itself, as
    /// a descriptor the node opened (read-only), never by the path in the qcow2 header.
    #[serde(default)]
    pub backing: Option<Backing>,
}

/// The read-only base of an overlay disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backing {
    pub path: PathBuf,
    pub format: DiskFormat,
}

/// The emulated NIC hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NicModel {
    /// virtio-net (paravirtual, the fast one).
    #[default]
    Virtio,
    /// Intel e1000, for guests without virtio drivers (not on microvm).
    E1000,
}

impl NicModel {
    pub fn as_str(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio",
            NicModel::E1000 => "e1000",
        }
    }

    /// The QEMU device for this model on `machine`.
    pub fn device(self, machine: MachineType) -> &'static str {
        match (self, machine) {
            (NicModel::Virtio, MachineType::Microvm) => "virtio-net-device",
            (NicModel::Virtio, _) => "virtio-net-pci",
            (NicModel::E1000, _) => "e1000",
        }
    }
}

impl std::str::FromStr for NicModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" | "virtio" | "virtio-net" => Ok(NicModel::Virtio),
            "e1000" => Ok(NicModel::E1000),
            o => Err(format!("unknown NIC model {o:?} (virtio, e1000)")),
        }
    }
}

/// A network interface. The owner creates the tap `tap` and hands QEMU its file descriptor
/// at every start (see [`crate::vm::NicOpener`]); QEMU never opens a tap itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// QEMU device and netdev id, e.g. `net0`.
    pub id: String,
    /// The owner's label: the network the NIC is on; vmm does not use it.
    #[serde(default)]
    pub network: String,
    /// `52:54:00:12:34:56`.
    pub mac: MacAddr,
    #[serde(default)]
    pub model: NicModel,
    /// The host tap device's name.
    #[serde(default)]
    pub tap: String,
    /// The hotplug port (q35) a hot-added NIC sits on; None: the root bus.
    #[serde(default)]
    pub port: Option<String>,
}

/// Everything needed to run one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    /// The VM's uuid; also QEMU's `-uuid`, used to recognise its process.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub machine: MachineType,
    /// Standard, or fast: the machine above is already the profile's; fast also drops
    /// what the guest does not use (see `argv`).
    #[serde(default)]
    pub profile: Profile,
    pub vcpus: u32,
    pub memory_mib: u32,
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Regex: the first console output matching it marks the guest ready.
    #[serde(default)]
    pub ready_pattern: Option<String>,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    #[serde(default)]
    pub disks: Vec<Disk>,
    #[serde(default)]
    pub firmware: Firmware,
    /// UEFI: the firmware code (read-only) and this VM's own variable store.
    #[serde(default)]
    pub uefi_code: Option<PathBuf>,
    #[serde(default)]
    pub uefi_vars: Option<PathBuf>,
    /// Network interfaces, in guest order.
    #[serde(default)]
    pub nics: Vec<Nic>,
    /// The uid this VM's QEMU runs as: its own, from the node's range after the QEMU user,
    /// kept across restarts. None: the QEMU user itself (or root, when QEMU runs as root).
    #[serde(default)]
    pub qemu_uid: Option<u32>,
    /// Start the VM when the node boots.
    #[serde(default)]
    pub autostart: bool,
    /// A small raw image the owner made for the guest to read (kcore's cloud-init NoCloud
    /// seed), attached read-only as a virtio disk after the others, on the root bus. Like
    /// the disks, QEMU gets it as a descriptor the owner opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<PathBuf>,
    /// The VM generation id QEMU's `vmgenid` device shows the guest (a uuid): a clone
    /// gets a new one, so the guest knows it was copied (Linux >= 5.18 reseeds its RNG).
    /// Given only where the firmware handles the device: see [`crate::argv`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmgenid: Option<String>,
    /// A clone: the template whose memory snapshot it started from (its disks read through
    /// the template's frozen base). Only a start with `pending` set restores; the owner
    /// clears it before that start, so later starts boot the guest from its disks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreFrom>,
}

/// Where a clone's first start comes from: a template's files on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreFrom {
    /// The template's name (the owner's label).
    pub template: String,
    /// The guest's memory, mapped copy-on-write (QEMU gets a descriptor, never the path).
    pub memory: PathBuf,
    /// The device state (a migration stream without RAM).
    pub devices: PathBuf,
    /// The next start restores (the clone's first).
    #[serde(default)]
    pub pending: bool,
    /// The clone is ready when its console matches its ready pattern; else as soon as its
    /// vCPUs run (the template was taken of a ready guest).
    #[serde(default)]
    pub await_ready_pattern: bool,
}

/// Default guest-ready pattern: a login prompt.
pub const DEFAULT_READY_PATTERN: &str = "login:";

/// What the host offers; specs are checked against it.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    pub cpus: u32,
    pub memory_mib: u32,
}

/// The rules a VM's settings follow, shared by the spec the node runs ([`VmSpec::validate`])
/// and the requests the daemon takes (checked before anything is made): one place for each.
///
/// vCPUs and memory: at least 1 vCPU and [`MIN_MEMORY_MIB`], at most [`MAX_VCPUS`] and what
/// `host` offers (when it is known: the node knows, the controller's placement decides).
pub fn check_resources(
    vcpus: u32,
    memory_mib: u32,
    host: Option<&HostLimits>,
) -> Result<(), VmmError> {
    let bad = |m: String| Err(VmmError::InvalidSpec(m));
    if vcpus == 0 {
        return bad("vcpu must be at least 1".into());
    }
    let max_vcpus = host.map_or(MAX_VCPUS, |h| h.cpus.min(MAX_VCPUS));
    if vcpus > max_vcpus {
        return bad(match host {
            Some(_) => format!("vcpu {vcpus} is more than this host has ({max_vcpus})"),
            None => format!("vcpu {vcpus} is more than {MAX_VCPUS}"),
        });
    }
    if memory_mib < MIN_MEMORY_MIB {
        return bad(format!(
            "memory {memory_mib} MiB is too small (at least {MIN_MEMORY_MIB} MiB)"
        ));
    }
    if let Some(h) = host
        && memory_mib > h.memory_mib
    {
        return bad(format!(
            "memory {memory_mib} MiB is more than this host has ({} MiB)",
            h.memory_mib
        ));
    }
    Ok(())
}

/// A boot source: a kernel (with an optional initrd and command line) or a disk.
pub fn check_boot(kernel: bool, initrd: bool, cmdline: bool, disks: usize) -> Result<(), VmmError> {
    let bad = |m: &str| Err(VmmError::InvalidSpec(m.to_string()));
    if !kernel && initrd {
        return bad("initrd given without a kernel");
    }
    if !kernel && cmdline {
        return bad("cmdline given without a kernel");
    }
    if !kernel && disks == 0 {
        return bad("no boot source: give a kernel (direct kernel boot) or an image");
    }
    Ok(())
}

/// UEFI needs a PC machine.
pub fn check_firmware(machine: MachineType, firmware: Firmware) -> Result<(), VmmError> {
    if firmware == Firmware::Uefi && machine == MachineType::Microvm {
        return Err(VmmError::InvalidSpec(
            "UEFI firmware needs machine q35 or pc, not microvm".into(),
        ));
    }
    Ok(())
}

/// A kernel command line: at most [`MAX_CMDLINE_LEN`] bytes, one line.
pub fn check_cmdline(c: &str) -> Result<(), VmmError> {
    if c.len() > MAX_CMDLINE_LEN {
        return Err(VmmError::InvalidSpec(format!(
            "cmdline is longer than {MAX_CMDLINE_LEN} bytes"
        )));
    }
    if c.contains('\0') || c.contains('\n') {
        return Err(VmmError::InvalidSpec(
            "cmdline contains a NUL or newline".into(),
        ));
    }
    Ok(())
}

/// A ready pattern is a regex.
pub fn check_ready_pattern(p: &str) -> Result<(), VmmError> {
    regex::Regex::new(p)
        .map(drop)
        .map_err(|e| VmmError::InvalidSpec(format!("ready pattern: {e}")))
}

/// A NIC model the machine has (e1000 is a PCI card: not on microvm).
pub fn check_nic_model(model: NicModel, machine: MachineType) -> Result<(), VmmError> {
    if model == NicModel::E1000 && machine == MachineType::Microvm {
        return Err(VmmError::InvalidSpec(
            "NIC model e1000 needs machine q35 or pc, not microvm".into(),
        ));
    }
    Ok(())
}

impl VmSpec {
    /// Check the spec against the host and the filesystem. Every error names the field.
    pub fn validate(&self, host: &HostLimits) -> Result<(), VmmError> {
        self.validate_planned(
            host,
            self.disks.len(),
            self.disks.iter().filter(|d| d.port.is_none()).count(),
        )
    }

    /// [`VmSpec::validate`] for a spec whose disks are not made yet: `disks` of them will
    /// be there, `root_disks` of them on the root bus.
    pub fn validate_planned(
        &self,
        host: &HostLimits,
        disks: usize,
        root_disks: usize,
    ) -> Result<(), VmmError> {
        check_resources(self.vcpus, self.memory_mib, Some(host))?;
        check_boot(
            self.kernel.is_some(),
            self.initrd.is_some(),
            self.cmdline.as_deref().is_some_and(|c| !c.is_empty()),
            disks,
        )?;
        check_firmware(self.machine, self.firmware)?;
        check_profile(self.profile, self.kernel.is_some(), self.firmware)?;
        if let Some(k) = &self.kernel {
            check_file("kernel", k)?;
        }
        if let Some(i) = &self.initrd {
            check_file("initrd", i)?;
        }
        if let Some(c) = &self.cmdline {
            check_cmdline(c)?;
        }
        if let Some(p) = &self.ready_pattern {
            check_ready_pattern(p)?;
        }
        self.machine.check_device_count(
            root_disks + usize::from(self.seed.is_some()),
            self.nics.iter().filter(|n| n.port.is_none()).count(),
        )?;
        self.validate_nics()
    }

    /// NIC ids and MACs are unique and look like what QEMU takes; e1000 is not on microvm.
    pub fn validate_nics(&self) -> Result<(), VmmError> {
        let bad = |m: String| Err(VmmError::InvalidSpec(m));
        for (i, n) in self.nics.iter().enumerate() {
            if n.id.is_empty()
                || !n
                    .id
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            {
                return bad(format!("NIC id {:?} is not a valid QEMU id", n.id));
            }
            check_nic_model(n.model, self.machine)?;
            if let Some(other) = self.nics[..i]
                .iter()
                .find(|o| o.id == n.id || o.mac == n.mac)
            {
                return bad(format!(
                    "NICs {} and {} share an id or a MAC ({})",
                    other.id, n.id, n.mac
                ));
            }
        }
        Ok(())
    }
}

fn check_file(what: &str, path: &Path) -> Result<(), VmmError> {
    if !path.is_absolute() {
        return Err(VmmError::InvalidSpec(format!(
            "{what} path {} is not absolute",
            path.display()
        )));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(VmmError::InvalidSpec(format!(
            "{what} {} is not a regular file",
            path.display()
        ))),
        Err(e) => Err(VmmError::InvalidSpec(format!(
            "{what} {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        VmSpec {
            id: "0b1e3c9e-5a8e-4c2e-9f59-6a4f1d2b7c10".into(),
            name: "web-1".into(),
            machine: MachineType::Q35,
            profile: Profile::Standard,
            vcpus: 1,
            memory_mib: 128,
            kernel: Some("/proc/self/exe".into()),
            initrd: None,
            cmdline: Some("console=ttyS0".into()),
            ready_pattern: None,
            restart_policy: RestartPolicy::Never,
            disks: Vec::new(),
            firmware: Firmware::Bios,
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
    const HOST: HostLimits = HostLimits {
        cpus: 2,
        memory_mib: 4096,
    };

    fn err(s: VmSpec) -> String {
        match s.validate(&HOST) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("spec {s:?} should be invalid"),
        }
    }

    #[test]
    fn valid_spec_passes() {
        let mut s = spec();
        s.kernel = Some(std::env::current_exe().expect("current exe"));
        s.validate(&HOST).expect("valid");
    }

    #[test]
    fn bounds_are_checked() {
        let mut s = spec();
        s.vcpus = 0;
        assert!(err(s).contains("vcpu must be at least 1"));
        let mut s = spec();
        s.vcpus = 3;
        assert!(err(s).contains("more than this host has (2)"));
        let mut s = spec();
        s.memory_mib = 0;
        assert!(err(s).contains("too small"));
        let mut s = spec();
        s.memory_mib = 8192;
        assert!(err(s).contains("8192 MiB is more than this host has"));
    }

    #[test]
    fn missing_kernel_is_named() {
        let mut s = spec();
        s.kernel = Some("/nonexistent/vmlinuz".into());
        let e = err(s);
        assert!(e.contains("kernel /nonexistent/vmlinuz"), "{e}");
        let mut s = spec();
        s.kernel = Some("relative/vmlinuz".into());
        assert!(err(s).contains("not absolute"));
        let mut s = spec();
        s.kernel = Some("/".into());
        assert!(err(s).contains("not a regular file"));
    }

    #[test]
    fn bad_pattern_and_cmdline() {
        let mut s = spec();
        s.kernel = Some(std::env::current_exe().expect("current exe"));
        s.ready_pattern = Some("(".into());
        assert!(err(s).contains("ready pattern"));
        let mut s = spec();
        s.kernel = Some(std::env::current_exe().expect("current exe"));
        s.cmdline = Some("a\nb".into());
        assert!(err(s).contains("newline"));
    }

    #[test]
    fn nics_are_checked() {
        let nic = |id: &str, mac: &str| Nic {
            id: id.into(),
            network: "n".into(),
            mac: mac.parse().expect("a MAC"),
            model: NicModel::Virtio,
            tap: "ktap-x".into(),
            port: None,
        };
        let mut s = spec();
        s.nics = vec![
            nic("net0", "52:54:00:00:00:01"),
            nic("net1", "52:54:00:00:00:02"),
        ];
        s.validate_nics().expect("valid");
        s.nics[1].mac = "52:54:00:00:00:01".parse().expect("a MAC");
        assert!(s.validate_nics().is_err(), "duplicate MAC");
        s.nics[1] = nic("net0", "52:54:00:00:00:03");
        assert!(s.validate_nics().is_err(), "duplicate id");
        // A malformed or multicast MAC cannot even be in a spec: it does not parse.
        assert!("52:54:00:00:00".parse::<MacAddr>().is_err(), "short MAC");
        assert!(
            serde_json::from_str::<Nic>(r#"{"id":"net1","mac":"01:00:5e:00:00:01","network":"n"}"#)
                .is_err(),
            "a multicast MAC in spec.json is refused"
        );
        s.nics[1] = nic("net 1", "52:54:00:00:00:03");
        assert!(s.validate_nics().is_err(), "bad id");
        s.nics[1] = nic("net1", "52:54:00:00:00:03");
        s.nics[1].model = NicModel::E1000;
        s.machine = MachineType::Microvm;
        assert!(s.validate_nics().is_err(), "e1000 on microvm");
        assert_eq!("".parse::<NicModel>(), Ok(NicModel::Virtio));
        assert!("rtl8139".parse::<NicModel>().is_err());
        assert_eq!(
            NicModel::Virtio.device(MachineType::Microvm),
            "virtio-net-device"
        );
    }

    #[test]
    fn the_fast_profile_picks_its_machine_and_refuses_what_it_lacks() {
        use Profile::*;
        assert_eq!(Standard.machine(None, false), MachineType::Q35);
        assert_eq!(Fast.machine(None, false), MachineType::Microvm);
        assert_eq!(Fast.machine(None, true), MachineType::Pc, "e1000 needs PCI");
        assert_eq!(
            Fast.machine(Some(MachineType::Q35), false),
            MachineType::Q35
        );
        assert!(check_profile(Fast, true, Firmware::Bios).is_ok());
        assert!(check_profile(Standard, false, Firmware::Uefi).is_ok());
        let e = check_profile(Fast, true, Firmware::Uefi)
            .expect_err("uefi")
            .to_string();
        assert!(e.contains("profile fast has no UEFI"), "{e}");
        let e = check_profile(Fast, false, Firmware::Bios)
            .expect_err("disk")
            .to_string();
        assert!(e.contains("profile fast needs a direct kernel boot"), "{e}");
        let mut s = spec();
        s.kernel = Some(std::env::current_exe().expect("current exe"));
        s.profile = Fast;
        s.firmware = Firmware::Uefi;
        assert!(err(s).contains("no UEFI"));
        assert_eq!("fast".parse::<Profile>(), Ok(Fast));
        assert_eq!("".parse::<Profile>(), Ok(Standard));
        assert!("turbo".parse::<Profile>().is_err());
        // Specs written before profiles existed read as standard.
        let j = serde_json::to_string(&spec()).expect("serialize");
        let old = j.replace(",\"profile\":\"standard\"", "");
        assert_ne!(old, j);
        let back: VmSpec = serde_json::from_str(&old).expect("parse");
        assert_eq!(back.profile, Standard);
    }

    #[test]
    fn device_counts_follow_the_machine() {
        assert!(MachineType::Q35.check_device_count(20, 6).is_ok());
        let e = MachineType::Q35
            .check_device_count(30, 0)
            .expect_err("30 disks on q35")
            .to_string();
        assert!(e.contains("room for 26"), "{e}");
        assert!(MachineType::Pc.check_device_count(15, 15).is_ok());
        assert!(MachineType::Pc.check_device_count(1, 30).is_err());
        assert!(MachineType::Microvm.check_device_count(24, 0).is_ok());
        assert!(MachineType::Microvm.check_device_count(24, 1).is_err());
    }

    #[test]
    fn json_round_trip_uses_lowercase_names() {
        let s = spec();
        let j = serde_json::to_string(&s).expect("serialize");
        assert!(j.contains("\"machine\":\"q35\""), "{j}");
        assert!(j.contains("\"restart_policy\":\"never\""), "{j}");
        let back: VmSpec = serde_json::from_str(&j).expect("parse");
        assert_eq!(back, s);
    }
}

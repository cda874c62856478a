//! What a create asks for ([`VmRequest`]), as checked types. The gRPC
//! layer turns the proto into these at its edge (`convert.rs`) and nowhere else; the
//! controller places, stores (its own serde schema) and sends them on, and the node makes
//! the VM they describe ([`VmRequest::to_vm_spec`], the spec `vmm` runs).
//!
//! One place validates a request ([`VmRequest::validate`]), with `vmm`'s rules for what
//! they share: the controller before anything is placed or made, the node again (with its
//! host's limits) before it makes anything.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kcore_types::{ImageName, MacAddr, NetworkName, PoolName, VmName, VolumeName};
use kcore_vmm::spec::{
    self as vspec, Firmware, HostLimits, MachineType, NicModel, Profile, RestartPolicy, VmSpec,
};
use serde::{Deserialize, Serialize};

use super::CloudInit;
use crate::error::{ApiError, ApiResult};

/// The largest data disk or boot disk a request may ask for, in GiB (the storage cap).
pub const MAX_DISK_GIB: u64 = kcore_storage::MAX_VOLUME_BYTES >> 30;

/// What a create asks for. Fields left unspecified keep `None` (the default applies), so
/// the VM shows the spec as it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRequest {
    pub vcpus: u32,
    pub memory_mib: u32,
    #[serde(default)]
    pub machine: Option<MachineType>,
    /// None: standard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    #[serde(default)]
    pub firmware: Option<Firmware>,
    #[serde(default)]
    pub restart: Option<RestartPolicy>,
    pub boot: Boot,
    /// Data disks, after the boot disk (vdb, vdc, ...; vda when there is no image).
    #[serde(default)]
    pub disks: Vec<DiskRequest>,
    /// NICs in guest order.
    #[serde(default)]
    pub nics: Vec<NicRequest>,
    /// Regex: the first console output matching it marks the guest ready.
    #[serde(default)]
    pub ready_pattern: Option<String>,
    #[serde(default)]
    pub autostart: bool,
    /// cloud-init NoCloud data: the node gives the VM a read-only seed disk with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init: Option<CloudInit>,
}

/// A create: the VM's name, what it asks for, and how.
#[derive(Debug, Clone)]
pub struct CreateVm {
    pub name: VmName,
    pub request: VmRequest,
    /// The node it must go to (None: placement picks).
    pub node: Option<kcore_types::NodeName>,
    /// Start it once defined.
    pub start: bool,
    /// Return once it runs (else at once, the start going on).
    pub wait: bool,
}

/// Where the VM boots from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Boot {
    /// Direct kernel boot; the disks, if any, are data.
    Kernel(KernelBoot),
    /// From a disk: a clone of an image (vda), or with no image the first disk given (an
    /// existing volume).
    Disk(Option<ImageDisk>),
    /// A kernel, with a root disk cloned from an image (vda).
    Both(KernelBoot, ImageDisk),
    /// No boot: a clone of a memory-snapshot template continues where the template's
    /// guest stood (its disks are overlays of the template's).
    Template(kcore_types::TemplateName),
}

/// A direct kernel boot: paths on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelBoot {
    pub kernel: PathBuf,
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    #[serde(default)]
    pub cmdline: Option<String>,
}

/// A boot disk cloned from an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDisk {
    pub image: ImageName,
    /// GiB (None: the image's own size).
    #[serde(default)]
    pub size_gib: Option<u32>,
    /// The pool it is made in (None: `default`).
    #[serde(default)]
    pub pool: Option<PoolName>,
}

/// A data disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskRequest {
    /// A new empty volume of `size_gib` GiB in `pool` (None: `default`).
    New {
        #[serde(default)]
        pool: Option<PoolName>,
        size_gib: u32,
    },
    /// An existing volume no VM uses.
    Existing {
        #[serde(default)]
        pool: Option<PoolName>,
        volume: VolumeName,
    },
}

impl DiskRequest {
    /// The pool (`default` when none was given).
    pub fn pool(&self) -> &str {
        let p = match self {
            DiskRequest::New { pool, .. } | DiskRequest::Existing { pool, .. } => pool,
        };
        p.as_deref().unwrap_or("default")
    }
}

/// A NIC to give the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicRequest {
    pub network: NetworkName,
    /// None: the controller picks one, unique in the cluster.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// None: virtio.
    #[serde(default)]
    pub model: Option<NicModel>,
}

impl Boot {
    pub fn kernel(&self) -> Option<&KernelBoot> {
        match self {
            Boot::Kernel(k) | Boot::Both(k, _) => Some(k),
            Boot::Disk(_) | Boot::Template(_) => None,
        }
    }

    pub fn image(&self) -> Option<&ImageDisk> {
        match self {
            Boot::Disk(i) => i.as_ref(),
            Boot::Both(_, i) => Some(i),
            Boot::Kernel(_) | Boot::Template(_) => None,
        }
    }
}

impl VmRequest {
    /// The machine the VM gets: the one asked for, else its profile's.
    pub fn machine(&self) -> MachineType {
        let needs_pci = self.nics.iter().any(|n| n.model == Some(NicModel::E1000));
        self.profile().machine(self.machine, needs_pci)
    }

    pub fn profile(&self) -> Profile {
        self.profile.unwrap_or_default()
    }

    /// Write down the machine the profile picked, so the VM's spec shows it (a request
    /// without a profile keeps its machine as given).
    pub fn settle_machine(&mut self) {
        if self.profile.is_some() && self.machine.is_none() {
            self.machine = Some(self.machine());
        }
    }

    /// The disks the VM will have: the boot disk cloned from the image, then the others.
    pub fn disk_count(&self) -> usize {
        usize::from(self.boot.image().is_some()) + self.disks.len()
    }

    /// Whether the VM gets a cloud-init seed disk.
    pub fn has_seed(&self) -> bool {
        self.cloud_init.as_ref().is_some_and(|c| !c.is_empty())
    }

    /// The one check of a request, before anything is made: resources (against `host`
    /// when known), the boot source, sizes, devices per machine type, firmware, command
    /// line, ready pattern, NIC models, volumes and MACs given once, cloud-init data.
    pub fn validate(&self, host: Option<&HostLimits>) -> ApiResult<()> {
        let machine = self.machine();
        vspec::check_resources(self.vcpus, self.memory_mib, host)?;
        // Before the machine's own checks: they would blame the machine the profile chose.
        vspec::check_profile(
            self.profile(),
            self.boot.kernel().is_some(),
            self.firmware.unwrap_or_default(),
        )?;
        if let Boot::Disk(None) = self.boot
            && self.disks.is_empty()
        {
            vspec::check_boot(false, false, false, 0)?;
        }
        if let Some(k) = self.boot.kernel() {
            for (what, p) in [("kernel", Some(&k.kernel)), ("initrd", k.initrd.as_ref())] {
                if let Some(p) = p
                    && !p.is_absolute()
                {
                    return Err(ApiError::InvalidArgument(format!(
                        "{what} path {} is not absolute",
                        p.display()
                    )));
                }
            }
            if let Some(c) = &k.cmdline {
                vspec::check_cmdline(c)?;
            }
        }
        if let Some(i) = self.boot.image()
            && let Some(gib) = i.size_gib
        {
            check_disk_size("the boot disk", gib)?;
        }
        for (n, d) in self.disks.iter().enumerate() {
            if let DiskRequest::New { size_gib, .. } = d {
                check_disk_size(&format!("disk {}", n + 1), *size_gib)?;
            }
        }
        let mut seen = Vec::new();
        for d in &self.disks {
            if let DiskRequest::Existing { volume, .. } = d {
                let key = (d.pool(), volume.as_str());
                if seen.contains(&key) {
                    return Err(ApiError::InvalidArgument(format!(
                        "volume {volume} is given twice"
                    )));
                }
                seen.push(key);
            }
        }
        if let Some(c) = &self.cloud_init {
            c.validate()?;
        }
        // The cloud-init seed is a disk too.
        machine.check_device_count(
            self.disk_count() + usize::from(self.has_seed()),
            self.nics.len(),
        )?;
        vspec::check_firmware(machine, self.firmware.unwrap_or_default())?;
        if let Some(p) = &self.ready_pattern {
            vspec::check_ready_pattern(p)?;
        }
        let mut macs = Vec::new();
        for n in &self.nics {
            vspec::check_nic_model(n.model.unwrap_or_default(), machine)?;
            if let Some(m) = n.mac {
                if macs.contains(&m) {
                    return Err(ApiError::InvalidArgument(format!(
                        "MAC {m} is given to two NICs"
                    )));
                }
                macs.push(m);
            }
        }
        Ok(())
    }

    /// The new bytes the request's volumes take in each pool (the boot disk counts when
    /// its size is given; an existing volume takes nothing new).
    pub fn new_bytes_per_pool(&self) -> BTreeMap<String, u64> {
        let mut need: BTreeMap<String, u64> = BTreeMap::new();
        if let Some(i) = self.boot.image() {
            let pool = i.pool.as_deref().unwrap_or("default").to_string();
            *need.entry(pool).or_default() += u64::from(i.size_gib.unwrap_or(0)) << 30;
        }
        for d in &self.disks {
            if let DiskRequest::New { size_gib, .. } = d {
                *need.entry(d.pool().to_string()).or_default() += u64::from(*size_gib) << 30;
            }
        }
        need
    }

    /// The spec `vmm` runs, before the node adds what it makes (disks, NICs with their
    /// taps, the QEMU uid, UEFI files).
    pub fn to_vm_spec(&self, id: &str, name: &VmName) -> VmSpec {
        let k = self.boot.kernel();
        VmSpec {
            id: id.to_string(),
            name: name.to_string(),
            machine: self.machine(),
            profile: self.profile(),
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            kernel: k.map(|k| k.kernel.clone()),
            initrd: k.and_then(|k| k.initrd.clone()),
            cmdline: k.and_then(|k| k.cmdline.clone()),
            ready_pattern: self.ready_pattern.clone(),
            restart_policy: self.restart.unwrap_or_default(),
            disks: Vec::new(),
            firmware: self.firmware.unwrap_or_default(),
            uefi_code: None,
            uefi_vars: None,
            nics: Vec::new(),
            qemu_uid: None,
            autostart: self.autostart,
            seed: None,
            vmgenid: None,
            restore: None,
        }
    }
}

/// A change to an existing VM (UpdateVM): each field None leaves that setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmUpdate {
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u32>,
    /// New cloud-init data; with every file empty, the VM's seed goes.
    pub cloud_init: Option<CloudInit>,
    pub autostart: Option<bool>,
}

impl VmUpdate {
    /// Whether it changes the vCPUs or the memory of `r` (which needs the VM stopped).
    pub fn resizes(&self, vcpus: u32, memory_mib: u32) -> bool {
        self.vcpus.is_some_and(|v| v != vcpus) || self.memory_mib.is_some_and(|m| m != memory_mib)
    }

    /// The cloud-init data `r` has after the update (None: no seed).
    fn cloud_init_after(&self, r: &VmRequest) -> Option<CloudInit> {
        match &self.cloud_init {
            None => r.cloud_init.clone(),
            Some(c) if c.is_empty() => None,
            Some(c) => Some(c.clone()),
        }
    }

    /// Make the change to `r`.
    pub fn apply(&self, r: &mut VmRequest) {
        r.cloud_init = self.cloud_init_after(r);
        r.vcpus = self.vcpus.unwrap_or(r.vcpus);
        r.memory_mib = self.memory_mib.unwrap_or(r.memory_mib);
        r.autostart = self.autostart.unwrap_or(r.autostart);
    }

    /// What it changes in `r`, in words (empty: nothing).
    pub fn changes(&self, r: &VmRequest) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(v) = self.vcpus.filter(|v| *v != r.vcpus) {
            out.push(format!("vcpu {} -> {v}", r.vcpus));
        }
        if let Some(m) = self.memory_mib.filter(|m| *m != r.memory_mib) {
            out.push(format!("memory {} -> {m} MiB", r.memory_mib));
        }
        let ci = self.cloud_init_after(r);
        if ci != r.cloud_init {
            out.push(match &ci {
                Some(c) => format!(
                    "cloud-init: {} (the seed is made again; the guest sees it from its next                      start)",
                    c.summary()
                ),
                None => "cloud-init removed (no seed from the next start)".to_string(),
            });
        }
        if let Some(a) = self.autostart.filter(|a| *a != r.autostart) {
            out.push(format!("autostart {}", if a { "on" } else { "off" }));
        }
        out
    }
}

/// The refusal of a vCPU or memory change while a VM is not STOPPED (the controller's and
/// the node's).
pub fn resize_needs_stop(name: &str, state: &str) -> ApiError {
    ApiError::FailedPrecondition(format!(
        "VM {name} is {state}: its vcpu and memory change only while it is STOPPED (kctl vm \
         stop {name}, then kctl vm set again); nothing was changed"
    ))
}

fn check_disk_size(what: &str, gib: u32) -> ApiResult<()> {
    if gib == 0 {
        return Err(ApiError::InvalidArgument(format!(
            "{what}: size must be at least 1 GiB"
        )));
    }
    if u64::from(gib) > MAX_DISK_GIB {
        return Err(ApiError::InvalidArgument(format!(
            "{what}: {gib} GiB is above the 64 TiB cap"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn kernel_vm() -> VmRequest {
        VmRequest {
            vcpus: 1,
            memory_mib: 128,
            machine: None,
            profile: None,
            firmware: None,
            restart: None,
            boot: Boot::Kernel(KernelBoot {
                kernel: "/k".into(),
                initrd: None,
                cmdline: Some("console=ttyS0".into()),
            }),
            disks: Vec::new(),
            nics: Vec::new(),
            ready_pattern: None,
            autostart: false,
            cloud_init: None,
        }
    }

    fn err(r: &VmRequest) -> String {
        r.validate(None).expect_err("invalid").to_string()
    }

    #[test]
    fn the_fast_profile_picks_the_machine_and_names_what_it_lacks() {
        let mut r = kernel_vm();
        r.profile = Some(Profile::Fast);
        r.validate(None).expect("valid");
        assert_eq!(r.machine(), MachineType::Microvm);
        r.settle_machine();
        assert_eq!(r.machine, Some(MachineType::Microvm), "the spec shows it");
        // An e1000 NIC needs PCI: pc, the lighter PCI machine.
        let mut r = kernel_vm();
        r.profile = Some(Profile::Fast);
        r.nics = vec![NicRequest {
            network: "default".parse().expect("a name"),
            mac: None,
            model: Some(NicModel::E1000),
        }];
        r.validate(None).expect("valid");
        assert_eq!(r.machine(), MachineType::Pc);
        // ... unless microvm was asked for: then the NIC is what is wrong.
        r.machine = Some(MachineType::Microvm);
        assert!(
            err(&r).contains("e1000 needs machine q35 or pc"),
            "{}",
            err(&r)
        );
        // UEFI is refused by the profile, not blamed on the machine it would pick.
        let mut r = kernel_vm();
        r.profile = Some(Profile::Fast);
        r.firmware = Some(Firmware::Uefi);
        assert!(err(&r).contains("profile fast has no UEFI"), "{}", err(&r));
        let mut r = kernel_vm();
        r.profile = Some(Profile::Fast);
        r.boot = Boot::Disk(Some(ImageDisk {
            image: "debian".parse().expect("a name"),
            size_gib: None,
            pool: None,
        }));
        assert!(
            err(&r).contains("profile fast needs a direct kernel boot"),
            "{}",
            err(&r)
        );
        // Without a profile nothing is settled: the spec keeps what was given.
        let mut r = kernel_vm();
        r.settle_machine();
        assert_eq!(r.machine, None);
        assert_eq!(
            r.to_vm_spec("id", &"web".parse().expect("a name")).machine,
            MachineType::Q35
        );
    }

    #[test]
    fn one_check_covers_the_whole_request() {
        kernel_vm().validate(None).expect("valid");
        let mut r = kernel_vm();
        r.memory_mib = 8;
        assert!(err(&r).contains("at least 16 MiB"), "{}", err(&r));
        let mut r = kernel_vm();
        r.vcpus = 0;
        assert!(err(&r).contains("vcpu must be at least 1"));
        let mut r = kernel_vm();
        r.disks = vec![DiskRequest::New {
            pool: None,
            size_gib: 0,
        }];
        assert_eq!(err(&r), "disk 1: size must be at least 1 GiB");
        r.disks = vec![DiskRequest::New {
            pool: None,
            size_gib: 70_000,
        }];
        assert!(err(&r).contains("64 TiB"), "{}", err(&r));
        let mut r = kernel_vm();
        r.disks = (0..30)
            .map(|_| DiskRequest::New {
                pool: None,
                size_gib: 1,
            })
            .collect();
        assert!(err(&r).contains("room for 26"), "{}", err(&r));
        let mut r = kernel_vm();
        r.boot = Boot::Disk(None);
        assert!(err(&r).contains("no boot source"), "{}", err(&r));
        let mut r = kernel_vm();
        r.machine = Some(MachineType::Microvm);
        r.firmware = Some(Firmware::Uefi);
        assert!(err(&r).contains("UEFI"), "{}", err(&r));
        let mut r = kernel_vm();
        r.ready_pattern = Some("(".into());
        assert!(err(&r).contains("ready pattern"));
        let mut r = kernel_vm();
        let mac: MacAddr = "52:54:00:00:00:01".parse().expect("mac");
        let nic = NicRequest {
            network: NetworkName::parse("lan").expect("name"),
            mac: Some(mac),
            model: None,
        };
        r.nics = vec![nic.clone(), nic];
        assert!(err(&r).contains("two NICs"), "{}", err(&r));
        let mut r = kernel_vm();
        let v = DiskRequest::Existing {
            pool: None,
            volume: VolumeName::parse("kept").expect("name"),
        };
        r.disks = vec![v.clone(), v];
        assert!(err(&r).contains("given twice"), "{}", err(&r));
    }

    #[test]
    fn cloud_init_is_part_of_the_one_check() {
        let mut r = kernel_vm();
        r.cloud_init = Some(CloudInit {
            user_data: "#cloud-config\n a: [\n".into(),
            ..Default::default()
        });
        assert!(
            err(&r).contains("user-data is not valid YAML"),
            "{}",
            err(&r)
        );
        // The seed is a disk: it counts against the machine's room.
        r.cloud_init = Some(CloudInit {
            user_data: "#!/bin/sh\n".into(),
            ..Default::default()
        });
        r.validate(None).expect("valid");
        r.disks = (0..26)
            .map(|_| DiskRequest::New {
                pool: None,
                size_gib: 1,
            })
            .collect();
        assert!(err(&r).contains("27 devices"), "{}", err(&r));
    }

    #[test]
    fn an_update_says_what_it_changes() {
        let r = kernel_vm();
        assert!(VmUpdate::default().changes(&r).is_empty());
        let same = VmUpdate {
            vcpus: Some(1),
            memory_mib: Some(128),
            autostart: Some(false),
            ..Default::default()
        };
        assert!(same.changes(&r).is_empty(), "the same values are no change");
        assert!(!same.resizes(r.vcpus, r.memory_mib));
        let u = VmUpdate {
            vcpus: Some(2),
            memory_mib: Some(256),
            cloud_init: Some(CloudInit {
                user_data: "#!/bin/sh\n".into(),
                ..Default::default()
            }),
            autostart: Some(true),
        };
        assert!(u.resizes(r.vcpus, r.memory_mib));
        let c = u.changes(&r);
        assert_eq!(c[0], "vcpu 1 -> 2");
        assert_eq!(c[1], "memory 128 -> 256 MiB");
        assert!(c[2].starts_with("cloud-init: user-data 10 B"), "{c:?}");
        assert_eq!(c[3], "autostart on");
        let mut after = r.clone();
        u.apply(&mut after);
        assert_eq!(
            (after.vcpus, after.memory_mib, after.autostart),
            (2, 256, true)
        );
        assert!(after.has_seed());
        // Every file empty: the seed goes.
        let remove = VmUpdate {
            cloud_init: Some(CloudInit::default()),
            ..Default::default()
        };
        assert_eq!(
            remove.changes(&after),
            ["cloud-init removed (no seed from the next start)"]
        );
        remove.apply(&mut after);
        assert_eq!(after.cloud_init, None);
        let e = resize_needs_stop("web", "RUNNING").to_string();
        assert!(
            e.starts_with("VM web is RUNNING: its vcpu and memory"),
            "{e}"
        );
    }

    #[test]
    fn host_limits_apply_when_known() {
        let host = HostLimits {
            cpus: 2,
            memory_mib: 512,
        };
        let mut r = kernel_vm();
        r.vcpus = 4;
        r.validate(None)
            .expect("the controller does not know the host");
        assert!(r.validate(Some(&host)).is_err());
    }

    #[test]
    fn the_store_schema_round_trips() {
        let mut r = kernel_vm();
        r.boot = Boot::Both(
            KernelBoot {
                kernel: "/k".into(),
                initrd: Some("/i".into()),
                cmdline: None,
            },
            ImageDisk {
                image: ImageName::parse("debian").expect("name"),
                size_gib: Some(20),
                pool: None,
            },
        );
        r.disks = vec![DiskRequest::Existing {
            pool: Some(PoolName::parse("fast").expect("name")),
            volume: VolumeName::parse("kept").expect("name"),
        }];
        let json = serde_json::to_string(&r).expect("json");
        assert!(json.contains("\"both\""), "{json}");
        // A row of a version before cloud-init reads as none, and none is not written.
        assert!(!json.contains("cloud_init"), "{json}");
        assert_eq!(serde_json::from_str::<VmRequest>(&json).expect("parse"), r);
        assert_eq!(r.disk_count(), 2);
        assert_eq!(
            r.new_bytes_per_pool().get("default").copied(),
            Some(20 << 30)
        );
    }
}

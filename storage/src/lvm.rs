//! The lvm backend: volumes are raw logical volumes in one volume group, made and read
//! with the lvm2 commands (`--reportformat json` for reports).
//!
//! A volume `NAME` is the LV `kcore-NAME`, created with `--addtag kcore`. kcore only lists
//! LVs that carry the tag, and refuses to touch (delete, resize, report) an LV that has
//! kcore's name but not its tag. With a thin pool configured, volumes are thin LVs
//! (`-V`, overcommitted like qcow2); otherwise they are linear LVs, and lvm2 itself refuses
//! one that does not fit in the VG (its message reaches the caller). Sizes are rounded up
//! by lvm2 to whole extents.
//!
//! `driver_loaded: false` adds `--driverloaded n` to every command: lvm2 then changes
//! metadata only, with no device-mapper (no activation, no /dev nodes). That is for hosts
//! (and test machines) without device-mapper; production uses `true`.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::backend::check_size;
use crate::runner::Runner;
use crate::{Backend, Capacity, ImageInfo, StorageError, VolumeFormat, VolumeInfo, name, qemu_img};

/// The tag on every LV kcore creates.
pub const LV_TAG: &str = "kcore";
/// The prefix of kcore's LV names.
pub const LV_PREFIX: &str = "kcore-";

/// Where an lvm pool lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvmConfig {
    pub vg: String,
    /// A thin pool LV in `vg`: volumes are then thin LVs.
    pub thin_pool: Option<String>,
    /// False: pass `--driverloaded n` (no device-mapper). True in production.
    pub driver_loaded: bool,
}

/// An LVM pool.
#[derive(Debug)]
pub struct LvmBackend {
    cfg: LvmConfig,
    runner: Arc<dyn Runner>,
}

/// One row of `lvs --reportformat json`.
#[derive(Debug, Clone, Deserialize)]
struct LvRow {
    lv_name: String,
    lv_size: String,
    #[serde(default)]
    lv_tags: String,
    #[serde(default)]
    pool_lv: String,
    #[serde(default)]
    data_percent: String,
}

#[derive(Debug, Deserialize)]
struct Report<T> {
    report: Vec<T>,
}

#[derive(Debug, Deserialize)]
struct LvSection {
    #[serde(default)]
    lv: Vec<LvRow>,
}

#[derive(Debug, Deserialize)]
struct VgSection {
    #[serde(default)]
    vg: Vec<VgRow>,
}

#[derive(Debug, Clone, Deserialize)]
struct VgRow {
    vg_size: String,
    vg_free: String,
}

impl LvRow {
    fn tagged(&self) -> bool {
        self.lv_tags.split(',').any(|t| t.trim() == LV_TAG)
    }
}

/// Check an LVM VG or LV name: `[A-Za-z0-9+_.-]`, not starting with `-`, not `.`/`..`.
pub fn validate_lvm_name(kind: &'static str, name: &str) -> Result<(), StorageError> {
    let fail = |reason| {
        Err(StorageError::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 127 {
        return fail("must be 1 to 127 characters");
    }
    if name == "." || name == ".." || name.starts_with('-') {
        return fail("cannot be '.' or '..' or start with '-'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
    {
        return fail("only A-Z, a-z, 0-9, '+', '_', '.' and '-' are allowed");
    }
    Ok(())
}

fn parse_u64(what: &str, s: &str) -> Result<u64, StorageError> {
    s.trim().parse().map_err(|_| StorageError::Parse {
        what: what.to_string(),
        reason: format!("expected a byte count, got {s:?}"),
    })
}

/// `"12.50"` -> 12.5; empty (not a thin LV) -> None.
fn parse_percent(s: &str) -> Option<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
}

impl LvmBackend {
    pub fn new(cfg: LvmConfig, runner: Arc<dyn Runner>) -> Result<Self, StorageError> {
        validate_lvm_name("volume group", &cfg.vg)?;
        if let Some(tp) = &cfg.thin_pool {
            validate_lvm_name("thin pool", tp)?;
        }
        Ok(LvmBackend { cfg, runner })
    }

    pub fn config(&self) -> &LvmConfig {
        &self.cfg
    }

    /// The LV name of volume `name`.
    pub fn lv_name(&self, name: &str) -> Result<String, StorageError> {
        name::validate("volume", name)?;
        Ok(format!("{LV_PREFIX}{name}"))
    }

    /// An lvm2 command with the options every call gets.
    fn cmd(&self, command: &str) -> Vec<String> {
        let mut argv = vec![command.to_string()];
        if !self.cfg.driver_loaded {
            argv.extend(["--driverloaded".to_string(), "n".to_string()]);
        }
        argv
    }

    fn report_opts(argv: &mut Vec<String>, fields: &str) {
        argv.extend(
            [
                "--reportformat",
                "json",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                fields,
            ]
            .map(String::from),
        );
    }

    /// Every LV of the VG (or of `target`, e.g. `VG/LV`), tagged or not.
    fn lvs(&self, target: &str) -> Result<Vec<LvRow>, StorageError> {
        let mut argv = self.cmd("lvs");
        Self::report_opts(&mut argv, "lv_name,lv_size,lv_tags,pool_lv,data_percent");
        argv.push(target.to_string());
        let out = self.runner.run(&argv)?;
        let report: Report<LvSection> =
            serde_json::from_slice(&out.stdout).map_err(|e| StorageError::Parse {
                what: "lvs".into(),
                reason: e.to_string(),
            })?;
        Ok(report.report.into_iter().flat_map(|s| s.lv).collect())
    }

    /// The row of volume `name`: NotFound if there is no such LV, NotManaged if it lacks
    /// kcore's tag.
    fn lookup(&self, name: &str) -> Result<LvRow, StorageError> {
        let lv = self.lv_name(name)?;
        let row = self
            .lvs(&self.cfg.vg)?
            .into_iter()
            .find(|r| r.lv_name == lv)
            .ok_or_else(|| StorageError::NotFound {
                kind: "volume",
                name: name.to_string(),
            })?;
        if !row.tagged() {
            return Err(StorageError::NotManaged {
                vg: self.cfg.vg.clone(),
                lv,
                tag: LV_TAG.to_string(),
            });
        }
        Ok(row)
    }

    fn device_path(&self, lv: &str) -> PathBuf {
        PathBuf::from(format!("/dev/{}/{lv}", self.cfg.vg))
    }

    fn to_info(&self, name: &str, row: &LvRow) -> Result<VolumeInfo, StorageError> {
        let size = parse_u64("lvs lv_size", &row.lv_size)?;
        let actual = match (row.pool_lv.is_empty(), parse_percent(&row.data_percent)) {
            (false, Some(pct)) => (size as f64 * pct / 100.0) as u64,
            _ => size,
        };
        Ok(VolumeInfo {
            name: name.to_string(),
            path: self.device_path(&row.lv_name),
            format: VolumeFormat::Raw,
            virtual_size: size,
            actual_size: actual,
            backing: None,
        })
    }

    fn remove_lv(&self, lv: &str) -> Result<(), StorageError> {
        let mut argv = self.cmd("lvremove");
        argv.extend(["-y".to_string(), format!("{}/{lv}", self.cfg.vg)]);
        self.runner.run(&argv)?;
        Ok(())
    }
}

impl Backend for LvmBackend {
    fn capacity(&self) -> Result<Capacity, StorageError> {
        if let Some(tp) = &self.cfg.thin_pool {
            let row = self
                .lvs(&format!("{}/{tp}", self.cfg.vg))?
                .into_iter()
                .next()
                .ok_or_else(|| StorageError::NotFound {
                    kind: "thin pool",
                    name: format!("{}/{tp}", self.cfg.vg),
                })?;
            let total = parse_u64("lvs lv_size", &row.lv_size)?;
            let used = parse_percent(&row.data_percent)
                .map(|p| (total as f64 * p / 100.0) as u64)
                .unwrap_or(0);
            return Ok(Capacity {
                total_bytes: total,
                free_bytes: total.saturating_sub(used),
            });
        }
        let mut argv = self.cmd("vgs");
        Self::report_opts(&mut argv, "vg_size,vg_free");
        argv.push(self.cfg.vg.clone());
        let out = self.runner.run(&argv)?;
        let report: Report<VgSection> =
            serde_json::from_slice(&out.stdout).map_err(|e| StorageError::Parse {
                what: "vgs".into(),
                reason: e.to_string(),
            })?;
        let row = report
            .report
            .into_iter()
            .flat_map(|s| s.vg)
            .next()
            .ok_or_else(|| StorageError::Parse {
                what: "vgs".into(),
                reason: format!("no row for volume group {}", self.cfg.vg),
            })?;
        Ok(Capacity {
            total_bytes: parse_u64("vgs vg_size", &row.vg_size)?,
            free_bytes: parse_u64("vgs vg_free", &row.vg_free)?,
        })
    }

    fn create_volume(
        &self,
        name: &str,
        size_bytes: u64,
        format: VolumeFormat,
    ) -> Result<VolumeInfo, StorageError> {
        let lv = self.lv_name(name)?;
        if format != VolumeFormat::Raw {
            return Err(StorageError::UnsupportedFormat {
                format: format.to_string(),
                reason: "lvm pools hold raw volumes only".into(),
            });
        }
        check_size(size_bytes)?;
        match self.lookup(name) {
            Ok(_) => {
                return Err(StorageError::AlreadyExists {
                    kind: "volume",
                    name: name.to_string(),
                });
            }
            Err(StorageError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let mut argv = self.cmd("lvcreate");
        argv.extend(["-y", "--addtag", LV_TAG, "-n"].map(String::from));
        argv.push(lv);
        match &self.cfg.thin_pool {
            Some(tp) => argv.extend([
                "-V".to_string(),
                format!("{size_bytes}b"),
                "--thinpool".to_string(),
                tp.clone(),
            ]),
            None => argv.extend(["-L".to_string(), format!("{size_bytes}b")]),
        }
        argv.push(self.cfg.vg.clone());
        self.runner.run(&argv)?;
        tracing::info!(volume = name, vg = %self.cfg.vg, size = size_bytes, "logical volume created");
        self.info(name)
    }

    fn clone_from_image(
        &self,
        image: &ImageInfo,
        name: &str,
        size_bytes: Option<u64>,
    ) -> Result<VolumeInfo, StorageError> {
        let size = size_bytes.unwrap_or(image.virtual_size);
        if size < image.virtual_size {
            return Err(StorageError::ShrinkRefused {
                name: name.to_string(),
                current: image.virtual_size,
                requested: size,
            });
        }
        let info = self.create_volume(name, size, VolumeFormat::Raw)?;
        if let Err(e) = qemu_img::convert_into_device(
            self.runner.as_ref(),
            &image.path,
            image.format,
            &info.path,
        ) {
            let lv = self.lv_name(name)?;
            if let Err(rm) = self.remove_lv(&lv) {
                tracing::warn!(lv, error = %rm, "cannot remove LV after failed image copy");
            }
            return Err(e);
        }
        tracing::info!(volume = name, image = %image.name, "image written into logical volume");
        Ok(info)
    }

    fn resize(&self, name: &str, new_size: u64) -> Result<VolumeInfo, StorageError> {
        check_size(new_size)?;
        let row = self.lookup(name)?;
        let current = parse_u64("lvs lv_size", &row.lv_size)?;
        if new_size < current {
            return Err(StorageError::ShrinkRefused {
                name: name.to_string(),
                current,
                requested: new_size,
            });
        }
        if new_size == current {
            return self.to_info(name, &row);
        }
        let mut argv = self.cmd("lvextend");
        argv.extend([
            "-L".to_string(),
            format!("{new_size}b"),
            format!("{}/{}", self.cfg.vg, row.lv_name),
        ]);
        self.runner.run(&argv)?;
        tracing::info!(
            volume = name,
            from = current,
            to = new_size,
            "logical volume extended"
        );
        self.info(name)
    }

    fn delete(&self, name: &str) -> Result<(), StorageError> {
        let row = self.lookup(name)?;
        self.remove_lv(&row.lv_name)?;
        tracing::info!(volume = name, vg = %self.cfg.vg, "logical volume removed");
        Ok(())
    }

    fn list(&self) -> Result<Vec<VolumeInfo>, StorageError> {
        let mut out = Vec::new();
        for row in self.lvs(&self.cfg.vg)? {
            let Some(name) = row.lv_name.strip_prefix(LV_PREFIX) else {
                continue;
            };
            if row.tagged() && name::validate("volume", name).is_ok() {
                out.push(self.to_info(name, &row)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn info(&self, name: &str) -> Result<VolumeInfo, StorageError> {
        let row = self.lookup(name)?;
        self.to_info(name, &row)
    }

    fn path(&self, name: &str) -> Result<PathBuf, StorageError> {
        let row = self.lookup(name)?;
        Ok(self.device_path(&row.lv_name))
    }
}

#[cfg(test)]
mod tests {
    //! Argv shapes for what the test machine's kernel cannot run (thin pools, writing an
    //! image into an LV), with a fake runner. tests/lvm.rs runs the rest on real lvm2.

    use std::sync::Mutex;

    use super::*;
    use crate::runner::Output;

    type Respond = dyn Fn(&[String]) -> Output + Send + Sync;

    struct Fake {
        calls: Mutex<Vec<Vec<String>>>,
        respond: Box<Respond>,
    }

    impl std::fmt::Debug for Fake {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Fake")
        }
    }

    impl Runner for Fake {
        fn output(&self, argv: &[String]) -> Result<Output, StorageError> {
            self.calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(argv.to_vec());
            Ok((self.respond)(argv))
        }
    }

    fn fake(respond: impl Fn(&[String]) -> Output + Send + Sync + 'static) -> Arc<Fake> {
        Arc::new(Fake {
            calls: Mutex::new(Vec::new()),
            respond: Box::new(respond),
        })
    }

    fn calls(f: &Fake) -> Vec<String> {
        f.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|a| a.join(" "))
            .collect()
    }

    const LVS_AFTER_CREATE: &str = r#"{"report":[{"lv":[
        {"lv_name":"tp","lv_size":"10737418240","lv_tags":"","pool_lv":"","data_percent":"25.00"},
        {"lv_name":"kcore-v","lv_size":"1073741824","lv_tags":"kcore","pool_lv":"tp","data_percent":"50.00"},
        {"lv_name":"kcore-foreign","lv_size":"4194304","lv_tags":"other","pool_lv":"","data_percent":""}
    ]}]}"#;

    fn thin_backend(runner: Arc<Fake>) -> LvmBackend {
        LvmBackend::new(
            LvmConfig {
                vg: "vg0".into(),
                thin_pool: Some("tp".into()),
                driver_loaded: true,
            },
            runner,
        )
        .expect("backend")
    }

    #[test]
    fn thin_volume_argv_and_sizes() {
        let created = Mutex::new(false);
        let runner = fake(move |argv| {
            let mut done = created.lock().unwrap_or_else(|e| e.into_inner());
            match argv[0].as_str() {
                "lvcreate" => {
                    *done = true;
                    Output::ok("")
                }
                "lvs" if *done => Output::ok(LVS_AFTER_CREATE),
                "lvs" => Output::ok(r#"{"report":[{"lv":[]}]}"#),
                _ => Output::failed(1, "unexpected"),
            }
        });
        let b = thin_backend(runner.clone());
        let v = b
            .create_volume("v", 1 << 30, VolumeFormat::Raw)
            .expect("create");
        assert_eq!(v.path, PathBuf::from("/dev/vg0/kcore-v"));
        assert_eq!(v.virtual_size, 1 << 30);
        assert_eq!(v.actual_size, 1 << 29);
        let c = calls(&runner);
        assert_eq!(
            c[1],
            "lvcreate -y --addtag kcore -n kcore-v -V 1073741824b --thinpool tp vg0"
        );
        assert!(c.iter().all(|a| !a.contains("--driverloaded")), "{c:?}");
        assert!(
            c[0].starts_with("lvs --reportformat json --units b --nosuffix -o "),
            "{c:?}"
        );

        let cap = b.capacity().expect("capacity");
        assert_eq!(cap.total_bytes, 10 << 30);
        assert_eq!(cap.free_bytes, (10u64 << 30) - (10u64 << 30) / 4);
        assert_eq!(
            calls(&runner).last().map(|s| s.ends_with(" vg0/tp")),
            Some(true)
        );

        // Listing skips the pool and untagged LVs; touching an untagged one is refused.
        let names: Vec<String> = b
            .list()
            .expect("list")
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["v"]);
        let err = b.delete("foreign").expect_err("untagged");
        assert!(matches!(err, StorageError::NotManaged { .. }), "{err}");
        assert!(calls(&runner).iter().all(|a| !a.starts_with("lvremove")));

        let err = b
            .create_volume("q", 1 << 30, VolumeFormat::Qcow2)
            .expect_err("qcow2");
        assert!(
            matches!(err, StorageError::UnsupportedFormat { .. }),
            "{err}"
        );
    }

    #[test]
    fn image_is_written_with_qemu_img_convert_and_failure_removes_the_lv() {
        let created = Mutex::new(false);
        let convert_ok = Mutex::new(true);
        let runner = fake(move |argv| {
            let mut done = created.lock().unwrap_or_else(|e| e.into_inner());
            match argv[0].as_str() {
                "lvcreate" => {
                    *done = true;
                    Output::ok("")
                }
                "lvremove" => {
                    *done = false;
                    Output::ok("")
                }
                "lvs" if *done => Output::ok(LVS_AFTER_CREATE),
                "lvs" => Output::ok(r#"{"report":[{"lv":[]}]}"#),
                "qemu-img" => {
                    let mut ok = convert_ok.lock().unwrap_or_else(|e| e.into_inner());
                    if *ok {
                        *ok = false;
                        Output::ok("")
                    } else {
                        Output::failed(1, "qemu-img: error while writing at byte 0: No space left")
                    }
                }
                _ => Output::failed(1, "unexpected"),
            }
        });
        let b = LvmBackend::new(
            LvmConfig {
                vg: "vg0".into(),
                thin_pool: Some("tp".into()),
                driver_loaded: false,
            },
            runner.clone(),
        )
        .expect("backend");
        let image = ImageInfo {
            name: "base".into(),
            path: "/pool/images/base.qcow2".into(),
            format: VolumeFormat::Qcow2,
            virtual_size: 1 << 30,
            actual_size: 1 << 20,
            sha256: None,
        };
        let err = b
            .clone_from_image(&image, "v", Some(1 << 20))
            .expect_err("smaller than the image");
        assert!(matches!(err, StorageError::ShrinkRefused { .. }), "{err}");

        let v = b.clone_from_image(&image, "v", None).expect("clone");
        assert_eq!(v.backing, None);
        let c = calls(&runner);
        assert!(
            c.iter()
                .all(|a| a.starts_with("qemu-img") || a.contains(" --driverloaded n "))
        );
        assert!(
            c.contains(
                &"qemu-img convert -f qcow2 -O raw -n /pool/images/base.qcow2 /dev/vg0/kcore-v"
                    .to_string()
            ),
            "{c:?}"
        );

        b.delete("v").expect("delete");
        let err = b
            .clone_from_image(&image, "v", None)
            .expect_err("convert fails");
        assert!(err.to_string().contains("No space left"), "{err}");
        let c = calls(&runner);
        assert_eq!(
            c.last().map(String::as_str),
            Some("lvremove --driverloaded n -y vg0/kcore-v")
        );
    }

    #[test]
    fn lvm_names() {
        assert!(validate_lvm_name("volume group", "vg_0.a+b-c").is_ok());
        for bad in ["", ".", "..", "-vg", "a/b", "a b", "é"] {
            assert!(validate_lvm_name("volume group", bad).is_err(), "{bad}");
        }
    }
}

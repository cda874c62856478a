//! The few `qemu-img` invocations kcore needs, and its `info --output=json` report.

use std::path::Path;

use serde::Deserialize;

use crate::runner::Runner;
use crate::{StorageError, VolumeFormat};

/// The part of `qemu-img info --output=json` kcore reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ImgInfo {
    pub format: String,
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    #[serde(rename = "actual-size", default)]
    pub actual_size: u64,
    #[serde(rename = "backing-filename")]
    pub backing_filename: Option<String>,
    #[serde(rename = "full-backing-filename")]
    pub full_backing_filename: Option<String>,
    #[serde(rename = "format-specific")]
    pub format_specific: Option<FormatSpecific>,
}

/// `format-specific` of a qcow2: only the external data file matters to kcore.
#[derive(Debug, Clone, Deserialize)]
pub struct FormatSpecific {
    pub data: Option<FormatSpecificData>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FormatSpecificData {
    #[serde(rename = "data-file")]
    pub data_file: Option<String>,
}

impl ImgInfo {
    /// The external data file of a qcow2, if it has one.
    pub fn data_file(&self) -> Option<&str> {
        self.format_specific
            .as_ref()
            .and_then(|f| f.data.as_ref())
            .and_then(|d| d.data_file.as_deref())
    }
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `qemu-img info --output=json`. With a format, no probing happens (a raw volume whose
/// guest wrote a qcow2 header stays raw); `-U` lets it read an image a QEMU has open.
pub fn info(
    runner: &dyn Runner,
    path: &Path,
    format: Option<VolumeFormat>,
) -> Result<ImgInfo, StorageError> {
    let mut argv = vec!["qemu-img".to_string(), "info".into(), "-U".into()];
    if let Some(f) = format {
        argv.extend(["-f".to_string(), f.as_str().to_string()]);
    }
    argv.extend(["--output=json".to_string(), path_arg(path)]);
    let out = runner.run(&argv)?;
    serde_json::from_slice(&out.stdout).map_err(|e| StorageError::Parse {
        what: format!("qemu-img info {}", path.display()),
        reason: e.to_string(),
    })
}

/// `qemu-img create -f FMT PATH SIZE`.
pub fn create(
    runner: &dyn Runner,
    path: &Path,
    format: VolumeFormat,
    size_bytes: u64,
) -> Result<(), StorageError> {
    runner.run(&[
        "qemu-img".to_string(),
        "create".into(),
        "-q".into(),
        "-f".into(),
        format.as_str().into(),
        path_arg(path),
        size_bytes.to_string(),
    ])?;
    Ok(())
}

/// `qemu-img resize -f FMT PATH SIZE` (grow only: kcore never passes `--shrink`).
pub fn resize(
    runner: &dyn Runner,
    path: &Path,
    format: VolumeFormat,
    size_bytes: u64,
) -> Result<(), StorageError> {
    runner.run(&[
        "qemu-img".to_string(),
        "resize".into(),
        "-q".into(),
        "-f".into(),
        format.as_str().into(),
        path_arg(path),
        size_bytes.to_string(),
    ])?;
    Ok(())
}

/// `qemu-img convert -f FMT -O raw -n SRC DEST`: write an image into an existing block
/// device (`-n`: never create the target, so a missing device node is an error instead
/// of a regular file appearing under /dev).
pub fn convert_into_device(
    runner: &dyn Runner,
    src: &Path,
    src_format: VolumeFormat,
    dest: &Path,
) -> Result<(), StorageError> {
    runner.run(&[
        "qemu-img".to_string(),
        "convert".into(),
        "-f".into(),
        src_format.as_str().into(),
        "-O".into(),
        "raw".into(),
        "-n".into(),
        path_arg(src),
        path_arg(dest),
    ])?;
    Ok(())
}

/// `qemu-img convert -U -f FMT -O qcow2 SRC DEST`: a standalone qcow2 copy of a disk (its
/// backing chain read through and flattened into it); `-U` reads a disk a paused QEMU still
/// has open (the caller makes sure nothing writes it meanwhile).
pub fn flatten_to_qcow2(
    runner: &dyn Runner,
    src: &Path,
    src_format: VolumeFormat,
    dest: &Path,
) -> Result<(), StorageError> {
    runner.run(&[
        "qemu-img".to_string(),
        "convert".into(),
        "-U".into(),
        "-f".into(),
        src_format.as_str().into(),
        "-O".into(),
        "qcow2".into(),
        path_arg(src),
        path_arg(dest),
    ])?;
    Ok(())
}

//! A VM's cloud-init NoCloud seed: `<data-dir>/vms/<id>/cidata.img`, a raw FAT image whose
//! volume label is `cidata`, holding `user-data`, `meta-data` (with the VM's id and name
//! when not given: [`CloudInit::seed_meta_data`]) and `network-config` when given.
//!
//! The image is made in memory with the `fatfs` crate (no mkfs, no loop device, no mount)
//! and written whole or not at all ([`crate::atomic_file`]), root's and 0600 like the VM's
//! other files: QEMU gets it read-only as a descriptor the node opened
//! (`kcore_vmm::spec::VmSpec::seed`), and the guest sees a read-only virtio disk. A running
//! QEMU keeps the image it was started with when the file is replaced; the next start opens
//! the new one. Nothing in it depends on the clock: the same data makes the same bytes.

use std::io::{Cursor, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fatfs::{FileSystem, FormatVolumeOptions, FsOptions};

use crate::error::{ApiError, ApiResult};
use crate::model::CloudInit;

/// The seed's file name in the VM's directory.
pub const FILE: &str = "cidata.img";
/// The FAT volume label cloud-init's NoCloud looks for (it takes `cidata` or `CIDATA`;
/// `cloud-localds` writes it lowercase, as here).
pub const LABEL: &[u8; 11] = b"cidata     ";
/// Room for the filesystem beside the files (FATs, directory, a cluster's slack a file).
const OVERHEAD: usize = 256 * 1024;
/// The smallest image.
const MIN_BYTES: usize = 1024 * 1024;

/// The files' time: 1980-01-01 00:00, the first a FAT date can say (a fixed one, so the
/// image depends on its data alone).
#[derive(Debug)]
struct Epoch;

const EPOCH: Epoch = Epoch;

impl fatfs::TimeProvider for Epoch {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

fn io(what: &str, e: std::io::Error) -> ApiError {
    ApiError::Internal(format!("cloud-init seed: {what}: {e}"))
}

/// The files a seed holds for VM `id` named `name`, as (name, bytes).
pub fn files(ci: &CloudInit, id: &str, name: &str) -> ApiResult<Vec<(&'static str, Vec<u8>)>> {
    let mut out = vec![
        ("user-data", ci.user_data.clone().into_bytes()),
        ("meta-data", ci.seed_meta_data(id, name)?.into_bytes()),
    ];
    if !ci.network_config.trim().is_empty() {
        out.push(("network-config", ci.network_config.clone().into_bytes()));
    }
    Ok(out)
}

/// The seed image of `ci` for VM `id` named `name`.
pub fn build(ci: &CloudInit, id: &str, name: &str) -> ApiResult<Vec<u8>> {
    let files = files(ci, id, name)?;
    let data: usize = files.iter().map(|(_, b)| b.len()).sum();
    let size = (data + OVERHEAD).div_ceil(64 * 1024) * 64 * 1024;
    let mut img = Cursor::new(vec![0u8; size.max(MIN_BYTES)]);
    // The VM's id names the volume too (blkid's UUID), so the bytes depend on nothing else.
    let volume_id = u32::from_str_radix(id.get(..8).unwrap_or(""), 16).unwrap_or(0x6b63_6f72);
    fatfs::format_volume(
        &mut img,
        FormatVolumeOptions::new()
            .volume_label(*LABEL)
            .volume_id(volume_id),
    )
    .map_err(|e| io("format", e))?;
    img.seek(SeekFrom::Start(0)).map_err(|e| io("seek", e))?;
    {
        let options = FsOptions::new().time_provider(&EPOCH);
        let fs = FileSystem::new(&mut img, options).map_err(|e| io("open", e))?;
        for (name, bytes) in &files {
            let mut f = fs.root_dir().create_file(name).map_err(|e| io(name, e))?;
            f.write_all(bytes).map_err(|e| io(name, e))?;
            f.flush().map_err(|e| io(name, e))?;
        }
        fs.unmount().map_err(|e| io("unmount", e))?;
    }
    Ok(img.into_inner())
}

/// Make (or make again) the seed of `ci` in the VM directory `dir`; returns its path.
pub fn write(dir: &Path, ci: &CloudInit, id: &str, name: &str) -> ApiResult<PathBuf> {
    let bytes = build(ci, id, name)?;
    std::fs::create_dir_all(dir).map_err(|e| io(&format!("create {}", dir.display()), e))?;
    let path = dir.join(FILE);
    crate::atomic_file::atomic_write(&path, &bytes, 0o600)
        .map_err(|e| io(&format!("write {}", path.display()), e))?;
    Ok(path)
}

/// Remove the seed in `dir`, if there is one.
pub fn remove(dir: &Path) -> ApiResult<()> {
    let path = dir.join(FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(&format!("remove {}", path.display()), e)),
    }
}

/// A seed's files, as (name, bytes).
#[cfg(test)]
pub type Files = Vec<(String, Vec<u8>)>;

/// The volume label and the files of a seed image (read back with the crate that made it).
#[cfg(test)]
pub fn read(image: &[u8]) -> std::io::Result<(String, Files)> {
    use std::io::Read;
    let fs = FileSystem::new(Cursor::new(image.to_vec()), FsOptions::new())?;
    let label = fs.volume_label();
    let mut files = Vec::new();
    for entry in fs.root_dir().iter() {
        let entry = entry?;
        if entry.is_file() {
            let mut data = Vec::new();
            entry.to_file().read_to_end(&mut data)?;
            files.push((entry.file_name(), data));
        }
    }
    Ok((label, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b1e3c9e-5a8e-4c2e-9f59-6a4f1d2b7c10";

    fn ci(user: &str, meta: &str, net: &str) -> CloudInit {
        CloudInit {
            user_data: user.into(),
            meta_data: meta.into(),
            network_config: net.into(),
        }
    }

    fn text(files: &[(String, Vec<u8>)], name: &str) -> Option<String> {
        files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
    }

    #[test]
    fn a_seed_reads_back_with_its_label_and_files() {
        let user = "#cloud-config\nhostname: web\nssh_authorized_keys:\n  - ssh-ed25519 AAAA x\n";
        let img = build(&ci(user, "", ""), ID, "web").expect("build");
        assert_eq!(img.len(), MIN_BYTES);
        let (label, files) = read(&img).expect("read");
        assert_eq!(label, "cidata");
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["user-data", "meta-data"], "no network-config given");
        assert_eq!(text(&files, "user-data").as_deref(), Some(user));
        assert_eq!(
            text(&files, "meta-data").as_deref(),
            Some(format!("instance-id: {ID}\nlocal-hostname: web\n").as_str())
        );
        // The same data makes the same bytes (no clock in it).
        assert_eq!(build(&ci(user, "", ""), ID, "web").expect("again"), img);
    }

    #[test]
    fn given_files_are_kept_and_big_ones_fit() {
        let net = "version: 2\nethernets:\n  eth0:\n    dhcp4: true\n";
        let meta = &format!(
            "instance-id: mine\nlocal-hostname: db\npad: {}\n",
            "y".repeat(400 * 1024)
        );
        let user = format!(
            "#!/bin/sh\n# {}\n",
            "x".repeat(crate::model::cloud_init::MAX_FILE_BYTES - 20)
        );
        let img = build(&ci(&user, meta, net), ID, "web").expect("build");
        assert!(img.len() > MIN_BYTES, "{}", img.len());
        let (_, files) = read(&img).expect("read");
        assert_eq!(text(&files, "user-data"), Some(user));
        assert_eq!(text(&files, "meta-data").as_deref(), Some(meta.as_str()));
        assert_eq!(text(&files, "network-config").as_deref(), Some(net));
    }

    #[test]
    fn written_root_only_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let vm = dir.path().join(ID);
        let path = write(&vm, &ci("#!/bin/sh\n", "", ""), ID, "web").expect("write");
        assert_eq!(path, vm.join(FILE));
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (_, files) = read(&std::fs::read(&path).expect("read")).expect("fat");
        assert_eq!(text(&files, "user-data").as_deref(), Some("#!/bin/sh\n"));
        // Made again with new data: the new files, nothing of the old.
        write(&vm, &ci("#cloud-config\n", "", "version: 1\n"), ID, "web").expect("again");
        let (_, files) = read(&std::fs::read(&path).expect("read")).expect("fat");
        assert_eq!(
            text(&files, "user-data").as_deref(),
            Some("#cloud-config\n")
        );
        assert_eq!(
            text(&files, "network-config").as_deref(),
            Some("version: 1\n")
        );
        remove(&vm).expect("remove");
        assert!(!path.exists());
        remove(&vm).expect("removing twice is fine");
    }
}

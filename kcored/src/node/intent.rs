//! A create's intent: before the first volume of a new VM is made, the node records what it
//! is about to make in `<data-dir>/vms/<id>/define.json` (written atomically). The VM's
//! `spec.json` is written when everything is made, then the intent is removed. A daemon
//! killed in between finds the intent at its next start and undoes the create: it deletes
//! the new volumes the intent names (their names were checked free before the intent was
//! written, so whatever exists under them is this create's), and the VM's directory. So a
//! VM is wholly there or wholly gone, whenever the daemon dies.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::storage::PlannedDisk;

/// The intent's file name in the VM's spec directory.
pub const FILE: &str = "define.json";

/// What a create is about to make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub name: String,
    pub disks: Vec<PlannedDisk>,
}

/// Record `intent` in `dir` (created), atomically.
pub fn write(dir: &Path, intent: &Intent) -> std::io::Result<()> {
    let data = serde_json::to_vec_pretty(intent).map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    crate::atomic_file::atomic_write(&dir.join(FILE), &data, 0o600)
}

/// The create finished: forget its intent.
pub fn remove(dir: &Path) {
    match std::fs::remove_file(dir.join(FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove intent"),
    }
}

/// What a directory under `<data-dir>/vms/` holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A defined VM (spec.json); a leftover intent beside it is stale.
    Defined,
    /// A create cut short: its intent, if it could be read.
    Unfinished(Option<Intent>),
}

/// Classify one VM directory.
pub fn inspect(dir: &Path) -> Found {
    if dir.join("spec.json").exists() {
        return Found::Defined;
    }
    let intent =
        std::fs::read(dir.join(FILE))
            .ok()
            .and_then(|b| match serde_json::from_slice(&b) {
                Ok(i) => Some(i),
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "unreadable intent");
                    None
                }
            });
    Found::Unfinished(intent)
}

/// The directories under `vms_dir`.
pub fn vm_dirs(vms_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(vms_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::storage::PlannedKind;
    use super::*;

    #[test]
    fn an_intent_without_a_spec_is_unfinished() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vm = dir.path().join("0b1e3c9e-5a8e-4c2e-9f59-6a4f1d2b7c10");
        let intent = Intent {
            name: "web".into(),
            disks: vec![PlannedDisk {
                pool: "default".into(),
                volume: "web-disk1".into(),
                size_bytes: 1 << 30,
                kind: PlannedKind::Empty,
                boot: false,
            }],
        };
        write(&vm, &intent).expect("write");
        assert_eq!(vm_dirs(dir.path()), vec![vm.clone()]);
        assert_eq!(inspect(&vm), Found::Unfinished(Some(intent)));
        std::fs::write(vm.join("spec.json"), b"{}").expect("spec");
        assert_eq!(inspect(&vm), Found::Defined);
        remove(&vm);
        assert!(!vm.join(FILE).exists());
        std::fs::remove_file(vm.join("spec.json")).expect("rm");
        assert_eq!(inspect(&vm), Found::Unfinished(None));
    }
}

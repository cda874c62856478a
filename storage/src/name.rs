//! The naming rule for pools, volumes and images, `[a-z0-9][a-z0-9._-]{0,62}`, as the
//! shared types ([`kcore_types::PoolName`], [`VolumeName`], [`ImageName`]) define it.
//!
//! A valid name has no `/`, cannot be `.` or `..`, and never starts with `.` (so it can't
//! collide with kcore's own temporary files), which makes it safe as one path component.

use kcore_types::{ImageName, PoolName, TypeError, VolumeName};

use crate::StorageError;

/// Check `name` against the naming rule of `kind` ("volume", "image", "pool"; the error
/// message names it).
pub fn validate(kind: &'static str, name: &str) -> Result<(), StorageError> {
    let checked = match kind {
        "pool" => PoolName::parse(name).map(drop),
        "image" => ImageName::parse(name).map(drop),
        _ => VolumeName::parse(name).map(drop),
    };
    checked.map_err(|e| StorageError::InvalidName {
        kind,
        name: name.to_string(),
        reason: match e {
            TypeError::InvalidName { reason, .. } => reason,
            _ => "not a valid name",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_good_names() {
        for n in ["a", "0", "debian-12.qcow2", "vm_1-root", &"a".repeat(63)] {
            assert!(validate("volume", n).is_ok(), "{n}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        for n in [
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "a/b",
            ".hidden",
            "-x",
            "_x",
            "Abc",
            "a b",
            "a\0",
            "é",
            &"a".repeat(64),
        ] {
            let err = validate("volume", n).expect_err(n);
            assert!(err.to_string().contains("invalid volume name"), "{err}");
        }
    }
}

//! The naming rule for pools, volumes and images: `[a-z0-9][a-z0-9._-]{0,62}`.
//!
//! A valid name has no `/`, cannot be `.` or `..`, and never starts with `.` (so it can't
//! collide with kcore's own temporary files), which makes it safe as one path component.

use crate::StorageError;

/// The longest valid name.
pub const MAX_NAME_LEN: usize = 63;

/// Check `name` against the naming rule; `kind` ("volume", "image", "pool") is for the
/// error message.
pub fn validate(kind: &'static str, name: &str) -> Result<(), StorageError> {
    let fail = |reason| {
        Err(StorageError::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        })
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return fail("empty"),
        Some(c) if !(c.is_ascii_lowercase() || c.is_ascii_digit()) => {
            return fail("must start with a lowercase letter or a digit");
        }
        Some(_) => {}
    }
    if name.len() > MAX_NAME_LEN {
        return fail("longer than 63 characters");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)) {
        return fail("only a-z, 0-9, '.', '_' and '-' are allowed");
    }
    Ok(())
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

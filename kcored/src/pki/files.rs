//! The PKI's files on disk: written atomically with their modes, pairs checked for a
//! missing half, replaced on renewal keeping the previous pair, and repaired after a
//! renewal cut short.

use std::path::Path;

use super::{Pki, PkiError, pair_matches};
use crate::atomic_file::{atomic_write, atomic_write_new};

/// Write a new file with `mode`, atomically, never replacing one.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    atomic_write_new(path, contents, mode).map_err(|e| PkiError::io("create", path, e))
}

/// Whether both files of a pair exist; an error if only one does. Not `strict`, a
/// certificate without its key counts as present (the CA key may be kept offline, as long
/// as nothing needs signing).
pub(crate) fn pair_present(
    pki: &Pki,
    cert: &str,
    key: &str,
    strict: bool,
) -> Result<bool, PkiError> {
    let (c, k) = (pki.path(cert), pki.path(key));
    match (c.exists(), k.exists()) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (true, false) if !strict => Ok(true),
        (has_cert, _) => {
            let (have, missing) = if has_cert { (c, k) } else { (k, c) };
            Err(PkiError::HalfPair { have, missing })
        }
    }
}

/// Replace a certificate and key pair (a renewal), keeping the old pair as `*.prev`: a
/// crash between the two renames leaves a mismatched pair that [`repair_pair`] undoes.
pub fn replace_pair(
    dir: &Path,
    cert_file: &str,
    key_file: &str,
    cert: &[u8],
    key: &[u8],
) -> Result<(), PkiError> {
    for f in [cert_file, key_file] {
        let old = std::fs::read(dir.join(f)).map_err(|e| PkiError::io("read", f, e))?;
        let mode = if f == key_file { 0o600 } else { 0o644 };
        replace_file(&dir.join(format!("{f}.prev")), &old, mode)?;
    }
    replace_file(&dir.join(key_file), key, 0o600)?;
    replace_file(&dir.join(cert_file), cert, 0o644)
}

/// If the pair in `dir` does not match (a renewal cut short) and the previous pair does,
/// put the previous pair back. True when it did.
pub fn repair_pair(dir: &Path, cert_file: &str, key_file: &str) -> Result<bool, PkiError> {
    let read = |f: &str| std::fs::read(dir.join(f)).ok();
    let (Some(cert), Some(key)) = (read(cert_file), read(key_file)) else {
        return Ok(false);
    };
    if pair_matches(&cert, &key) {
        return Ok(false);
    }
    let prev = (
        read(&format!("{cert_file}.prev")),
        read(&format!("{key_file}.prev")),
    );
    let mismatch = || PkiError::Mismatch {
        cert: cert_file.to_string(),
        key: key_file.to_string(),
        dir: dir.to_path_buf(),
    };
    let (Some(pc), Some(pk)) = prev else {
        return Err(mismatch());
    };
    // The half that was replaced may be the new key with the old certificate, or the
    // other way round: the previous pair is whole.
    if !pair_matches(&pc, &pk) {
        return Err(mismatch());
    }
    replace_file(&dir.join(key_file), &pk, 0o600)?;
    replace_file(&dir.join(cert_file), &pc, 0o644)?;
    Ok(true)
}

/// Write a certificate and its key in place of older ones (each atomically).
pub(crate) fn store_pair(
    pki: &Pki,
    cert_file: &str,
    key_file: &str,
    cert: &str,
    key: &str,
) -> Result<(), PkiError> {
    replace_file(&pki.path(key_file), key.as_bytes(), 0o600)?;
    replace_file(&pki.path(cert_file), cert.as_bytes(), 0o644)
}

/// Write `path` with `mode`, atomically, replacing the file.
pub fn replace_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    atomic_write(path, contents, mode).map_err(|e| PkiError::io("write", path, e))
}

//! The one error type of the `storage` crate.

use std::path::PathBuf;

/// Everything that can go wrong while managing pools, volumes and images.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A volume, image or pool name does not follow the naming rule.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: &'static str,
    },

    /// A pool spec (`NAME=dir:PATH`, `NAME=lvm:VG[/THINPOOL]`) could not be parsed.
    #[error("invalid pool spec {spec:?}: {reason}")]
    InvalidPoolSpec { spec: String, reason: String },

    /// A size is zero, above the hard cap, or otherwise not acceptable.
    #[error("invalid size: {0}")]
    InvalidSize(String),

    /// An expected SHA-256 is not 64 hexadecimal digits.
    #[error("invalid sha256 {0:?}: expected 64 hexadecimal digits")]
    InvalidSha256(String),

    /// A path computed from a name would leave the pool directory (symlink pointing out).
    #[error("path {path} escapes the pool directory {root}")]
    PathEscape { path: PathBuf, root: PathBuf },

    /// No volume or image with that name.
    #[error("no such {kind} {name}")]
    NotFound { kind: &'static str, name: String },

    /// A volume or image with that name already exists.
    #[error("{kind} {name} already exists")]
    AlreadyExists { kind: &'static str, name: String },

    /// An LV exists under the name kcore would use, but it does not carry kcore's tag.
    #[error("logical volume {vg}/{lv} is not tagged {tag}: kcore does not touch it")]
    NotManaged { vg: String, lv: String, tag: String },

    /// A resize would shrink the volume (or the requested size is below the image's).
    #[error("refusing to shrink {name} from {current} to {requested} bytes: volumes can only grow")]
    ShrinkRefused {
        name: String,
        current: u64,
        requested: u64,
    },

    /// Not enough free space in the pool for a fully allocated volume.
    #[error("not enough space in the pool: {requested} bytes requested, {available} free")]
    InsufficientSpace { requested: u64, available: u64 },

    /// The image still backs volumes (qcow2 overlays): deleting it would break them.
    #[error("image {image} is in use by volume(s): {}", volumes.join(", "))]
    ImageInUse { image: String, volumes: Vec<String> },

    /// The format is not one this pool or kcore supports.
    #[error("unsupported format {format}: {reason}")]
    UnsupportedFormat { format: String, reason: String },

    /// An imported file is refused as an image (not a disk image, has a backing file, ...).
    #[error("image {name} refused: {reason}")]
    ImageRefused { name: String, reason: String },

    /// The downloaded or copied data does not have the expected SHA-256.
    #[error("sha256 mismatch for {name}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        name: String,
        expected: String,
        actual: String,
    },

    /// An import source is not a regular file (a FIFO would block the import forever).
    #[error("{path} is a {kind}, not a regular file")]
    NotRegularFile { path: PathBuf, kind: &'static str },

    /// An HTTP download failed (status, connection, truncated body).
    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },

    /// An external command ran and failed; `stderr` is the tool's own message.
    #[error("command `{}` failed ({status}): {}", display_argv(argv), stderr.trim())]
    CommandFailed {
        argv: Vec<String>,
        status: String,
        stderr: String,
    },

    /// An external command could not be started (not installed?).
    #[error("cannot run {program} (is it installed?)")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// A tool's output could not be understood.
    #[error("cannot parse the output of {what}: {reason}")]
    Parse { what: String, reason: String },

    /// An I/O operation on a named path failed.
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// Wrap an `std::io::Error` with the operation and the path it was about.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// An argv as a human would type it: arguments with spaces or quotes are single-quoted.
/// For display only: commands are never run through a shell.
pub fn display_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_failed_shows_command_and_stderr() {
        let e = StorageError::CommandFailed {
            argv: vec!["lvcreate".into(), "-n".into(), "a b".into()],
            status: "exit code 5".into(),
            stderr: "  Volume group \"vg\" has insufficient free space.\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "command `lvcreate -n 'a b'` failed (exit code 5): \
             Volume group \"vg\" has insufficient free space."
        );
    }
}

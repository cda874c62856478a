//! Where an image import reads from: a local file, a file the caller opened already (the
//! daemon opens it with the requester's rights), or an http(s) URL (blocking `ureq` client
//! with rustls; connect and per-read timeouts so a stalled server cannot hang an import
//! forever).
//!
//! A file source must be a regular file: a FIFO would block the import forever, a device
//! or a directory is no image. A path is opened non-blocking and the opened descriptor is
//! checked, so the check and the read are about the same file.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::Duration;

use crate::StorageError;

/// How long to wait for a connection, and for each read of the body.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// An import source.
#[derive(Debug)]
pub enum Source {
    /// A path, opened here.
    File(PathBuf),
    /// A file already open for reading, and the path it was opened as (for messages).
    Opened {
        path: PathBuf,
        file: File,
    },
    Http(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) | Source::Opened { path, .. } => path.display().fmt(f),
            Source::Http(url) => f.write_str(url),
        }
    }
}

/// What kind of non-regular file `t` is, for a message (None: a regular file).
pub fn special_kind(t: std::fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("directory")
    } else if t.is_fifo() {
        Some("FIFO")
    } else if t.is_char_device() {
        Some("character device")
    } else if t.is_block_device() {
        Some("block device")
    } else if t.is_socket() {
        Some("socket")
    } else {
        Some("special file")
    }
}

/// The size of an open regular file; anything else is refused.
fn regular_len(path: &std::path::Path, file: &File) -> Result<u64, StorageError> {
    let meta = file
        .metadata()
        .map_err(|e| StorageError::io("stat", path, e))?;
    match special_kind(meta.file_type()) {
        None => Ok(meta.len()),
        Some(kind) => Err(StorageError::NotRegularFile {
            path: path.to_path_buf(),
            kind,
        }),
    }
}

impl Source {
    /// `http://...` and `https://...` are URLs; anything else is a local path.
    pub fn parse(s: &str) -> Source {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            Source::Http(s.to_string())
        } else {
            Source::File(PathBuf::from(s))
        }
    }

    /// Open the source: a reader and the total size if known.
    pub fn open(&self) -> Result<(Box<dyn Read + Send>, Option<u64>), StorageError> {
        match self {
            Source::File(path) => {
                // Non-blocking: opening a FIFO must not wait for a writer.
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
                    .open(path)
                    .map_err(|e| StorageError::io("open", path, e))?;
                let len = regular_len(path, &file)?;
                Ok((Box::new(file), Some(len)))
            }
            Source::Opened { path, file } => {
                let len = regular_len(path, file)?;
                let file = file
                    .try_clone()
                    .map_err(|e| StorageError::io("dup", path, e))?;
                Ok((Box::new(file), Some(len)))
            }
            Source::Http(url) => {
                let agent = ureq::AgentBuilder::new()
                    .timeout_connect(CONNECT_TIMEOUT)
                    .timeout_read(READ_TIMEOUT)
                    .user_agent(concat!("kcore/", env!("CARGO_PKG_VERSION")))
                    .build();
                let fail = |reason: String| StorageError::Download {
                    url: url.clone(),
                    reason,
                };
                let resp = agent.get(url).call().map_err(|e| match e {
                    ureq::Error::Status(code, resp) => {
                        fail(format!("HTTP {code} {}", resp.status_text()))
                    }
                    ureq::Error::Transport(t) => fail(t.to_string()),
                })?;
                let total = resp
                    .header("Content-Length")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                Ok((Box::new(resp.into_reader()), total))
            }
        }
    }

    /// The error for a failed read from this source.
    pub fn read_error(&self, e: std::io::Error) -> StorageError {
        match self {
            Source::File(path) | Source::Opened { path, .. } => StorageError::io("read", path, e),
            Source::Http(_) => self.download_error(e.to_string()),
        }
    }

    /// A download error for this source (file sources report it as an I/O error).
    pub fn download_error(&self, reason: String) -> StorageError {
        match self {
            Source::File(path) | Source::Opened { path, .. } => StorageError::io(
                "read",
                path,
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, reason),
            ),
            Source::Http(url) => StorageError::Download {
                url: url.clone(),
                reason,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn parse_sources() {
        assert!(
            matches!(Source::parse("https://example.org/x.qcow2"), Source::Http(u) if u == "https://example.org/x.qcow2")
        );
        assert!(matches!(Source::parse("HTTP://h/x"), Source::Http(u) if u == "HTTP://h/x"));
        assert!(
            matches!(Source::parse("/tmp/x.img"), Source::File(p) if p == Path::new("/tmp/x.img"))
        );
    }

    #[test]
    fn fifos_devices_and_directories_are_refused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let t = std::time::Instant::now();
        for (path, kind) in [
            (fifo.clone(), "FIFO"),
            (PathBuf::from("/dev/null"), "character device"),
            (dir.path().to_path_buf(), "directory"),
        ] {
            match Source::File(path.clone()).open() {
                Err(StorageError::NotRegularFile { path: p, kind: k }) => {
                    assert_eq!((p, k), (path, kind));
                }
                Err(e) => panic!("{}: {e}", path.display()),
                Ok(_) => panic!("{} was opened", path.display()),
            }
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // A FIFO the caller opened (non-blocking) is refused too.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo)
            .expect("open fifo");
        let src = Source::Opened { path: fifo, file };
        assert!(matches!(
            src.open(),
            Err(StorageError::NotRegularFile { kind: "FIFO", .. })
        ));
    }
}

//! Where an image import reads from: a local file or an http(s) URL (blocking `ureq`
//! client with rustls; connect and per-read timeouts so a stalled server cannot hang an
//! import forever).

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use crate::StorageError;

/// How long to wait for a connection, and for each read of the body.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// An import source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Http(String),
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
                let file =
                    std::fs::File::open(path).map_err(|e| StorageError::io("open", path, e))?;
                let meta = file
                    .metadata()
                    .map_err(|e| StorageError::io("stat", path, e))?;
                if !meta.is_file() {
                    return Err(StorageError::io(
                        "import",
                        path,
                        std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
                    ));
                }
                Ok((Box::new(file), Some(meta.len())))
            }
            Source::Http(url) => {
                let agent = ureq::AgentBuilder::new()
                    .timeout_connect(CONNECT_TIMEOUT)
                    .timeout_read(READ_TIMEOUT)
                    .user_agent(concat!("kcore/", env!("CARGO_PKG_VERSION")))
                    .build();
                let resp = agent.get(url).call().map_err(|e| match e {
                    ureq::Error::Status(code, resp) => {
                        self.download_error(format!("HTTP {code} {}", resp.status_text()))
                    }
                    ureq::Error::Transport(t) => self.download_error(t.to_string()),
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
            Source::File(path) => StorageError::io("read", path, e),
            Source::Http(_) => self.download_error(e.to_string()),
        }
    }

    /// A download error for this source (file sources report it as an I/O error).
    pub fn download_error(&self, reason: String) -> StorageError {
        match self {
            Source::File(path) => StorageError::io(
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
    use super::*;

    #[test]
    fn parse_sources() {
        assert_eq!(
            Source::parse("https://example.org/x.qcow2"),
            Source::Http("https://example.org/x.qcow2".into())
        );
        assert_eq!(
            Source::parse("HTTP://h/x"),
            Source::Http("HTTP://h/x".into())
        );
        assert_eq!(
            Source::parse("/tmp/x.img"),
            Source::File(PathBuf::from("/tmp/x.img"))
        );
    }
}

//! The per-VM QMP transcript: every exchange appended to a file, one line each.
//!
//! ```text
//! 2026-11-28T12:00:00.123Z <- {"QMP": {"version": ...}}
//! 2026-11-28T12:00:00.124Z -> {"execute":"qmp_capabilities","id":0}
//! 2026-11-28T12:00:00.124Z <- {"return": {}, "id": 0}
//! 2026-11-28T12:00:09.870Z -- connection closed
//! ```
//!
//! Lines are written straight to an `O_APPEND` file behind a mutex (one small `write` per
//! line), so a line is in the file before the command that caused it returns. A write error
//! is logged once and disables the transcript; it never fails a command.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::VmmError;

/// Which way a transcript line went.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    /// Sent to QEMU.
    Sent,
    /// Received from QEMU.
    Received,
    /// A note by the client (connection closed, ...).
    Note,
}

impl Direction {
    fn arrow(self) -> &'static str {
        match self {
            Direction::Sent => "->",
            Direction::Received => "<-",
            Direction::Note => "--",
        }
    }
}

/// An open transcript file.
pub(crate) struct Transcript {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl Transcript {
    /// Open (create or append to) the transcript at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, VmmError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| VmmError::io("open QMP transcript", path, e))?;
        Ok(Transcript {
            path: path.to_path_buf(),
            file: Mutex::new(Some(file)),
        })
    }

    /// Append one line: `<UTC timestamp> <arrow> <text>`.
    pub(crate) fn record(&self, direction: Direction, text: &str) {
        let line = format!(
            "{} {} {}\n",
            format_utc(SystemTime::now()),
            direction.arrow(),
            text
        );
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = file.as_mut()
            && let Err(error) = f.write_all(line.as_bytes())
        {
            tracing::warn!(path = %self.path.display(), %error, "QMP transcript write failed; transcript disabled");
            *file = None;
        }
    }
}

/// Format a time as RFC 3339 UTC with milliseconds, e.g. `2026-11-28T12:00:00.123Z`.
pub(crate) fn format_utc(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let in_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc_timestamps() {
        let at = |secs: u64, millis: u64| {
            format_utc(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(1_795_867_200, 123), "2026-11-28T12:00:00.123Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }
}

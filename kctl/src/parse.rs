//! Parsers of kctl's argument values (`--disk`, `--sha256`, `--memory`): a bad value is a
//! usage error before anything is sent.

use kcore_proto::v1::DiskRequest;

/// Parses `--disk POOL:SIZE_GB` (`fast:20`, a new volume) or `POOL:VOLUME`
/// (`default:db-data`, an existing one). A size of 0 is the server's to reject.
pub fn parse_disk(s: &str) -> Result<DiskRequest, String> {
    let Some((pool, what)) = s.split_once(':') else {
        return Err(format!(
            "{s:?} is not POOL:SIZE_GB or POOL:VOLUME (e.g. default:20 for a new 20 GiB disk \
             in pool default)"
        ));
    };
    if pool.is_empty() {
        return Err(format!("{s:?} names no pool (expected POOL:SIZE_GB)"));
    }
    let what = what.trim();
    if what.is_empty() {
        return Err(format!("{s:?} names no size or volume"));
    }
    if what.bytes().all(|b| b.is_ascii_digit()) {
        let size_gb = what
            .parse::<u32>()
            .map_err(|_| format!("{s:?}: size {what:?} is too large"))?;
        return Ok(DiskRequest {
            pool: pool.to_string(),
            size_gb,
            volume: String::new(),
        });
    }
    // `1.5` is a size someone got wrong, not a volume's name.
    let sizeish = what.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if sizeish || kcore_types::VolumeName::parse(what).is_err() {
        return Err(format!(
            "{s:?}: {what:?} is neither a size (a whole number of GiB, e.g. {pool}:20) nor a \
             volume name"
        ));
    }
    Ok(DiskRequest {
        pool: pool.to_string(),
        size_gb: 0,
        volume: what.to_string(),
    })
}

/// Parses `--sha256`: 64 hex digits, lowercased.
pub fn parse_sha256(s: &str) -> Result<String, String> {
    let t = s.trim();
    if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(format!("{s:?} is not a sha256 (64 hex digits)"))
    }
}

/// Parses a memory size in MiB: `512`, `512M`, `512MiB`, `2G`, `2GiB`.
pub fn parse_mib(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size in MiB (e.g. 512, 512M, 2G)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mi" | "mb" | "mib" => 1,
        "g" | "gi" | "gb" | "gib" => 1024,
        other => return Err(format!("unknown size unit {other:?} (use M or G)")),
    };
    let mib = value
        .checked_mul(factor)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("{s:?} is too large"))?;
    // Bounds (0, more than the host) are the server's to check, so every client gets the
    // same answer.
    Ok(mib)
}

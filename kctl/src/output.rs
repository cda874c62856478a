//! Output formats (`-o table|json|yaml`) and the small formatting helpers shared by the
//! commands: status names without their enum prefix, sizes, ages, milliseconds and plain,
//! `virsh list`-style tables.

use std::io::Write;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::ValueEnum;
use comfy_table::{CellAlignment, Table, presets};
use kcore_proto::v1::{Firmware, MachineType, NodeState, Profile, RestartPolicy, VmStatus};
use serde::Serialize;

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable columns.
    #[default]
    Table,
    /// The API objects as pretty-printed JSON (JSON Lines for streams).
    Json,
    /// The API objects as YAML (one document per item for streams).
    Yaml,
}

/// Prints `value` as pretty JSON or YAML. Table mode has no generic rendering; callers
/// handle it themselves, so here it falls back to JSON.
pub fn print_structured<T: Serialize>(format: Format, value: &T) -> Result<()> {
    let text = match format {
        Format::Yaml => to_yaml(value)?,
        Format::Json | Format::Table => {
            serde_json::to_string_pretty(value).context("encoding JSON")? + "\n"
        }
    };
    write_stdout(text.as_bytes())
}

/// One item of a stream: a single JSON line, or a YAML document starting with `---`.
pub fn print_stream_item<T: Serialize>(format: Format, value: &T) -> Result<()> {
    let text = match format {
        Format::Yaml => format!("---\n{}", to_yaml(value)?),
        Format::Json | Format::Table => {
            serde_json::to_string(value).context("encoding JSON")? + "\n"
        }
    };
    write_stdout(text.as_bytes())
}

fn to_yaml<T: Serialize>(value: &T) -> Result<String> {
    let mut text = serde_yaml::to_string(value).context("encoding YAML")?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Stdout was closed by the reader (`kctl events -f | head`): stop quietly, exit 0.
#[derive(Debug)]
pub struct BrokenPipe;

impl std::fmt::Display for BrokenPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout closed")
    }
}

impl std::error::Error for BrokenPipe {}

/// Writes bytes to stdout and flushes. A closed pipe gives [`BrokenPipe`].
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(BrokenPipe.into()),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// A borderless table with a header row, columns two spaces apart.
pub fn table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(headers.to_vec());
    let last = headers.len().saturating_sub(1);
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 2 }));
    }
    table
}

/// Right-aligns the given columns (numbers).
pub fn align_right(table: &mut Table, columns: &[usize]) {
    for &i in columns {
        if let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// Prints a table without trailing whitespace.
pub fn print_table(table: &Table) -> Result<()> {
    write_stdout(format!("{}\n", table.trim_fmt()).as_bytes())
}

/// Renders `key: value` lines with the values aligned, skipping empty values.
pub fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| k.len() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (key, value) in rows {
        if value.is_empty() {
            continue;
        }
        out.push_str(&format!("{:<width$} {value}\n", format!("{key}:")));
    }
    out
}

/// `VM_STATUS_RUNNING` → `RUNNING`.
pub fn vm_status(status: i32) -> String {
    match VmStatus::try_from(status) {
        Ok(s) => strip(s.as_str_name(), "VM_STATUS_"),
        Err(_) => format!("UNKNOWN({status})"),
    }
}

/// `NODE_STATE_NOT_READY` → `NOT_READY`.
pub fn node_state(state: i32) -> String {
    match NodeState::try_from(state) {
        Ok(s) => strip(s.as_str_name(), "NODE_STATE_"),
        Err(_) => format!("UNKNOWN({state})"),
    }
}

/// `MACHINE_TYPE_Q35` → `q35`; unspecified is the default, q35.
pub fn machine(machine: i32) -> String {
    match MachineType::try_from(machine) {
        Ok(MachineType::Unspecified) => "q35".to_string(),
        Ok(m) => strip(m.as_str_name(), "MACHINE_TYPE_").to_lowercase(),
        Err(_) => format!("unknown({machine})"),
    }
}

/// `RESTART_POLICY_ON_FAILURE` → `on-failure`; unspecified is the default, never.
pub fn restart_policy(policy: i32) -> String {
    match RestartPolicy::try_from(policy) {
        Ok(RestartPolicy::Unspecified) => "never".to_string(),
        Ok(p) => strip(p.as_str_name(), "RESTART_POLICY_")
            .to_lowercase()
            .replace('_', "-"),
        Err(_) => format!("unknown({policy})"),
    }
}

/// `FIRMWARE_UEFI` → `uefi`; unspecified is the default, bios.
pub fn firmware(firmware: i32) -> String {
    match Firmware::try_from(firmware) {
        Ok(Firmware::Unspecified) => "bios".to_string(),
        Ok(f) => strip(f.as_str_name(), "FIRMWARE_").to_lowercase(),
        Err(_) => format!("unknown({firmware})"),
    }
}

pub fn profile(profile: i32) -> String {
    match Profile::try_from(profile) {
        Ok(Profile::Unspecified) => "standard".to_string(),
        Ok(p) => strip(p.as_str_name(), "PROFILE_").to_lowercase(),
        Err(_) => format!("unknown({profile})"),
    }
}

fn strip(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_string()
}

/// A MiB count for people: `512 MiB`, `2 GiB`, `1.5 GiB`, `1 TiB`.
pub fn mib(mib: u32) -> String {
    let mib = u64::from(mib);
    if mib >= 1024 * 1024 {
        scaled(mib, 1024 * 1024, "TiB")
    } else if mib >= 1024 {
        scaled(mib, 1024, "GiB")
    } else {
        format!("{mib} MiB")
    }
}

/// A GiB count for people: `10 GiB`, `1.5 TiB`; `-` for 0 (no storage).
pub fn gib(gib: u32) -> String {
    let gib = u64::from(gib);
    match gib {
        0 => "-".to_string(),
        g if g >= 1024 => scaled(g, 1024, "TiB"),
        g => format!("{g} GiB"),
    }
}

/// A byte count for people, with one decimal past bytes: `512 B`, `1.5 KiB`, `2.0 GiB`,
/// `3.2 TiB` (TiB is the largest unit).
pub fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Precision loss is irrelevant at one decimal.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Move up while the value would print as 1024.0 or more (1023.96 KiB is 1.0 MiB).
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// How full a pool is: `37%`, `-` when its size is unknown.
pub fn used_percent(total: u64, free: u64) -> String {
    if total == 0 {
        return "-".to_string();
    }
    // Precision loss is irrelevant for a whole percentage.
    #[allow(clippy::cast_precision_loss)]
    let used = total.saturating_sub(free) as f64 * 100.0 / total as f64;
    format!("{used:.0}%")
}

/// The first 12 hex digits of a sha256, as `docker images` shows ids; `-` when empty.
pub fn short_sha(sha256: &str) -> String {
    match sha256.get(..12) {
        Some(short) => short.to_string(),
        None => or_dash(sha256),
    }
}

fn scaled(value: u64, unit: u64, name: &str) -> String {
    if value.checked_rem(unit) == Some(0) {
        format!("{} {name}", value / unit)
    } else {
        // Precision loss is irrelevant at these magnitudes.
        #[allow(clippy::cast_precision_loss)]
        let v = value as f64 / unit as f64;
        format!("{v:.1} {name}")
    }
}

/// How long ago an RFC 3339 timestamp was, in the style of `kubectl get`: `45s`, `12m`,
/// `5h`, `3d`. Unparseable or empty timestamps give `-`.
pub fn age(timestamp: &str, now: DateTime<Utc>) -> String {
    let Ok(then) = DateTime::parse_from_rfc3339(timestamp) else {
        return "-".to_string();
    };
    let secs = (now - then.with_timezone(&Utc)).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 120 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Milliseconds with one decimal: `812.4`.
pub fn ms(value: f64) -> String {
    format!("{value:.1}")
}

/// An RFC 3339 timestamp shortened for a table (`2025-01-02 03:04:05`), or as given when
/// it does not parse.
pub fn short_time(timestamp: &str) -> String {
    match DateTime::parse_from_rfc3339(timestamp) {
        Ok(t) => t
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) if timestamp.is_empty() => "-".to_string(),
        Err(_) => timestamp.to_string(),
    }
}

/// Like [`short_time`], with milliseconds: `2025-01-02 03:04:05.678`.
pub fn short_time_ms(timestamp: &str) -> String {
    match DateTime::parse_from_rfc3339(timestamp) {
        Ok(t) => t
            .with_timezone(&Utc)
            .format("%Y-%m-%d %H:%M:%S%.3f")
            .to_string(),
        Err(_) if timestamp.is_empty() => "-".to_string(),
        Err(_) => timestamp.to_string(),
    }
}

/// `-` for empty strings, so table cells are never blank.
pub fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(mib(0), "0 MiB");
        assert_eq!(mib(512), "512 MiB");
        assert_eq!(mib(1023), "1023 MiB");
        assert_eq!(mib(1024), "1 GiB");
        assert_eq!(mib(1536), "1.5 GiB");
        assert_eq!(mib(65536), "64 GiB");
        assert_eq!(mib(1024 * 1024), "1 TiB");
        assert_eq!(mib(u32::MAX), "4096.0 TiB");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(bytes(700 * 1024 * 1024), "700.0 MiB");
        assert_eq!(bytes(2 << 30), "2.0 GiB");
        assert_eq!(bytes(10 * (1 << 30) + (1 << 29)), "10.5 GiB");
        assert_eq!(bytes(3 << 40), "3.0 TiB");
        assert_eq!(bytes(5000 << 40), "5000.0 TiB");
        assert_eq!(bytes(u64::MAX), "16777216.0 TiB");
    }

    #[test]
    fn gib_sizes_and_usage() {
        assert_eq!(gib(0), "-");
        assert_eq!(gib(10), "10 GiB");
        assert_eq!(gib(1024), "1 TiB");
        assert_eq!(gib(1536), "1.5 TiB");
        assert_eq!(used_percent(0, 0), "-");
        assert_eq!(used_percent(100, 63), "37%");
        assert_eq!(used_percent(100, 100), "0%");
        assert_eq!(used_percent(100, 200), "0%");
        assert_eq!(used_percent(3, 0), "100%");
    }

    #[test]
    fn sha_prefix() {
        assert_eq!(short_sha("0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_sha("abc"), "abc");
        assert_eq!(short_sha(""), "-");
    }

    #[test]
    fn ages() {
        let now = DateTime::parse_from_rfc3339("2025-01-10T12:00:00.000Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid time");
        assert_eq!(age("2025-01-10T11:59:15.000Z", now), "45s");
        assert_eq!(age("2025-01-10T11:48:00.000Z", now), "12m");
        assert_eq!(age("2025-01-10T07:00:00.000Z", now), "5h");
        assert_eq!(age("2025-01-07T12:00:00.000Z", now), "3d");
        assert_eq!(age("2025-01-10T12:00:05.000Z", now), "0s");
        assert_eq!(age("", now), "-");
        assert_eq!(age("yesterday", now), "-");
    }

    #[test]
    fn enum_names() {
        assert_eq!(vm_status(VmStatus::Running as i32), "RUNNING");
        assert_eq!(vm_status(99), "UNKNOWN(99)");
        assert_eq!(node_state(NodeState::NotReady as i32), "NOT_READY");
        assert_eq!(machine(0), "q35");
        assert_eq!(machine(MachineType::Microvm as i32), "microvm");
        assert_eq!(
            restart_policy(RestartPolicy::OnFailure as i32),
            "on-failure"
        );
        assert_eq!(restart_policy(0), "never");
        assert_eq!(firmware(0), "bios");
        assert_eq!(firmware(Firmware::Bios as i32), "bios");
        assert_eq!(firmware(Firmware::Uefi as i32), "uefi");
        assert_eq!(firmware(9), "unknown(9)");
    }

    #[test]
    fn milliseconds_and_times() {
        assert_eq!(ms(812.44), "812.4");
        assert_eq!(ms(0.0), "0.0");
        assert_eq!(
            short_time("2025-01-02T03:04:05.678Z"),
            "2025-01-02 03:04:05"
        );
        assert_eq!(short_time(""), "-");
        assert_eq!(
            short_time_ms("2025-01-02T03:04:05.6Z"),
            "2025-01-02 03:04:05.600"
        );
    }

    #[test]
    fn plain_table_has_no_box_drawing() {
        let mut t = table(&["NAME", "STATUS"]);
        t.add_row(vec!["web-1", "RUNNING"]);
        let text = t.trim_fmt();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["NAME   STATUS", "web-1  RUNNING"]);
    }

    #[test]
    fn key_value_alignment() {
        let text = key_values(&[
            ("Name", "web".to_string()),
            ("Skipped", String::new()),
            ("Status", "RUNNING".to_string()),
        ]);
        assert_eq!(text, "Name:   web\nStatus: RUNNING\n");
    }
}

//! What a running QEMU costs its host: CPU time and resident memory from `/proc/<pid>`,
//! and what its disks did, from QMP `query-blockstats`. Reading `/proc` is a few syscalls
//! and never waits on QEMU, so it is cheap enough for every metrics scrape; block stats
//! need QEMU to answer, so callers ask for them with a short timeout and keep the answer.

use std::time::Duration;

use serde::Deserialize;

use crate::VmmError;
use crate::qmp::QmpClient;

/// CPU time and memory of one process.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProcessUsage {
    /// User plus system CPU time of all its threads (vCPUs, I/O), in seconds.
    pub cpu_seconds: f64,
    /// Resident set size in bytes (guest RAM it touched, plus QEMU itself).
    pub rss_bytes: u64,
}

/// Clock ticks per second (`_SC_CLK_TCK`, 100 on Linux) and the page size.
fn clock_and_page() -> (u64, u64) {
    use nix::unistd::{SysconfVar, sysconf};
    let tck = sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(100);
    let page = sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(4096);
    (tck, page)
}

/// CPU time and RSS of `pid`, from `/proc/<pid>/stat` and `/proc/<pid>/statm`.
pub fn process_usage(pid: u32) -> Result<ProcessUsage, VmmError> {
    let stat_path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&stat_path)
        .map_err(|e| VmmError::io("read", std::path::Path::new(&stat_path), e))?;
    let statm_path = format!("/proc/{pid}/statm");
    let statm = std::fs::read_to_string(&statm_path)
        .map_err(|e| VmmError::io("read", std::path::Path::new(&statm_path), e))?;
    let (tck, page) = clock_and_page();
    let ticks = parse_stat_ticks(&stat)
        .ok_or_else(|| VmmError::QemuStart(format!("{stat_path}: unexpected contents")))?;
    let pages = parse_statm_resident(&statm)
        .ok_or_else(|| VmmError::QemuStart(format!("{statm_path}: unexpected contents")))?;
    Ok(ProcessUsage {
        cpu_seconds: ticks as f64 / tck as f64,
        rss_bytes: pages.saturating_mul(page),
    })
}

/// utime + stime (fields 14 and 15, in clock ticks) of a `/proc/<pid>/stat` line. The
/// command name (field 2) is in parentheses and may hold spaces and parentheses itself,
/// so fields are counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

/// The resident pages (second field) of a `/proc/<pid>/statm` line.
pub fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// What one of QEMU's block backends did since QEMU started.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockStats {
    /// The backend's root node name (our disk id, `disk0`), or its device path when QEMU
    /// gave no node name.
    pub node: String,
    /// The guest device QEMU attached it to (`/machine/peripheral/disk0/virtio-backend`).
    pub qdev: String,
    pub read_bytes: u64,
    pub written_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
    pub flush_ops: u64,
}

impl BlockStats {
    /// Whether these are the stats of our disk `id` (QEMU's device and node id).
    pub fn is_disk(&self, id: &str) -> bool {
        self.node == id || self.qdev == id || self.qdev.contains(&format!("/{id}/"))
    }
}

#[derive(Deserialize)]
struct RawBlockStats {
    #[serde(default)]
    device: String,
    #[serde(default, rename = "node-name")]
    node_name: String,
    #[serde(default)]
    qdev: String,
    stats: RawCounters,
}

#[derive(Deserialize)]
struct RawCounters {
    #[serde(default)]
    rd_bytes: u64,
    #[serde(default)]
    wr_bytes: u64,
    #[serde(default)]
    rd_operations: u64,
    #[serde(default)]
    wr_operations: u64,
    #[serde(default)]
    flush_operations: u64,
}

/// Parse a `query-blockstats` reply (its `return` list).
pub fn parse_blockstats(reply: &serde_json::Value) -> Result<Vec<BlockStats>, VmmError> {
    let raw: Vec<RawBlockStats> = Vec::deserialize(reply)
        .map_err(|e| VmmError::QmpProtocol(format!("unexpected query-blockstats reply: {e}")))?;
    Ok(raw
        .into_iter()
        .map(|r| BlockStats {
            node: if r.node_name.is_empty() {
                r.device
            } else {
                r.node_name
            },
            qdev: r.qdev,
            read_bytes: r.stats.rd_bytes,
            written_bytes: r.stats.wr_bytes,
            read_ops: r.stats.rd_operations,
            write_ops: r.stats.wr_operations,
            flush_ops: r.stats.flush_operations,
        })
        .collect())
}

impl QmpClient {
    /// `query-blockstats`, failing with [`VmmError::QmpTimeout`] after `timeout` (a QEMU
    /// that does not answer costs the caller no more than that).
    pub async fn query_blockstats(&self, timeout: Duration) -> Result<Vec<BlockStats>, VmmError> {
        let reply = self
            .execute_with_timeout("query-blockstats", None, timeout)
            .await?;
        parse_blockstats(&reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let line = "4242 (qemu (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 3 0 1000 123456789 5000 18446744073709551615";
        assert_eq!(parse_stat_ticks(line), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
        assert_eq!(
            parse_statm_resident("9000 1200 300 1 0 800 0\n"),
            Some(1200)
        );
        assert_eq!(parse_statm_resident(""), None);
    }

    #[test]
    fn our_own_process_has_usage() {
        let u = process_usage(std::process::id()).expect("usage of this test");
        assert!(u.rss_bytes > 0);
        assert!(u.cpu_seconds >= 0.0);
    }

    #[test]
    fn blockstats_of_qemu_7_2() {
        let reply = serde_json::json!([
            {"device": "", "node-name": "disk0", "qdev": "/machine/peripheral/disk0/virtio-backend",
             "stats": {"rd_bytes": 4096, "wr_bytes": 512, "rd_operations": 3, "wr_operations": 1,
                       "flush_operations": 2, "account_invalid": true},
             "parent": {"stats": {}}},
            {"device": "pflash0", "qdev": "/machine/system.flash0", "stats": {}}
        ]);
        let s = parse_blockstats(&reply).expect("parse");
        assert_eq!(s.len(), 2);
        assert!(s[0].is_disk("disk0"));
        assert!(!s[0].is_disk("disk1"));
        assert_eq!((s[0].read_bytes, s[0].written_bytes), (4096, 512));
        assert_eq!((s[0].read_ops, s[0].write_ops, s[0].flush_ops), (3, 1, 2));
        assert_eq!(s[1].node, "pflash0");
        assert!(parse_blockstats(&serde_json::json!({"x": 1})).is_err());
    }
}

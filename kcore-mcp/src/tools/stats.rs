//! A VM's resource use (read): `vm_stats`, over GetVMStats.

use kcore_proto::v1 as pb;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::access::Access;
use crate::error::ToolError;
use crate::registry::{Ctx, Done, Meta, SHORT, ToolDef, tool};
use crate::views::status_name;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatsArgs {
    /// The VM's name (or id).
    pub name: String,
    /// History samples from the last this many seconds (default 300, at most 3600; 0: none).
    #[serde(default)]
    pub since_secs: Option<u32>,
}

/// One sample of a VM's resource use.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StatsSample {
    /// When it was taken (unix epoch, milliseconds).
    pub at_unix_ms: i64,
    /// CPU time of its QEMU process so far, in seconds.
    pub cpu_seconds: f64,
    /// CPU use since the sample before, in percent of one host CPU.
    pub cpu_percent: f64,
    /// Resident memory of its QEMU process, in bytes.
    pub rss_bytes: u64,
    /// Bytes its disks read and wrote, all disks together.
    pub disk_read_bytes: u64,
    pub disk_written_bytes: u64,
    /// Bytes its NICs received and sent, as the guest sees it.
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

impl From<&pb::VmStatsSample> for StatsSample {
    fn from(s: &pb::VmStatsSample) -> Self {
        StatsSample {
            at_unix_ms: s.at_unix_ms,
            cpu_seconds: s.cpu_seconds,
            cpu_percent: s.cpu_percent,
            rss_bytes: s.rss_bytes,
            disk_read_bytes: s.disk_read_bytes,
            disk_written_bytes: s.disk_written_bytes,
            net_rx_bytes: s.net_rx_bytes,
            net_tx_bytes: s.net_tx_bytes,
        }
    }
}

/// A VM's resource use now and over a recent window.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VmStats {
    pub vm: String,
    pub node: String,
    pub status: String,
    /// Now; absent when the VM has no QEMU.
    pub current: Option<StatsSample>,
    /// Seconds between history samples.
    pub interval_seconds: f64,
    /// Oldest first.
    pub history: Vec<StatsSample>,
    /// Per disk: device, volume, bytes and operations (QMP query-blockstats).
    pub disks: Vec<DiskUse>,
    /// Per NIC: bytes and packets as the guest sees them.
    pub nics: Vec<NicUse>,
    /// Starts by the restart policy since the node's daemon started.
    pub restarts: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DiskUse {
    pub device: String,
    pub volume: String,
    pub read_bytes: u64,
    pub written_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct NicUse {
    pub id: String,
    pub tap: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

pub fn tools() -> Vec<ToolDef> {
    vec![tool(
        Meta {
            name: "vm_stats",
            title: "A VM's resource use",
            description: "A running VM's resource use now and over the last minutes: \
                    CPU time and percent of one host CPU, resident memory of its QEMU, disk \
                    and NIC byte counters (cumulative since its QEMU started), restarts. \
                    since_secs picks how much history (the node keeps an hour).",
            access: Access::Read,
            idempotent: true,
            open_world: false,
            methods: &["GetVMStats"],
        },
        vm_stats,
    )]
}

async fn vm_stats(ctx: Ctx, a: StatsArgs) -> Result<Done<VmStats>, ToolError> {
    let client = ctx.client().await?;
    let since = a.since_secs.unwrap_or(300).min(3600);
    let req = pb::GetVmStatsRequest {
        name: a.name,
        since_seconds: since,
    };
    let st = client
        .api()
        .get_vm_stats(ctx.req(req, SHORT))
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    let history = if since == 0 {
        Vec::new()
    } else {
        st.history.iter().map(StatsSample::from).collect()
    };
    let current = st.current.as_ref().map(StatsSample::from);
    let summary = match &current {
        Some(c) => format!(
            "{} on {}: {:.1}% CPU, {} MiB resident, disks {} B read / {} B written, \
             NICs {} B in / {} B out",
            st.vm,
            st.node,
            c.cpu_percent,
            c.rss_bytes / (1 << 20),
            c.disk_read_bytes,
            c.disk_written_bytes,
            c.net_rx_bytes,
            c.net_tx_bytes
        ),
        None => format!("{} on {} has no QEMU running", st.vm, st.node),
    };
    let data = VmStats {
        status: status_name(st.status),
        current,
        interval_seconds: st.interval_seconds,
        history,
        disks: st
            .disks
            .iter()
            .map(|d| DiskUse {
                device: d.device.clone(),
                volume: d.volume.clone(),
                read_bytes: d.read_bytes,
                written_bytes: d.written_bytes,
                read_ops: d.read_ops,
                write_ops: d.write_ops,
            })
            .collect(),
        nics: st
            .nics
            .iter()
            .map(|n| NicUse {
                id: n.id.clone(),
                tap: n.tap.clone(),
                rx_bytes: n.rx_bytes,
                tx_bytes: n.tx_bytes,
                rx_packets: n.rx_packets,
                tx_packets: n.tx_packets,
            })
            .collect(),
        restarts: st.restarts,
        vm: st.vm,
        node: st.node,
    };
    Ok(Done { summary, data })
}

//! `kctl vm migrate`: a live migration, its progress on stderr (one line per phase, and
//! the figures as they change when stderr is a terminal), the outcome on stdout.

use std::io::IsTerminal;

use anyhow::Result;
use kcore_proto::v1 as pb;

use crate::endpoint::Client;
use crate::output::{self, Format};

/// What `kctl vm migrate` was asked.
pub struct MigrateArgs {
    pub name: String,
    pub to: String,
    pub timeout: Option<u32>,
    pub max_downtime: Option<u32>,
    pub bandwidth: Option<u32>,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// One progress line: `ram: 96.0/128.0 MiB, dirty 1.2 MiB/s, expected downtime 30 ms`.
pub fn describe(p: &pb::MigrationProgress) -> String {
    match p.phase.as_str() {
        "disk-mirror" => format!(
            "disk-mirror: {:.1}/{:.1} MiB",
            mib(p.bytes_done),
            mib(p.bytes_total)
        ),
        "ram" => format!(
            "ram (pass {}): {:.1}/{:.1} MiB, dirty {:.1} MiB/s, expected downtime {} ms",
            p.ram_passes.max(1),
            mib(p.bytes_done),
            mib(p.bytes_total),
            mib(p.dirty_rate),
            p.expected_downtime_ms
        ),
        other => other.to_string(),
    }
}

pub async fn migrate(client: &Client, format: Format, a: MigrateArgs) -> Result<()> {
    let mut stream = client
        .api()
        .migrate_vm(pb::MigrateVmRequest {
            name: a.name.clone(),
            to_node: a.to.clone(),
            timeout_secs: a.timeout.unwrap_or(0),
            max_downtime_ms: a.max_downtime.unwrap_or(0),
            bandwidth_mib: a.bandwidth.unwrap_or(0),
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    let tty = std::io::stderr().is_terminal();
    let mut phase = String::new();
    let mut last = None;
    while let Some(p) = stream.message().await.map_err(|s| client.error(s))? {
        if p.phase != phase || tty {
            if p.phase != "completed" {
                eprintln!("{}", describe(&p));
            }
            phase = p.phase.clone();
        }
        if p.phase == "completed" {
            last = Some(p);
        }
    }
    let Some(last) = last else {
        anyhow::bail!("the migration of {} ended without completing", a.name);
    };
    if format != Format::Table {
        return output::print_structured(format, &last);
    }
    output::write_stdout(
        format!(
            "Migrated {} from {} to {} in {:.1} s (downtime {} ms)\n",
            last.vm,
            last.from_node,
            last.to_node,
            last.elapsed_ms as f64 / 1000.0,
            last.downtime_ms
        )
        .as_bytes(),
    )
}

//! `kctl events`: the event stream, one line per event (`AT  KIND  VM  STATUS  MESSAGE`),
//! or one JSON object per line with `-o json` (YAML documents with `-o yaml`).

use anyhow::{Context, Result};
use kcore_proto::v1::{Event, WatchEventsRequest};

use crate::cli::EventsArgs;
use crate::endpoint::Client;
use crate::output::{self, Format};

/// Column widths of the streamed table (it cannot be measured up front).
const WIDTHS: [usize; 4] = [23, 12, 16, 9];

/// The header line of the table mode.
pub fn header() -> String {
    row(["AT", "KIND", "VM", "STATUS", "MESSAGE"])
}

/// One event as a table line.
pub fn line(event: &Event) -> String {
    let status = if event.status == 0 {
        "-".to_string()
    } else {
        output::vm_status(event.status)
    };
    let vm = if event.vm_name.is_empty() {
        &event.vm_id
    } else {
        &event.vm_name
    };
    // An event about a node (no VM) names the node.
    let message = match (
        vm.is_empty() && !event.node.is_empty(),
        event.message.is_empty(),
    ) {
        (true, true) => format!("node {}", event.node),
        (true, false) => format!("node {}: {}", event.node, event.message),
        _ => event.message.clone(),
    };
    row([
        &output::short_time_ms(&event.at),
        &output::or_dash(&event.kind),
        &output::or_dash(vm),
        &status,
        &message,
    ])
}

fn row(cells: [&str; 5]) -> String {
    let mut out = String::new();
    for (cell, width) in cells.iter().zip(WIDTHS) {
        out.push_str(&format!("{cell:<width$}  "));
    }
    out.push_str(cells[4]);
    out.trim_end().to_string() + "\n"
}

/// `kctl events`.
pub async fn run(client: &Client, format: Format, args: EventsArgs) -> Result<()> {
    // Installed before any output, so a Ctrl-C right after it is caught.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing SIGINT handler")?;
    let mut stream = client
        .api()
        .watch_events(WatchEventsRequest {
            follow: args.follow,
            history: args.history.unwrap_or(0),
            vm: args.vm.unwrap_or_default(),
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    if format == Format::Table {
        output::write_stdout(header().as_bytes())?;
    }
    loop {
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(event)) => match format {
                    Format::Table => output::write_stdout(line(&event).as_bytes())?,
                    Format::Json | Format::Yaml => output::print_stream_item(format, &event)?,
                },
                Ok(None) => break,
                Err(status) => return Err(client.error(status).into()),
            },
            _ = interrupt.recv() => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kcore_proto::v1::VmStatus;

    use super::*;

    #[test]
    fn event_lines() {
        let event = Event {
            id: 7,
            at: "2025-01-10T12:00:01.234Z".into(),
            kind: "vm.status".into(),
            vm_id: "0c5e".into(),
            vm_name: "web".into(),
            status: VmStatus::Running as i32,
            node: "node-1".into(),
            message: "vcpus running".into(),
        };
        assert_eq!(
            header(),
            "AT                       KIND          VM                STATUS     MESSAGE\n"
        );
        assert_eq!(
            line(&event),
            "2025-01-10 12:00:01.234  vm.status     web               RUNNING    vcpus running\n"
        );
        let node_event = Event {
            at: "2025-01-10T12:00:01.234Z".into(),
            kind: "node.ready".into(),
            node: "node-1".into(),
            ..Default::default()
        };
        assert_eq!(
            line(&node_event),
            "2025-01-10 12:00:01.234  node.ready    -                 -          node node-1\n"
        );
        let lost = Event {
            kind: "node.not_ready".into(),
            message: "no heartbeat for 6.0 s".into(),
            ..node_event
        };
        assert!(
            line(&lost).ends_with("node node-1: no heartbeat for 6.0 s\n"),
            "{}",
            line(&lost)
        );
    }

    #[test]
    fn json_lines_are_single_line_api_objects() {
        let event = Event {
            kind: "vm.created".into(),
            vm_name: "web".into(),
            status: VmStatus::Pending as i32,
            ..Default::default()
        };
        let text = serde_json::to_string(&event).expect("json");
        assert!(!text.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&text).expect("parse");
        assert_eq!(value["status"], "VM_STATUS_PENDING");
    }
}

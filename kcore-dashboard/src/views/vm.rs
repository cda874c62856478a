//! One VM: its spec, disks, NICs with their leases, the last start's boot timeline as a
//! bar chart, CPU and memory over the last hour, the console log's tail (shown, never
//! attached) and its recent events.

use kcore_proto::v1 as pb;
use maud::{Markup, html};

use super::{age, bytes, console_tail, event_list, machine, mib, profile, scroll, status_badge};
use crate::charts::{Phase, line_chart, timeline};

/// What the detail page shows.
#[derive(Debug)]
pub struct Detail {
    pub vm: pb::Vm,
    /// Err: the node could not say (its message).
    pub stats: Result<pb::VmStats, String>,
    pub console: Result<Vec<u8>, String>,
    pub events: Vec<pb::Event>,
}

fn restart(r: i32) -> &'static str {
    match pb::RestartPolicy::try_from(r) {
        Ok(pb::RestartPolicy::OnFailure) => "on-failure",
        Ok(pb::RestartPolicy::Always) => "always",
        _ => "never",
    }
}

fn spec_table(v: &pb::Vm, now: chrono::DateTime<chrono::Utc>) -> Markup {
    let spec = v.spec.clone().unwrap_or_default();
    let row = |k: &str, val: Markup| html! { tr { th { (k) } td { (val) } } };
    html! {
        table.kv #spec {
            (row("Status", html! { (status_badge(v.status)) @if !v.status_reason.is_empty() { " " span.muted { (v.status_reason) } } }))
            (row("Node", html! { a href=(format!("/vms?node={}", v.node)) { (v.node) } }))
            (row("vCPUs", html! { (v.vcpu) }))
            (row("Memory", html! { (mib(u64::from(v.memory_mb))) }))
            (row("Machine", html! { (machine(spec.machine)) }))
            (row("Profile", html! { span #profile data-profile=(profile(spec.profile)) { (profile(spec.profile)) } }))
            @if !spec.template.is_empty() {
                (row("Template", html! { a #template href=(format!("/templates#template-{}", spec.template)) { (spec.template) } " (a clone)" }))
            }
            @if !spec.kernel.is_empty() { (row("Kernel", html! { code { (spec.kernel) } })) }
            @if !spec.initrd.is_empty() { (row("Initrd", html! { code { (spec.initrd) } })) }
            @if !spec.cmdline.is_empty() { (row("Command line", html! { code { (spec.cmdline) } })) }
            @if !spec.image.is_empty() { (row("Image", html! { (spec.image) })) }
            (row("Restart policy", html! { (restart(spec.restart_policy)) }))
            (row("Autostart", html! { (if spec.autostart { "yes" } else { "no" }) }))
            @if v.pid > 0 { (row("QEMU pid", html! { (v.pid) })) }
            @if v.tainted { (row("Tainted", html! { "yes: a QMP command outside query-* was sent" })) }
            (row("Created", html! { (v.created_at) " (" (age(&v.created_at, now)) " ago)" }))
            (row("Id", html! { code { (v.id) } }))
        }
    }
}

/// The chart series: CPU percent (of the history's samples: the call's own sample is
/// too close to the last one to say much) and RSS in MiB (with the call's sample).
/// Points of a chart: (unix ms, value).
type Series = Vec<(i64, f64)>;

fn series(s: &pb::VmStats) -> (Series, Series) {
    let cpu = s
        .history
        .iter()
        .map(|p| (p.at_unix_ms, p.cpu_percent))
        .collect();
    let mut all: Vec<&pb::VmStatsSample> = s.history.iter().collect();
    if let Some(c) = &s.current
        && all.last().is_none_or(|l| l.at_unix_ms < c.at_unix_ms)
    {
        all.push(c);
    }
    let mem = all
        .iter()
        .map(|p| (p.at_unix_ms, p.rss_bytes as f64 / 1048576.0))
        .collect();
    (cpu, mem)
}

fn usage(stats: &Result<pb::VmStats, String>, now_ms: i64) -> Markup {
    match stats {
        Err(e) => html! { p.muted #stats-error { "No figures from the node: " (e) } },
        Ok(s) => {
            let (cpu, mem) = series(s);
            // The hour, or less while the history is shorter (at least 5 minutes).
            let oldest = s.history.first().map_or(now_ms, |p| p.at_unix_ms);
            let window = (oldest.min(now_ms - 300_000).max(now_ms - 3_600_000), now_ms);
            let gap = ((s.interval_seconds * 2500.0) as i64).max(2000);
            html! {
                div.charts data-samples=(s.history.len()) {
                    (line_chart("cpu-chart", "CPU (percent of one host cpu)", "%", &cpu, window, gap))
                    (line_chart("memory-chart", "Memory (QEMU resident)", "MiB", &mem, window, gap))
                }
                p.muted {
                    "Sampled every " (s.interval_seconds) " s by node " (s.node) "; "
                    (s.history.len()) " samples; restarts by the policy: " (s.restarts) "."
                    @if let Some(c) = &s.current {
                        " CPU time " (format!("{:.2}", c.cpu_seconds)) " s; disks read "
                        (bytes(c.disk_read_bytes)) ", wrote " (bytes(c.disk_written_bytes))
                        "; network in " (bytes(c.net_rx_bytes)) ", out " (bytes(c.net_tx_bytes)) "."
                    }
                }
            }
        }
    }
}

pub fn render(d: &Detail, now: chrono::DateTime<chrono::Utc>) -> Markup {
    let v = &d.vm;
    let stats = d.stats.as_ref().ok();
    let phases: Vec<Phase> = v
        .timeline
        .as_ref()
        .map(|t| {
            t.phases
                .iter()
                .map(|p| Phase {
                    name: p.name.clone(),
                    offset_ms: p.offset_ms,
                })
                .collect()
        })
        .unwrap_or_default();
    html! {
        h1 data-vm=(v.name) { (v.name) " " (status_badge(v.status)) }
        div.columns {
            section { h2 { "Spec" } (spec_table(v, now)) }
            section {
                h2 { "Boot timeline" }
                @if phases.is_empty() { p.muted { "not started yet" } } @else { (timeline(&phases)) }
            }
        }
        h2 { "CPU and memory, last hour" }
        (usage(&d.stats, now.timestamp_millis()))
        h2 { "Disks" }
        (scroll(html! {
            table #disks {
                thead { tr { th { "Device" } th { "Volume" } th { "Pool" } th { "Size" } th { "Format" } th { "Image" } th { "Read" } th { "Written" } } }
                tbody {
                    @for disk in &v.disks {
                        @let io = stats.and_then(|s| s.disks.iter().find(|x| x.device == disk.device));
                        tr data-device=(disk.device) {
                            td { (disk.device) } td { (disk.volume) } td { (disk.pool) }
                            td.num { (bytes(disk.size_bytes)) } td { (disk.format) } td { (disk.image) }
                            td.num { (io.map(|x| bytes(x.read_bytes)).unwrap_or_default()) }
                            td.num { (io.map(|x| bytes(x.written_bytes)).unwrap_or_default()) }
                        }
                    }
                }
            }
        }))
        @if v.disks.is_empty() { p.muted { "no disks" } }
        h2 { "NICs" }
        (scroll(html! {
            table #nics {
                thead { tr { th { "NIC" } th { "Network" } th { "MAC" } th { "Model" } th { "Tap" } th { "Address (lease)" } th { "In" } th { "Out" } } }
                tbody {
                    @for n in &v.nics {
                        @let io = stats.and_then(|s| s.nics.iter().find(|x| x.id == n.id));
                        tr data-nic=(n.id) {
                            td { (n.id) } td { a href="/networks" { (n.network) } } td { code { (n.mac) } }
                            td { (n.model) } td { (n.tap) }
                            td.lease { @if n.ip.is_empty() { span.muted { "none yet" } } @else { (n.ip) } }
                            td.num { (io.map(|x| bytes(x.rx_bytes)).unwrap_or_default()) }
                            td.num { (io.map(|x| bytes(x.tx_bytes)).unwrap_or_default()) }
                        }
                    }
                }
            }
        }))
        @if v.nics.is_empty() { p.muted { "no NICs" } }
        h2 { "Console log" }
        @match &d.console {
            Ok(data) => pre.console #console { (console_tail(data, 200)) },
            Err(e) => p.muted #console { "no console log: " (e) },
        }
        p.muted { "The console is shown as a log; the dashboard never attaches to it." }
        h2 { "Recent events" }
        (event_list(&d.events, "event-list"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_renders_timeline_leases_and_charts() {
        let vm = pb::Vm {
            name: "web".into(),
            status: pb::VmStatus::Running as i32,
            nics: vec![pb::VmNic {
                id: "net0".into(),
                ip: "10.77.0.5".into(),
                ..Default::default()
            }],
            timeline: Some(pb::BootTimeline {
                phases: vec![
                    pb::BootPhase {
                        name: "request_received".into(),
                        offset_ms: 0.0,
                        at: String::new(),
                    },
                    pb::BootPhase {
                        name: "vcpus_running".into(),
                        offset_ms: 40.0,
                        at: String::new(),
                    },
                ],
            }),
            ..Default::default()
        };
        let now = chrono::Utc::now();
        let ms = now.timestamp_millis();
        let stats = pb::VmStats {
            interval_seconds: 1.0,
            history: (0..5)
                .map(|i| pb::VmStatsSample {
                    at_unix_ms: ms - 5000 + i * 1000,
                    cpu_percent: 10.0,
                    rss_bytes: 50 << 20,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let d = Detail {
            vm,
            stats: Ok(stats),
            console: Ok(b"hello <b>\n".to_vec()),
            events: vec![],
        };
        let html = render(&d, now).into_string();
        assert!(html.contains(r#"data-profile="standard""#), "{html}");
        assert!(!html.contains(r#"id="template""#), "{html}");
        assert!(html.contains(r#"data-phase="vcpus_running""#), "{html}");
        assert!(html.contains("10.77.0.5"));
        assert!(html.contains(r#"id="cpu-chart" data-points="5""#), "{html}");
        assert!(html.contains("hello &lt;b&gt;"));
    }
}

//! The pages, as maud templates: the layout every page shares (navigation, the identity
//! the dashboard uses, the live-update script), and one module a view. Everything renders
//! without JavaScript; `/static/dashboard.js` only refreshes the page's `<main>` when
//! events arrive and follows the event stream.

pub mod events;
pub mod network;
pub mod node;
pub mod overview;
pub mod storage;
pub mod templates;
pub mod vm;
pub mod vms;

use kcore_proto::v1 as pb;
use maud::{DOCTYPE, Markup, html};

use crate::error::{DashError, Kind};

/// What every page shows in its header.
#[derive(Debug, Clone)]
pub struct Chrome<'a> {
    pub identity: &'a str,
    pub endpoint: &'a str,
}

const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/vms", "VMs"),
    ("/nodes", "Nodes"),
    ("/networks", "Networks"),
    ("/storage", "Storage"),
    ("/templates", "Templates"),
    ("/events", "Events"),
];

/// A whole page. `live`: the script refreshes `<main>` when something happens.
pub fn page(chrome: &Chrome<'_>, title: &str, active: &str, live: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · kcore" }
                link rel="stylesheet" href="/static/dashboard.css";
                script src="/static/dashboard.js" defer {}
            }
            body data-live=(if live { "1" } else { "0" }) {
                header {
                    a.brand href="/" { "kcore" }
                    nav {
                        @for (href, label) in NAV {
                            a href=(href) class=[(*href == active).then_some("active")] { (label) }
                        }
                    }
                    span #live-state.muted title="live updates" {}
                }
                p #identity.identity {
                    "Read-only view of " code { (chrome.endpoint) } ", as " (chrome.identity) "."
                }
                main #main { (body) }
            }
        }
    }
}

/// The page for an error: what went wrong, and what to do about it.
pub fn error_page(chrome: &Chrome<'_>, e: &DashError) -> Markup {
    let (title, hint) = match e.kind() {
        Kind::Refused => (
            "kcored refused the dashboard's identity",
            "The dashboard needs a certificate kcored accepts (a viewer certificate is \
             enough): kctl cert issue dashboard --role viewer --out DIR, then KCORE_CA_CERT, \
             KCORE_CLIENT_CERT and KCORE_CLIENT_KEY (or the config file) pointing at it.",
        ),
        Kind::Unreachable => (
            "kcored cannot be reached",
            "Check that kcored runs and listens where the endpoint says, and that the CA \
             certificate is the cluster's. The page works again as soon as it answers.",
        ),
        Kind::NotFound => ("Not found", "It may have been deleted: see the lists."),
        Kind::Failed => ("kcored answered with an error", ""),
    };
    page(
        chrome,
        title,
        "",
        false,
        html! {
            section.error-page #error data-kind=(format!("{:?}", e.kind()).to_lowercase()) {
                h1 { (title) }
                pre.error-message { (e.to_string()) }
                @if !hint.is_empty() { p { (hint) } }
            }
        },
    )
}

/// A machine type's name (unspecified: q35, the API's default).
pub fn machine(m: i32) -> &'static str {
    match pb::MachineType::try_from(m) {
        Ok(pb::MachineType::Pc) => "pc",
        Ok(pb::MachineType::Microvm) => "microvm",
        _ => "q35",
    }
}

/// A profile's name (unspecified: standard, the API's default).
pub fn profile(p: i32) -> &'static str {
    match pb::Profile::try_from(p) {
        Ok(pb::Profile::Fast) => "fast",
        _ => "standard",
    }
}

/// `RUNNING` as a coloured badge.
pub fn status_badge(status: i32) -> Markup {
    let name = status_name(status);
    html! { span.badge.(name.to_lowercase()) data-status=(name) { (name) } }
}

/// The short name of a VM status (`RUNNING`).
pub fn status_name(status: i32) -> &'static str {
    pb::VmStatus::try_from(status)
        .map(|s| s.as_str_name().trim_start_matches("VM_STATUS_"))
        .unwrap_or("UNKNOWN")
}

/// Every VM status a filter may name, in order.
pub const STATUSES: &[&str] = &[
    "PENDING", "CREATING", "STOPPED", "STARTING", "RUNNING", "PAUSED", "STOPPING", "CRASHED",
    "ERROR", "UNKNOWN",
];

/// 1536 MiB -> "1.5 GiB".
pub fn mib(m: u64) -> String {
    if m >= 1024 {
        format!("{:.1} GiB", m as f64 / 1024.0)
    } else {
        format!("{m} MiB")
    }
}

/// Bytes as B/KiB/MiB/GiB/TiB.
pub fn bytes(b: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// How long ago an RFC 3339 time was ("3m", "2h", "5d"); empty if it does not parse.
pub fn age(rfc3339: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return String::new();
    };
    let s = now.signed_duration_since(t).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// A table that scrolls sideways on a phone instead of making the page wider.
pub fn scroll(table: Markup) -> Markup {
    html! { div.scroll { (table) } }
}

/// The events list (newest first), which the script extends as events arrive.
pub fn event_list(events: &[pb::Event], id: &str) -> Markup {
    html! {
        ul.events id=(id) {
            @for e in events.iter().rev() {
                (event_item(e))
            }
            @if events.is_empty() { li.muted.empty { "no events yet" } }
        }
    }
}

/// One event as a list item.
pub fn event_item(e: &pb::Event) -> Markup {
    html! {
        li data-kind=(e.kind) {
            time datetime=(e.at) { (e.at.get(11..19).unwrap_or(&e.at)) }
            " "
            span.kind { (e.kind) }
            @if !e.vm_name.is_empty() { " " a href=(format!("/vms/{}", e.vm_name)) { (e.vm_name) } }
            @if e.status != 0 { " " (status_badge(e.status)) }
            @if !e.node.is_empty() { " " span.muted { "on " (e.node) } }
            @if !e.message.is_empty() { " — " (e.message) }
        }
    }
}

/// Text from a console log, fit to show: the last `max_lines` lines, without terminal
/// escape sequences and control characters.
pub fn console_tail(data: &[u8], max_lines: usize) -> String {
    let text = String::from_utf8_lossy(data);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ ... final byte in @..~; other escapes: one more char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for d in chars.by_ref() {
                        if ('@'..='~').contains(&d) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\n' | '\t' => out.push(c),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    let lines: Vec<&str> = out.lines().collect();
    let start = lines.len().saturating_sub(max_lines);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_well() {
        assert_eq!(mib(512), "512 MiB");
        assert_eq!(mib(1536), "1.5 GiB");
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T01:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        assert_eq!(age("2026-01-01T00:59:30Z", now), "30s");
        assert_eq!(age("2026-01-01T00:00:00Z", now), "1h");
        assert_eq!(age("junk", now), "");
    }

    #[test]
    fn console_tails_lose_escapes_and_keep_the_last_lines() {
        let log = b"one\r\n\x1b[1;32mtwo\x1b[0m\r\nthree\x07\n";
        assert_eq!(console_tail(log, 2), "two\nthree");
        assert_eq!(console_tail(log, 10), "one\ntwo\nthree");
    }

    #[test]
    fn statuses_have_short_names() {
        assert_eq!(status_name(pb::VmStatus::Running as i32), "RUNNING");
        assert_eq!(status_name(99), "UNKNOWN");
    }
}

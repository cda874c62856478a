//! Pictures as plain HTML and SVG, made on the server (nothing to run in the browser):
//! capacity bars, the boot timeline as a bar chart, and line charts of the last hour.

use maud::{Markup, html};

/// A bar `used` of `total` full, with its text ("512 / 2048 MiB").
pub fn bar(used: f64, total: f64, text: &str, what: &str) -> Markup {
    let pct = if total > 0.0 {
        (used / total * 100.0).clamp(0.0, 100.0)
    } else {
        0.0
    };
    let level = if pct >= 90.0 {
        "high"
    } else if pct >= 70.0 {
        "mid"
    } else {
        "low"
    };
    html! {
        div.bar data-what=(what) data-used=(used) data-total=(total) title=(format!("{what}: {text}")) {
            div.fill.(level) style=(format!("width:{pct:.1}%")) {}
            span.bar-text { (what) ": " (text) }
        }
    }
}

/// One phase of a start, at `offset_ms` from the request.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    pub offset_ms: f64,
}

/// The boot timeline as a waterfall: each phase a bar from the phase before it to itself,
/// with the step's and the total's milliseconds.
pub fn timeline(phases: &[Phase]) -> Markup {
    let total = phases
        .iter()
        .map(|p| p.offset_ms)
        .fold(0.0_f64, f64::max)
        .max(0.001);
    html! {
        div.timeline role="img" aria-label="boot timeline" data-total-ms=(format!("{total:.1}")) {
            @for (i, p) in phases.iter().enumerate() {
                @let start = if i == 0 { 0.0 } else { phases[i - 1].offset_ms.min(p.offset_ms) };
                @let step = p.offset_ms - start;
                div.tl-row {
                    span.tl-name { (p.name) }
                    span.tl-track {
                        span.tl-bar data-phase=(p.name) data-ms=(format!("{:.1}", p.offset_ms))
                            style=(format!("margin-left:{:.2}%;width:{:.2}%",
                                start / total * 100.0, (step / total * 100.0).max(0.4))) {}
                    }
                    span.tl-ms { "+" (format!("{step:.1}")) " ms · " (format!("{:.1}", p.offset_ms)) " ms" }
                }
            }
        }
    }
}

/// A line chart of `points` (unix ms, value) over `[from, to]` ms. A gap longer than
/// `max_gap_ms` breaks the line (the VM did not run).
pub fn line_chart(
    id: &str,
    title: &str,
    unit: &str,
    points: &[(i64, f64)],
    (from, to): (i64, i64),
    max_gap_ms: i64,
) -> Markup {
    const W: f64 = 600.0;
    const H: f64 = 160.0;
    let max = points
        .iter()
        .map(|p| p.1)
        .fold(0.0_f64, f64::max)
        .max(f64::EPSILON);
    let top = nice_ceiling(max);
    let span = (to - from).max(1) as f64;
    let x = |t: i64| ((t - from) as f64 / span * W).clamp(0.0, W);
    let y = |v: f64| H - (v / top * H).clamp(0.0, H);
    let mut lines: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut last: Option<i64> = None;
    for &(t, v) in points.iter().filter(|p| p.0 >= from && p.0 <= to) {
        if last.is_none_or(|l| t - l > max_gap_ms) {
            lines.push(Vec::new());
        }
        if let Some(line) = lines.last_mut() {
            line.push((x(t), y(v)));
        }
        last = Some(t);
    }
    let latest = points.last().map(|p| p.1);
    html! {
        figure.chart id=(id) data-points=(points.len()) {
            figcaption {
                (title)
                @if let Some(v) = latest { " — now " strong { (fmt_value(v)) " " (unit) } }
            }
            svg viewBox=(format!("0 0 {W} {H}")) preserveAspectRatio="none" role="img"
                aria-label=(title) {
                title { (title) }
                line.grid x1="0" y1="0" x2=(W) y2="0" {}
                line.grid x1="0" y1=(H / 2.0) x2=(W) y2=(H / 2.0) {}
                line.axis x1="0" y1=(H) x2=(W) y2=(H) {}
                @for line in &lines {
                    @if line.len() == 1 {
                        circle cx=(format!("{:.1}", line[0].0)) cy=(format!("{:.1}", line[0].1)) r="2" {}
                    } @else {
                        polyline points=(line.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect::<Vec<_>>().join(" ")) {}
                    }
                }
            }
            div.chart-scale {
                span { (fmt_value(top)) " " (unit) }
                span { (span_words(to - from)) }
            }
            @if points.is_empty() { p.muted { "no samples yet" } }
        }
    }
}

/// "last 12 min", "last hour".
fn span_words(ms: i64) -> String {
    let min = (ms as f64 / 60_000.0).round() as i64;
    if min >= 59 {
        "last hour".to_string()
    } else {
        format!("last {} min", min.max(1))
    }
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// 1, 2 or 5 times a power of ten, at least `v`.
pub fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }

    #[test]
    fn timeline_bars_follow_the_phases() {
        let html = timeline(&[
            Phase {
                name: "request_received".into(),
                offset_ms: 0.0,
            },
            Phase {
                name: "qemu_exec".into(),
                offset_ms: 5.0,
            },
            Phase {
                name: "guest_ready".into(),
                offset_ms: 100.0,
            },
        ])
        .into_string();
        assert!(
            html.contains(
                r#"data-phase="qemu_exec" data-ms="5.0" style="margin-left:0.00%;width:5.00%""#
            ),
            "{html}"
        );
        assert!(
            html.contains(
                r#"data-phase="guest_ready" data-ms="100.0" style="margin-left:5.00%;width:95.00%""#
            ),
            "{html}"
        );
    }

    #[test]
    fn charts_break_at_gaps_and_escape_titles() {
        let pts = [(0, 1.0), (1000, 2.0), (60_000, 3.0), (61_000, 4.0)];
        let html = line_chart("c", "CPU <x>", "%", &pts, (0, 61_000), 5000).into_string();
        assert_eq!(html.matches("<polyline").count(), 2, "{html}");
        assert!(html.contains("CPU &lt;x&gt;"));
        let bar = bar(50.0, 200.0, "50 / 200", "memory").into_string();
        assert!(bar.contains("width:25.0%"), "{bar}");
    }
}

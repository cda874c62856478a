//! The guest's own boot phases, read from its console: when its kernel started and when it
//! ran init, so a timeline splits the boot into firmware, kernel and userspace time.
//!
//! Only a kernel that prints shows them: one booted without `quiet` (or with
//! `loglevel=7`), with printk timestamps (`printk.time=1`, the default of most distribution
//! kernels). Nothing is guessed when it does not print.
//!
//! - **kernel started**: the first line of the kernel's own (its boot stub's `Probing EDD`
//!   or `Decompressing Linux`, or any timestamped printk line), or earlier when a printk
//!   timestamp says so: a line stamped `[    0.416]` that arrived at T shows the kernel's
//!   clock started no later than T - 0.416 s (the kernel holds its early lines back until
//!   its serial console is up, so the first line alone would be late). The earliest such
//!   moment counts; the owner clamps it to the moment the vCPUs ran.
//! - **init started**: the line `Run /init as init process` (any path), or systemd's
//!   first `systemd[1]:` line, when it arrives; only after the kernel started.
//!
//! Times are the host's: when the node read the line.

use std::time::{Duration, SystemTime};

/// A guest boot phase seen on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMark {
    KernelStarted,
    InitStarted,
}

/// The state of one boot's reading.
#[derive(Debug, Default)]
pub struct GuestPhases {
    kernel_at: Option<SystemTime>,
    init_seen: bool,
}

/// The seconds of a printk timestamp at the start of `line` (`[    1.234567] ...`).
pub fn printk_stamp(line: &str) -> Option<f64> {
    let rest = line.trim_start_matches(['\r', '\0']).strip_prefix('[')?;
    let (num, _) = rest.split_once(']')?;
    let num = num.trim_start();
    let (secs, frac) = num.split_once('.')?;
    if secs.is_empty()
        || frac.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    num.parse().ok()
}

/// A line of the kernel's boot stub (before printk works).
fn is_boot_stub_line(line: &str) -> bool {
    let l = line.trim_start_matches(['\r', '\0']);
    l.starts_with("Probing EDD") || l.starts_with("Decompressing Linux")
}

/// A line that says init (the first userspace program) started.
fn is_init_line(line: &str) -> bool {
    if let Some(rest) = line.split_once("Run ").map(|(_, r)| r)
        && let Some((path, _)) = rest.split_once(" as init process")
        && !path.is_empty()
        && !path.contains(' ')
    {
        return true;
    }
    printk_stamp(line).is_some() && line.contains("] systemd[1]: ")
}

impl GuestPhases {
    /// Look at one complete console line that arrived `at`: the phases it moves, with
    /// their times (kernel started may move earlier more than once).
    pub fn line(&mut self, line: &str, at: SystemTime) -> Vec<(GuestMark, SystemTime)> {
        let mut marks = Vec::new();
        if self.init_seen {
            return marks;
        }
        let stamp = printk_stamp(line);
        if stamp.is_some() || is_boot_stub_line(line) {
            let since = stamp
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e6)
                .map(Duration::from_secs_f64)
                .unwrap_or_default();
            let candidate = at.checked_sub(since).unwrap_or(at);
            if self.kernel_at.is_none_or(|k| candidate < k) {
                self.kernel_at = Some(candidate);
                marks.push((GuestMark::KernelStarted, candidate));
            }
        }
        if self.kernel_at.is_some() && is_init_line(line) {
            self.init_seen = true;
            marks.push((GuestMark::InitStarted, at));
        }
        marks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_parse() {
        assert_eq!(printk_stamp("[    0.000000] Linux version 6.1"), Some(0.0));
        assert_eq!(printk_stamp("\r[   12.345678] x"), Some(12.345678));
        assert_eq!(printk_stamp("[ 1.5] x"), Some(1.5));
        assert_eq!(printk_stamp("[    0.000000"), None);
        assert_eq!(printk_stamp("[ok] done"), None);
        assert_eq!(printk_stamp("[ 1.] x"), None);
        assert_eq!(printk_stamp("KCORE-GUEST-READY"), None);
        assert_eq!(printk_stamp("x [ 1.0] y"), None);
    }

    #[test]
    fn kernel_start_is_the_earliest_the_lines_show_and_init_follows() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut g = GuestPhases::default();
        // Userspace-looking output before the kernel is not init.
        assert!(g.line("Run /init as init process", ms(10)).is_empty());
        assert_eq!(
            g.line("Probing EDD (edd=off to disable)... ok", ms(100)),
            vec![(GuestMark::KernelStarted, ms(100))]
        );
        // Held back until the console came up: stamped 0, arrives late, says nothing new.
        assert!(
            g.line("[    0.000000] Linux version 6.1.0", ms(1000))
                .is_empty()
        );
        // A live line whose stamp points before the stub line moves the start earlier.
        assert_eq!(
            g.line("[    1.000000] Serial: 8250/16550 driver", ms(1050)),
            vec![(GuestMark::KernelStarted, ms(50))]
        );
        assert!(g.line("[    1.100000] later", ms(1900)).is_empty());
        assert_eq!(
            g.line("[    2.446630] Run /init as init process", ms(2500)),
            vec![(GuestMark::InitStarted, ms(2500))]
        );
        // Once init ran nothing moves.
        assert!(g.line("[    9.000000] x", ms(2600)).is_empty());
        assert!(
            g.line("[    3.0] systemd[1]: systemd 252", ms(2700))
                .is_empty()
        );
    }

    #[test]
    fn systemd_counts_as_init_and_a_kernel_without_output_shows_nothing() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut g = GuestPhases::default();
        assert!(g.line("Welcome to Debian", t0).is_empty());
        assert!(g.line("login:", t0).is_empty());
        let mut g = GuestPhases::default();
        assert_eq!(g.line("[    0.5] x", t0 + Duration::from_secs(1)).len(), 1);
        let m = g.line(
            "[    1.2] systemd[1]: systemd 252.39-1~deb12u1 running in system mode",
            t0 + Duration::from_secs(2),
        );
        assert_eq!(
            m,
            vec![(GuestMark::InitStarted, t0 + Duration::from_secs(2))]
        );
        let mut g = GuestPhases::default();
        g.line("[    0.5] x", t0 + Duration::from_secs(1));
        assert_eq!(
            g.line(
                "[    1.0] Run /sbin/init as init process",
                t0 + Duration::from_secs(2)
            )
            .len(),
            1
        );
    }
}

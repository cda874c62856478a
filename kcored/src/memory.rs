//! Where kcored's memory goes, and the few settings that keep it small (docs/benchmarks.md,
//! "kcored memory", has the measurements behind each).
//!
//! - **Its own code.** Most of an idle daemon's RSS was clean pages of its own executable
//!   that start-up touched once (argument parsing, the PKI, SQLite's schema, the servers'
//!   set-up), mapped 64 KiB at a time by the kernel's fault-around. Once start-up is over,
//!   [`release_startup_pages`] unmaps them (`MADV_DONTNEED` on the executable's read-only
//!   mappings that hold no private copy): they stay in the page cache, clean and
//!   reclaimable, and what runs again maps back in.
//! - **The allocator.** glibc gives each thread that allocates an arena of its own; two
//!   arenas ([`tune_allocator`]) are enough for a daemon that mostly waits, and memory freed
//!   after start-up goes back to the kernel (`malloc_trim`).
//! - **Threads.** The runtime has at most [`MAX_WORKERS`] workers whatever the host's core
//!   count: kcored's work is waiting on sockets and processes, not computing.

use std::path::PathBuf;
use std::time::Duration;

/// Most tokio worker threads, whatever the host has.
pub const MAX_WORKERS: usize = 4;

/// How long after the daemon started its start-up pages are released.
pub const STARTUP_GRACE: Duration = Duration::from_secs(2);

/// Worker threads for the runtime: the host's CPUs, at least 2, at most [`MAX_WORKERS`].
pub fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, MAX_WORKERS)
}

/// Limit glibc's malloc arenas. Call before any thread is started.
pub fn tune_allocator() {
    // SAFETY: mallopt only sets a malloc parameter; it is called before other threads
    // exist, and an unsupported parameter just returns 0.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    if ok == 0 {
        tracing::debug!("mallopt(M_ARENA_MAX) was refused");
    }
}

/// What [`release_startup_pages`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings of the executable released.
    pub mappings: usize,
    /// Their resident KiB before.
    pub rss_kib: u64,
}

/// Unmap the executable's read-only pages (they stay in the page cache) and give the
/// allocator's free memory back to the kernel.
pub fn release_startup_pages() -> Released {
    let mut done = Released::default();
    match std::fs::read_to_string("/proc/self/smaps") {
        Ok(smaps) => {
            let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
            for m in releasable(&smaps, &exe) {
                // SAFETY: `m` is a mapping of our own executable that is not writable and
                // holds no private (anonymous) page, so every page in it is an unmodified
                // page of the file: MADV_DONTNEED only drops the page table entries, and the
                // next access maps the same bytes back from the page cache. No Rust object
                // lives in it (it is code and read-only data).
                let r = unsafe {
                    libc::madvise(m.start as *mut libc::c_void, m.len, libc::MADV_DONTNEED)
                };
                if r == 0 {
                    done.mappings += 1;
                    done.rss_kib += m.rss_kib;
                } else {
                    tracing::debug!(error = %std::io::Error::last_os_error(), "madvise");
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot read /proc/self/smaps"),
    }
    // SAFETY: malloc_trim only returns free heap memory to the kernel; it is thread-safe.
    unsafe { libc::malloc_trim(0) };
    done
}

/// A mapping [`release_startup_pages`] may release.
#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: usize,
    len: usize,
    rss_kib: u64,
}

/// The mappings of `exe` in `smaps` that are read-only, private, and hold no anonymous
/// (copied-on-write) page.
fn releasable(smaps: &str, exe: &std::path::Path) -> Vec<Mapping> {
    let mut out = Vec::new();
    let mut current: Option<(Mapping, bool)> = None;
    let finish = |cur: Option<(Mapping, bool)>, out: &mut Vec<Mapping>| {
        if let Some((m, true)) = cur {
            out.push(m);
        }
    };
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            finish(current.take(), &mut out);
            let perms = f.next().unwrap_or("");
            let path: PathBuf = f.nth(3).map(PathBuf::from).unwrap_or_default();
            let ok = !exe.as_os_str().is_empty()
                && path == exe
                && perms.len() == 4
                && perms.starts_with('r')
                && perms.as_bytes()[1] == b'-'
                && perms.ends_with('p')
                && end > start;
            current = Some((
                Mapping {
                    start,
                    len: end - start,
                    rss_kib: 0,
                },
                ok,
            ));
            continue;
        }
        let Some((m, ok)) = current.as_mut() else {
            continue;
        };
        let kib = || f.clone().next().and_then(|v| v.parse::<u64>().ok());
        match first {
            "Rss:" => m.rss_kib = kib().unwrap_or(0),
            "Anonymous:" if kib() != Some(0) => *ok = false,
            _ => {}
        }
    }
    finish(current.take(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d000000000-55d000200000 r--p 00000000 fd:01 123 /usr/local/bin/kcored
Rss:                1800 kB
Anonymous:             0 kB
55d000200000-55d001000000 r-xp 00200000 fd:01 123 /usr/local/bin/kcored
Rss:               12000 kB
Anonymous:             0 kB
55d001000000-55d001100000 r--p 01000000 fd:01 123 /usr/local/bin/kcored
Rss:                 900 kB
Anonymous:           900 kB
55d001100000-55d001120000 rw-p 01100000 fd:01 123 /usr/local/bin/kcored
Rss:                 128 kB
Anonymous:           100 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1000 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0
Rss:                 400 kB
Anonymous:           400 kB
";

    #[test]
    fn only_the_executables_untouched_read_only_mappings_are_released() {
        let got = releasable(SMAPS, std::path::Path::new("/usr/local/bin/kcored"));
        assert_eq!(
            got,
            [
                Mapping {
                    start: 0x55d000000000,
                    len: 0x200000,
                    rss_kib: 1800
                },
                Mapping {
                    start: 0x55d000200000,
                    len: 0xe00000,
                    rss_kib: 12000
                },
            ],
            "not the relocated RELRO (anonymous pages), not .data, not libc"
        );
        assert!(releasable(SMAPS, std::path::Path::new("")).is_empty());
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        let before = std::fs::read_to_string("/proc/self/status").expect("status");
        let r = release_startup_pages();
        let after = std::fs::read_to_string("/proc/self/status").expect("status");
        let file = |s: &str| {
            s.lines()
                .find(|l| l.starts_with("RssFile"))
                .unwrap_or("")
                .to_string()
        };
        eprintln!("before {} after {} {r:?}", file(&before), file(&after));
        assert!(r.mappings >= 1, "{r:?}\n{before}");
        // Code and read-only data come back on use.
        let v: Vec<String> = (0..1000).map(|i| format!("{i:x}")).collect();
        assert_eq!(v[255], "ff");
        assert!(worker_threads() >= 2 && worker_threads() <= MAX_WORKERS);
    }
}

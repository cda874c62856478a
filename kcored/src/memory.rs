//! Where kcored's memory goes, and the few settings that keep it small (docs/benchmarks.md,
//! "kcored's own memory", has the measurements behind each).
//!
//! - **Its own code.** Most of an idle daemon's RSS is clean pages of its own executable:
//!   what start-up, or later a VM's start, stop or any request, ran once (argument parsing,
//!   the PKI, SQLite's schema, the servers' set-up; spawning QEMU, QMP, taps), mapped 64 KiB
//!   at a time by the kernel's fault-around. Whenever the daemon has been quiet for
//!   [`QUIET`] (no request on any of its gRPC servers, no VM change on its node) after
//!   start-up or after some work, [`release_when_quiet`] unmaps them again
//!   ([`release_code_pages`]: `MADV_DONTNEED` on the executable's read-only mappings that
//!   hold no private copy). That only drops page-table entries: the pages stay in the page
//!   cache, clean, shared and reclaimable, and what runs again (the idle loop's heartbeats,
//!   the next request) maps back in. It lowers RSS, not the daemon's private memory
//!   (RssAnon), which it leaves as it is.
//! - **The allocator.** glibc gives each thread that allocates an arena of its own; two
//!   arenas ([`tune_allocator`]) are enough for a daemon that mostly waits, and memory freed
//!   after some work goes back to the kernel (`malloc_trim`, with each release).
//! - **Threads.** The runtime has at most [`MAX_WORKERS`] workers whatever the host's core
//!   count: kcored's work is waiting on sockets and processes, not computing.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

/// Most tokio worker threads, whatever the host has.
pub const MAX_WORKERS: usize = 4;

/// How long the daemon must have been quiet (no request, no VM change) before its code
/// pages are released: after start-up, and again after every burst of work.
pub const QUIET: Duration = Duration::from_secs(3);

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

/// Requests and VM changes as they happen, so that [`release_when_quiet`] can tell when the
/// daemon has gone quiet. Clones share one record. A new one counts as one piece of
/// activity, the start-up itself.
#[derive(Debug, Clone)]
pub struct Activity(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    /// How many times something happened, and when it last did.
    last: Mutex<(u64, Instant)>,
    wake: Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Activity(Arc::new(Shared {
            last: Mutex::new((1, Instant::now())),
            wake: Notify::new(),
        }))
    }
}

impl Activity {
    /// Something happened (a request came or ended, a VM changed).
    pub fn touch(&self) {
        let mut last = self.lock();
        last.0 += 1;
        last.1 = Instant::now();
        drop(last);
        self.0.wake.notify_one();
    }

    /// How many times something happened (start-up included).
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.lock().0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Instant)> {
        self.0.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait until something has happened since the count `since` and then nothing more
    /// for `quiet`; return the count then. A single waiter at a time.
    pub async fn settled(&self, since: u64, quiet: Duration) -> u64 {
        loop {
            let (count, at) = *self.lock();
            if count == since {
                // A touch between the read and this wait leaves a permit: no wake-up is lost.
                self.0.wake.notified().await;
                continue;
            }
            let due = at + quiet;
            if Instant::now() >= due {
                return count;
            }
            tokio::time::sleep_until(due).await;
        }
    }

    /// Count every message on `events` (a node's VM changes) as activity, in a task of its
    /// own, until the channel closes.
    pub fn watch<T: Clone + Send + 'static>(&self, mut events: broadcast::Receiver<T>) {
        let me = self.clone();
        tokio::spawn(async move {
            // Lagged (more changes than the channel holds) is activity too.
            while let Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) = events.recv().await {
                me.touch();
            }
        });
    }
}

/// Forever: each time the daemon has gone quiet after some activity (start-up first),
/// release its code pages ([`release_code_pages`]).
pub async fn release_when_quiet(activity: Activity) {
    each_quiet(&activity, QUIET, || async {
        match tokio::task::spawn_blocking(release_code_pages).await {
            Ok(r) => tracing::debug!(
                mappings = r.mappings,
                kib = r.rss_kib,
                "daemon quiet: released its code pages"
            ),
            Err(e) => tracing::debug!(error = %e, "releasing code pages"),
        }
    })
    .await
}

/// Run `f` once each time `activity` has been quiet for `quiet` after something happened.
async fn each_quiet<F, Fut>(activity: &Activity, quiet: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut since = 0;
    loop {
        since = activity.settled(since, quiet).await;
        f().await;
    }
}

/// What [`release_code_pages`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings of the executable released.
    pub mappings: usize,
    /// Their resident KiB before.
    pub rss_kib: u64,
}

/// Unmap the executable's read-only pages (they stay in the page cache) and give the
/// allocator's free memory back to the kernel.
pub fn release_code_pages() -> Released {
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

/// A mapping [`release_code_pages`] may release.
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
        let r = release_code_pages();
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

    // The clock is tokio's paused one: it moves only when every task waits, so what these
    // tests see does not depend on the machine's load.

    #[tokio::test(start_paused = true)]
    async fn quiet_comes_only_after_the_last_touch() {
        let a = Activity::default();
        // Start-up is the first activity.
        assert_eq!(a.settled(0, QUIET).await, 1);
        // A burst: a touch every QUIET / 2, five times. The quiet starts after the last.
        let burst = {
            let a = a.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    tokio::time::sleep(QUIET / 2).await;
                    a.touch();
                }
            })
        };
        assert_eq!(
            a.settled(1, QUIET).await,
            6,
            "not in the middle of the burst"
        );
        burst.await.expect("burst");
        // Nothing since: no release, however long.
        assert!(
            tokio::time::timeout(QUIET * 100, a.settled(6, QUIET))
                .await
                .is_err()
        );
        a.touch();
        assert_eq!(a.settled(6, QUIET).await, 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_vm_change_is_activity() {
        let a = Activity::default();
        let (tx, rx) = broadcast::channel::<u32>(4);
        a.watch(rx);
        assert_eq!(a.settled(0, QUIET).await, 1);
        tx.send(7).expect("a receiver");
        assert_eq!(a.settled(1, QUIET).await, 2);
        // More than the channel holds at once: a lagging watcher still counts.
        for i in 0..10 {
            tx.send(i).expect("a receiver");
        }
        assert!(a.settled(2, QUIET).await > 2);
    }

    #[tokio::test(start_paused = true)]
    async fn one_release_per_quiet_spell() {
        let a = Activity::default();
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let runs_of =
            |r: &Arc<std::sync::atomic::AtomicUsize>| r.load(std::sync::atomic::Ordering::SeqCst);
        let task = {
            let (a, runs) = (a.clone(), runs.clone());
            tokio::spawn(async move {
                each_quiet(&a, QUIET, || {
                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async {}
                })
                .await
            })
        };
        // After start-up, once; then not again while nothing happens.
        tokio::time::sleep(QUIET * 10).await;
        assert_eq!(runs_of(&runs), 1);
        // A burst of work, then quiet: once more.
        for _ in 0..3 {
            a.touch();
            tokio::time::sleep(QUIET / 3).await;
        }
        assert_eq!(runs_of(&runs), 1, "not during the burst");
        tokio::time::sleep(QUIET * 10).await;
        assert_eq!(runs_of(&runs), 2);
        task.abort();
    }
}

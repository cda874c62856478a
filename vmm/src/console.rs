//! The serial console of a VM. QEMU serves it on a unix socket that accepts one client;
//! the node is that client and multiplexes: it keeps a bounded log (in memory, mirrored to
//! a size-capped file in the VM's run dir so it survives a daemon restart), fans live output
//! out to any number of attached clients, and forwards their keystrokes.
//!
//! It also watches the output for the boot timeline: the first byte, the guest's kernel and
//! init starting ([`crate::bootlog`]), and the first output that matches the VM's ready
//! pattern.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::broadcast;

use crate::VmmError;
use crate::bootlog::{GuestMark, GuestPhases};

/// Bytes of console output kept in memory per VM.
pub const LOG_CAPACITY: usize = 256 * 1024;
/// The on-disk mirror is rotated (to `.1`) past this size.
const FILE_CAPACITY: u64 = 1024 * 1024;
/// Bytes read from the console socket at once.
const READ_CHUNK: usize = 4096;
/// Chunks of live output kept for attached clients that fall behind (1 MiB at most).
const LIVE_CHUNKS: usize = 256;
/// Longest partial line kept for pattern matching.
const MAX_LINE: usize = 4096;

/// Boot milestones seen on the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Milestone {
    FirstByte,
    /// The guest's kernel started (may be reported again, earlier).
    KernelStarted,
    InitStarted,
    GuestReady,
}

/// What to watch for during one boot, and whom to tell.
pub struct BootWatch {
    pub pattern: regex::Regex,
    pub notify: Box<dyn Fn(Milestone, SystemTime) + Send + Sync>,
}

impl std::fmt::Debug for BootWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootWatch")
            .field("pattern", &self.pattern.as_str())
            .finish()
    }
}

struct WatchState {
    watch: BootWatch,
    seen_first: bool,
    line: Vec<u8>,
    guest: GuestPhases,
}

/// The console multiplexer of one VM. Cheap to clone.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

struct Inner {
    ring: Mutex<VecDeque<u8>>,
    live: broadcast::Sender<Bytes>,
    writer: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
    file: Option<PathBuf>,
    watch: Mutex<Option<WatchState>>,
}

impl Console {
    /// A console whose log is mirrored to `file` (loaded back from it if it exists).
    pub fn new(file: Option<PathBuf>) -> Self {
        // Grows with the output (most guests print a few KiB), up to LOG_CAPACITY.
        let mut ring = VecDeque::new();
        if let Some(data) = file.as_ref().and_then(|f| std::fs::read(f).ok()) {
            let start = data.len().saturating_sub(LOG_CAPACITY);
            ring.extend(&data[start..]);
        }
        // Chunks of up to READ_CHUNK bytes for attached clients; each slot costs memory
        // from the start, so not more than a slow client needs to catch up.
        let (live, _) = broadcast::channel(LIVE_CHUNKS);
        Console {
            inner: Arc::new(Inner {
                ring: Mutex::new(ring),
                live,
                writer: tokio::sync::Mutex::new(None),
                file,
                watch: Mutex::new(None),
            }),
        }
    }

    /// Watch the output from now on for the first byte and the ready pattern.
    pub fn set_boot_watch(&self, watch: Option<BootWatch>) {
        let state = watch.map(|watch| WatchState {
            watch,
            seen_first: false,
            line: Vec::new(),
            guest: GuestPhases::default(),
        });
        *self
            .inner
            .watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = state;
    }

    /// Take over a connected console socket: spawn the reader task and keep the write half.
    /// The task ends when QEMU closes the socket.
    pub async fn connect(&self, stream: UnixStream) -> tokio::task::JoinHandle<()> {
        let (mut rd, wr) = stream.into_split();
        *self.inner.writer.lock().await = Some(wr);
        let me = self.clone();
        tokio::spawn(async move {
            let mut file = me.open_file();
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => me.ingest(&buf[..n], &mut file),
                    Err(e) => {
                        tracing::debug!(error = %e, "console read ended");
                        break;
                    }
                }
            }
            *me.inner.writer.lock().await = None;
        })
    }

    fn open_file(&self) -> Option<File> {
        let path = self.inner.file.as_ref()?;
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open console log");
                None
            }
        }
    }

    fn ingest(&self, data: &[u8], file: &mut Option<File>) {
        let now = SystemTime::now();
        {
            let mut ring = self
                .inner
                .ring
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            ring.extend(data);
            let excess = ring.len().saturating_sub(LOG_CAPACITY);
            ring.drain(..excess);
        }
        // No receivers is fine: nobody is attached.
        let _ = self.inner.live.send(Bytes::copy_from_slice(data));
        if let (Some(f), Some(path)) = (file.as_mut(), self.inner.file.as_ref()) {
            if f.write_all(data).is_err() {
                *file = None;
            } else if f
                .metadata()
                .map(|m| m.len() > FILE_CAPACITY)
                .unwrap_or(false)
            {
                *file = rotate(path);
            }
        }
        self.watch_output(data, now);
    }

    fn watch_output(&self, data: &[u8], now: SystemTime) {
        let mut guard = self
            .inner
            .watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(st) = guard.as_mut() else { return };
        if !st.seen_first {
            st.seen_first = true;
            (st.watch.notify)(Milestone::FirstByte, now);
        }
        let mut matched = false;
        for &b in data {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&st.line);
                for (mark, at) in st.guest.line(&line, now) {
                    let m = match mark {
                        GuestMark::KernelStarted => Milestone::KernelStarted,
                        GuestMark::InitStarted => Milestone::InitStarted,
                    };
                    (st.watch.notify)(m, at);
                }
                if st.watch.pattern.is_match(&line) {
                    matched = true;
                    break;
                }
                st.line.clear();
            } else if st.line.len() < MAX_LINE {
                st.line.push(b);
            }
        }
        // A prompt like "login: " never ends its line: look at the partial line too.
        if !matched
            && st
                .watch
                .pattern
                .is_match(&String::from_utf8_lossy(&st.line))
        {
            matched = true;
        }
        if matched {
            (st.watch.notify)(Milestone::GuestReady, now);
            *guard = None;
        }
    }

    /// The whole log kept in memory.
    pub fn log(&self) -> Vec<u8> {
        let ring = self
            .inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ring.iter().copied().collect()
    }

    /// The last `n` bytes of the log and a receiver of everything after them, taken
    /// atomically so an attaching client neither misses nor repeats output.
    pub fn subscribe(&self, n: usize) -> (Vec<u8>, broadcast::Receiver<Bytes>) {
        let ring = self
            .inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let rx = self.inner.live.subscribe();
        let start = ring.len().saturating_sub(n);
        (ring.range(start..).copied().collect(), rx)
    }

    /// Type into the console.
    pub async fn write(&self, data: &[u8]) -> Result<(), VmmError> {
        let mut w = self.inner.writer.lock().await;
        let Some(wr) = w.as_mut() else {
            return Err(VmmError::WrongState {
                op: "write to the console",
                state: "not running".into(),
            });
        };
        wr.write_all(data)
            .await
            .map_err(|e| VmmError::io("write", "console socket", e))
    }

    /// Forget the in-memory log and the file (a VM deleted).
    pub fn clear(&self) {
        self.inner
            .ring
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

fn rotate(path: &Path) -> Option<File> {
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    if let Err(e) = std::fs::rename(path, &old) {
        tracing::warn!(path = %path.display(), error = %e, "cannot rotate console log");
    }
    OpenOptions::new().create(true).append(true).open(path).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn log_is_bounded_and_subscribers_get_what_follows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, mut b) = UnixStream::pair().expect("pair");
        let con = Console::new(Some(dir.path().join("console.log")));
        let task = con.connect(a).await;
        b.write_all(b"hello\n").await.expect("write");
        // Wait for the reader to take it in.
        for _ in 0..100 {
            if con.log() == b"hello\n" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (hist, mut rx) = con.subscribe(3);
        assert_eq!(hist, b"lo\n");
        b.write_all(&vec![b'x'; LOG_CAPACITY]).await.expect("write");
        let mut got = 0;
        while got < LOG_CAPACITY {
            got += rx.recv().await.expect("live output").len();
        }
        assert_eq!(con.log().len(), LOG_CAPACITY);
        assert!(con.log().iter().all(|c| *c == b'x'));
        // Input reaches the other side.
        con.write(b"ls\n").await.expect("console write");
        let mut buf = [0u8; 3];
        b.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ls\n");
        drop(b);
        task.await.expect("reader ends on EOF");
        assert!(con.write(b"x").await.is_err(), "no writer after EOF");
        // The file mirror reloads into a new console (daemon restart).
        let again = Console::new(Some(dir.path().join("console.log")));
        assert_eq!(again.log().len(), LOG_CAPACITY);
    }

    #[tokio::test]
    async fn boot_watch_sees_first_byte_and_prompt_without_newline() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        let con = Console::new(None);
        let first = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicUsize::new(0));
        let (f2, r2) = (first.clone(), ready.clone());
        con.set_boot_watch(Some(BootWatch {
            pattern: regex::Regex::new("login:").expect("regex"),
            notify: Box::new(move |m, _| match m {
                Milestone::FirstByte => {
                    f2.fetch_add(1, Ordering::SeqCst);
                }
                Milestone::GuestReady => {
                    r2.fetch_add(1, Ordering::SeqCst);
                }
                Milestone::KernelStarted | Milestone::InitStarted => {}
            }),
        }));
        let task = con.connect(a).await;
        b.write_all(b"booting\nDebian tty1\n").await.expect("write");
        b.write_all(b"host log").await.expect("write");
        b.write_all(b"in: ").await.expect("write");
        b.write_all(b"\nlogin: again\n").await.expect("write");
        drop(b);
        task.await.expect("reader ends");
        assert_eq!(first.load(Ordering::SeqCst), 1);
        assert_eq!(ready.load(Ordering::SeqCst), 1, "ready fires once");
    }
}

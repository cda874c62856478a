//! `kctl vm console`: the serial console.
//!
//! - Interactive (default): the terminal goes into raw mode (restored on every exit path by
//!   [`RawMode`]'s `Drop`), keystrokes go to the guest, Ctrl-] detaches. The first message
//!   of the AttachConsole stream is `ConsoleInput { vm, history_bytes: 4096 }`; later ones
//!   carry only `data`.
//! - Stdin not a terminal (`echo 'ls /' | kctl vm console web`): termios is left alone, the
//!   first message asks for no history, stdin is forwarded until EOF, and kctl exits once
//!   the guest has been quiet for 500 ms after that (5 s at most).
//! - `--follow`: read-only; the last 64 KiB of the log, then live output until Ctrl-C.
//! - `--tail N`: the last N lines of GetConsoleLog, then exit.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use kcore_proto::v1::{ConsoleInput, ConsoleLog, GetConsoleLogRequest};
use nix::sys::termios::{self, SetArg, Termios};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::ConsoleArgs;
use crate::endpoint::Client;
use crate::output::{self, Format};

/// Ctrl-]: detach.
pub const DETACH_BYTE: u8 = 0x1d;
/// Console log bytes replayed when attaching interactively.
pub const ATTACH_HISTORY: u32 = 4096;
/// Console log bytes replayed by `--follow`.
pub const FOLLOW_HISTORY: u32 = 64 * 1024;
/// After stdin EOF (non-interactive), exit once the guest is quiet this long...
const EOF_QUIET: Duration = Duration::from_millis(500);
/// ...or this long after EOF at the latest.
const EOF_MAX: Duration = Duration::from_secs(5);

/// `kctl vm console`.
pub async fn run(client: &Client, format: Format, args: ConsoleArgs) -> Result<()> {
    if let Some(n) = args.tail {
        return tail(client, format, args.name, n).await;
    }
    if args.follow {
        return follow(client, args.name).await;
    }
    attach(client, args.name).await
}

/// The last `n` lines of `data` (a trailing newline does not start a new line).
pub fn tail_lines(data: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return &data[i + 1..];
            }
        }
    }
    data
}

async fn tail(client: &Client, format: Format, vm: String, n: usize) -> Result<()> {
    let log = client
        .api()
        .get_console_log(GetConsoleLogRequest { vm })
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    let data = tail_lines(&log.data, n);
    if format != Format::Table {
        return output::print_structured(
            format,
            &ConsoleLog {
                data: data.to_vec(),
            },
        );
    }
    output::write_stdout(data)?;
    if std::io::stdout().is_terminal() && !data.is_empty() && !data.ends_with(b"\n") {
        output::write_stdout(b"\n")?;
    }
    Ok(())
}

async fn follow(client: &Client, vm: String) -> Result<()> {
    // Installed before any output, so a Ctrl-C right after it is caught.
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    // The sender stays alive (unused) so the request stream stays open.
    let (tx, rx) = mpsc::channel::<ConsoleInput>(1);
    tx.send(ConsoleInput {
        vm,
        data: Vec::new(),
        history_bytes: FOLLOW_HISTORY,
    })
    .await
    .map_err(|_| anyhow!("console request stream closed"))?;
    let mut inbound = client
        .api()
        .attach_console(ReceiverStream::new(rx))
        .await
        .map_err(|s| client.error(s))?
        .into_inner();
    loop {
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(out)) => output::write_stdout(&out.data)?,
                Ok(None) => break,
                Err(status) => return Err(client.error(status).into()),
            },
            _ = interrupt.recv() => break,
        }
    }
    drop(tx);
    Ok(())
}

/// What the stdin thread reports.
enum StdinEvent {
    Data(Vec<u8>),
    Detach,
    Eof,
    Failed(std::io::Error),
}

async fn attach(client: &Client, vm: String) -> Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let (tx, rx) = mpsc::channel::<ConsoleInput>(64);
    tx.send(ConsoleInput {
        vm: vm.clone(),
        data: Vec::new(),
        history_bytes: if interactive { ATTACH_HISTORY } else { 0 },
    })
    .await
    .map_err(|_| anyhow!("console request stream closed"))?;
    let mut inbound = client
        .api()
        .attach_console(ReceiverStream::new(rx))
        .await
        .map_err(|s| client.error(s))?
        .into_inner();

    if interactive {
        eprintln!("Connected to {vm} (Ctrl-] to detach)");
    }
    let raw = if interactive {
        Some(RawMode::enable()?)
    } else {
        None
    };

    let (stdin_tx, mut stdin_rx) = mpsc::channel::<StdinEvent>(16);
    spawn_stdin_reader(stdin_tx, interactive)?;
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;

    let mut stdin_open = true;
    // Set after stdin EOF: (quiet deadline, hard deadline).
    let mut eof: Option<(Instant, Instant)> = None;
    loop {
        let deadline = eof.map(|(quiet, max)| quiet.min(max));
        let grace = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(out)) => {
                    output::write_stdout(&out.data)?;
                    if let Some((quiet, _)) = eof.as_mut() {
                        *quiet = Instant::now() + EOF_QUIET;
                    }
                }
                Ok(None) => {
                    if interactive {
                        eprint!("\r\nConsole of {vm} closed by the server\r\n");
                    }
                    break;
                }
                Err(status) => {
                    drop(raw);
                    return Err(client.error(status).into());
                }
            },
            event = stdin_rx.recv(), if stdin_open => match event {
                Some(StdinEvent::Data(data)) => {
                    let input = ConsoleInput { data, ..Default::default() };
                    if tx.send(input).await.is_err() {
                        // The request stream is gone; the response stream will tell why.
                        stdin_open = false;
                    }
                }
                Some(StdinEvent::Detach) => {
                    eprint!("\r\nDetached from {vm}\r\n");
                    break;
                }
                Some(StdinEvent::Eof) | None => {
                    stdin_open = false;
                    if interactive {
                        break;
                    }
                    let now = Instant::now();
                    eof = Some((now + EOF_QUIET, now + EOF_MAX));
                }
                Some(StdinEvent::Failed(e)) => {
                    drop(raw);
                    return Err(e).context("reading stdin");
                }
            },
            () = grace => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => break,
        }
    }
    drop(raw);
    Ok(())
}

/// Reads stdin on a plain thread (a blocked read must not keep the runtime from shutting
/// down) and reports chunks; with `detect_escape`, Ctrl-] ends the session.
fn spawn_stdin_reader(tx: mpsc::Sender<StdinEvent>, detect_escape: bool) -> Result<()> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 4096];
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.blocking_send(StdinEvent::Eof);
                        return;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.blocking_send(StdinEvent::Failed(e));
                        return;
                    }
                };
                let chunk = &buf[..n];
                if detect_escape && let Some(pos) = chunk.iter().position(|&b| b == DETACH_BYTE) {
                    if pos > 0 {
                        let _ = tx.blocking_send(StdinEvent::Data(chunk[..pos].to_vec()));
                    }
                    let _ = tx.blocking_send(StdinEvent::Detach);
                    return;
                }
                if tx.blocking_send(StdinEvent::Data(chunk.to_vec())).is_err() {
                    return;
                }
            }
        })
        .context("starting the stdin thread")?;
    Ok(())
}

/// Puts the terminal on stdin into raw mode; dropping it (also while unwinding from a
/// panic) restores the saved settings.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Saves the current settings and switches to raw mode.
    pub fn enable() -> Result<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).context("reading terminal settings")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw).context("entering raw mode")?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_n_lines() {
        let log = b"one\ntwo\nthree\n";
        assert_eq!(tail_lines(log, 1), b"three\n");
        assert_eq!(tail_lines(log, 2), b"two\nthree\n");
        assert_eq!(tail_lines(log, 3), log);
        assert_eq!(tail_lines(log, 10), log);
        assert_eq!(tail_lines(log, 0), b"");
        // No trailing newline: the partial last line counts as a line.
        assert_eq!(tail_lines(b"one\ntwo\nlogin: ", 1), b"login: ");
        assert_eq!(tail_lines(b"one\ntwo\nlogin: ", 2), b"two\nlogin: ");
        // Serial consoles send CRLF.
        assert_eq!(tail_lines(b"a\r\nb\r\nc\r\n", 2), b"b\r\nc\r\n");
        assert_eq!(tail_lines(b"", 3), b"");
        assert_eq!(tail_lines(b"\n\n", 1), b"\n");
    }
}

//! `kctl vm console`.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::common::texts::*;
use super::common::*;

#[test]
fn console_piped_stdin_and_tail() {
    let server = Server::unix();
    let out = run(server.command(&["vm", "console", "web"]), b"ls /\n");
    assert_eq!(ok(&out), "echo:ls /\n");
    let first = recorded(&server.records.console_first);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].vm, "web");
    assert_eq!(first[0].history_bytes, 0);
    assert!(first[0].data.is_empty());

    assert_eq!(
        ok(&server.kctl(&["vm", "console", "web", "--tail", "2"])),
        "three\r\nlogin: "
    );
    let not_found = format!("Error: {} (NotFound)\n", NO_VM.fill(&["nope"]));
    let err = failed(&server.kctl(&["vm", "console", "nope", "--tail", "2"]));
    assert_eq!(err, not_found);
    let err = failed(&run(server.command(&["vm", "console", "nope"]), b""));
    assert_eq!(err, not_found);
    // A stopped VM has its log, and no live console.
    assert_eq!(
        ok(&server.kctl(&["vm", "console", "db", "--tail", "1"])),
        "login: "
    );
    let err = failed(&run(server.command(&["vm", "console", "db"]), b""));
    assert_eq!(
        err,
        format!(
            "Error: {} (FailedPrecondition)\n",
            CONSOLE_NOT_LIVE.fill(&["db", "STOPPED", "db"])
        )
    );
    assert_eq!(recorded(&server.records.console_first).len(), 1);
}

#[test]
fn console_follow_until_ctrl_c() {
    let server = Server::unix();
    let mut command = server.command(&["vm", "console", "web", "--follow"]);
    let mut child = command.spawn().expect("spawn");
    let rx = stdout_watcher(&mut child);
    // The log (all of it: less than the 64 KiB asked for), then the live console.
    assert_eq!(wait_for(&rx, "login: ").as_bytes(), CONSOLE_LOG);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let output = wait(child, Duration::from_secs(20));
    assert!(output.status.success(), "{:?}", output.status);
    let first = recorded(&server.records.console_first);
    assert_eq!(first[0].history_bytes, 65536);
}

#[test]
fn console_interactive_on_a_tty_detaches_and_restores_termios() {
    use nix::sys::termios::{LocalFlags, tcgetattr};

    let server = Server::unix();
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let before = tcgetattr(&pty.slave).expect("tcgetattr");
    assert!(before.local_flags.contains(LocalFlags::ICANON));

    let mut command = server.command(&["vm", "console", "web"]);
    command.stdin(Stdio::from(pty.slave.try_clone().expect("dup slave")));
    let mut child = command.spawn().expect("spawn");
    let rx = stdout_watcher(&mut child);

    // Wait for kctl to put the terminal in raw mode.
    let deadline = Instant::now() + Duration::from_secs(20);
    while tcgetattr(&pty.slave)
        .expect("tcgetattr")
        .local_flags
        .contains(LocalFlags::ICANON)
    {
        assert!(Instant::now() < deadline, "kctl never entered raw mode");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut master = std::fs::File::from(pty.master);
    master.write_all(b"hi").expect("type");
    let log = text(CONSOLE_LOG);
    assert_eq!(wait_for(&rx, "echo:hi"), format!("{log}echo:hi"));
    assert_eq!(
        recorded(&server.records.console_first)[0].history_bytes,
        4096
    );
    master.write_all(&[0x1d]).expect("Ctrl-]");

    let output = wait(child, Duration::from_secs(20));
    assert!(output.status.success(), "{:?}", output.status);
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("Connected to web (Ctrl-] to detach)\n"),
        "{stderr}"
    );
    assert!(stderr.ends_with("\r\nDetached from web\r\n"), "{stderr}");

    let after = tcgetattr(&pty.slave).expect("tcgetattr");
    assert_eq!(after.local_flags, before.local_flags);
    assert_eq!(after.input_flags, before.input_flags);
    assert_eq!(after.output_flags, before.output_flags);
}

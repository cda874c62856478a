//! The command runner seam: every external tool (qemu-img, lvm2) is run through a
//! [`Runner`], with an argv and never a shell.
//!
//! Runners are synchronous: a command blocks the calling thread until it exits (a
//! `qemu-img convert` of a large image takes minutes). The daemon calls the storage API
//! from `tokio::task::spawn_blocking`, never directly on an async worker thread. Tests and
//! the daemon's own unit tests can plug in a fake runner that records argvs.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use crate::StorageError;

/// What a finished command left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit code, or None if the command was killed by a signal.
    pub code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// A successful output with this stdout (for fake runners).
    pub fn ok(stdout: impl Into<Vec<u8>>) -> Self {
        Output {
            code: Some(0),
            signal: None,
            stdout: stdout.into(),
            stderr: Vec::new(),
        }
    }

    /// A failed output with this exit code and stderr (for fake runners).
    pub fn failed(code: i32, stderr: impl Into<Vec<u8>>) -> Self {
        Output {
            code: Some(code),
            signal: None,
            stdout: Vec::new(),
            stderr: stderr.into(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The status as a human reads it: "exit code 5", "killed by signal 9".
    pub fn status(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "unknown status".to_string(),
        }
    }
}

/// Runs external programs. Implementations must not involve a shell.
pub trait Runner: Send + Sync + std::fmt::Debug {
    /// Run `argv` (program first) to completion and return what it left, whatever its
    /// exit status. Fails only if the program could not be started.
    fn output(&self, argv: &[String]) -> Result<Output, StorageError>;

    /// Run `argv`; a non-zero exit becomes [`StorageError::CommandFailed`] carrying the
    /// tool's stderr.
    fn run(&self, argv: &[String]) -> Result<Output, StorageError> {
        let out = self.output(argv)?;
        if out.success() {
            Ok(out)
        } else {
            Err(StorageError::CommandFailed {
                argv: argv.to_vec(),
                status: out.status(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }
}

/// The real runner: `std::process::Command`, stdin from /dev/null, stdout and stderr
/// captured, `LC_ALL=C` so that tool messages are stable.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn output(&self, argv: &[String]) -> Result<Output, StorageError> {
        let (program, args) = argv.split_first().ok_or_else(|| StorageError::Spawn {
            program: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty argv"),
        })?;
        tracing::debug!(argv = %crate::error::display_argv(argv), "running");
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .env("LC_ALL", "C")
            // lvm2 complains about any inherited descriptor; std's are close-on-exec, but
            // the daemon may hold others (e.g. from systemd).
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .output()
            .map_err(|e| StorageError::Spawn {
                program: program.clone(),
                source: e,
            })?;
        let result = Output {
            code: out.status.code(),
            signal: out.status.signal(),
            stdout: out.stdout,
            stderr: out.stderr,
        };
        if !result.success() {
            tracing::debug!(
                argv = %crate::error::display_argv(argv),
                status = %result.status(),
                stderr = %String::from_utf8_lossy(&result.stderr).trim(),
                "command failed"
            );
        }
        Ok(result)
    }
}

/// Build an argv from anything string-like.
pub fn argv<I, S>(parts: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    parts.into_iter().map(Into::into).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_without_a_shell_and_captures_output() {
        let out = SystemRunner
            .run(&argv(["/bin/echo", "a;b", "$HOME"]))
            .expect("echo runs");
        // No shell: the metacharacters reach echo verbatim.
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a;b $HOME\n");
    }

    #[test]
    fn failure_carries_status_and_stderr() {
        let err = SystemRunner
            .run(&argv(["/bin/ls", "/nonexistent-kcore-path"]))
            .expect_err("ls fails");
        match &err {
            StorageError::CommandFailed {
                argv,
                status,
                stderr,
            } => {
                assert_eq!(argv[0], "/bin/ls");
                assert_eq!(status, "exit code 2");
                assert!(stderr.contains("No such file or directory"), "{stderr}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let shown = err.to_string();
        assert!(shown.contains("/bin/ls /nonexistent-kcore-path"), "{shown}");
        assert!(shown.contains("No such file or directory"), "{shown}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = SystemRunner
            .run(&argv(["kcore-no-such-program"]))
            .expect_err("not installed");
        assert!(matches!(err, StorageError::Spawn { .. }), "{err:?}");
    }
}

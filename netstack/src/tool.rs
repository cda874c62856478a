//! The helper programs kcore runs (`nft`, `dnsmasq`, `ip` in tests): finding them with a
//! clear error naming the Debian package when one is missing, and running one with an
//! argv (never through a shell), optionally feeding it stdin.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::NetError;

/// A helper program and the Debian package that ships it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    pub package: &'static str,
}

/// `nft`, from nftables.
pub const NFT: Tool = Tool {
    name: "nft",
    package: "nftables",
};

/// `dnsmasq`, from dnsmasq-base (the daemon without the system service).
pub const DNSMASQ: Tool = Tool {
    name: "dnsmasq",
    package: "dnsmasq-base",
};

/// `ip`, from iproute2.
pub const IP: Tool = Tool {
    name: "ip",
    package: "iproute2",
};

/// Directories searched after `$PATH`: the sbin ones are often missing from a service's
/// or a user's `$PATH`.
const FALLBACK_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The full path of `tool`, or [`NetError::ToolMissing`] naming its package.
pub fn find(tool: Tool) -> Result<PathBuf, NetError> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path_var).chain(FALLBACK_DIRS.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(tool.name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(NetError::ToolMissing {
        tool: tool.name,
        package: tool.package,
    })
}

/// Run `tool args...` (no shell), feed it `stdin` if given, wait, and return its stdout.
/// A non-zero exit is [`NetError::CommandFailed`] with its stderr.
pub async fn run(tool: Tool, args: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
    let program = find(tool)?;
    tracing::debug!(program = %program.display(), ?args, "running");
    let mut child = tokio::process::Command::new(&program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| NetError::io("spawn", &program, e))?;
    if let Some(input) = stdin
        && let Some(mut pipe) = child.stdin.take()
    {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|e| NetError::io("write stdin of", &program, e))?;
        // Dropping the pipe closes it: the program sees end of file.
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| NetError::io("wait for", &program, e))?;
    if !out.status.success() {
        return Err(NetError::CommandFailed {
            program: format!("{} {}", tool.name, args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_the_package() {
        let err = find(Tool {
            name: "kcore-no-such-tool",
            package: "kcore-no-such-package",
        })
        .expect_err("missing");
        assert_eq!(
            err.to_string(),
            "kcore-no-such-tool not found: install the Debian package kcore-no-such-package"
        );
    }

    #[tokio::test]
    async fn run_reports_exit_status_and_stderr() {
        let sh = Tool {
            name: "sh",
            package: "dash",
        };
        let out = run(sh, &["-c", "cat"], Some("hello")).await.expect("sh");
        assert_eq!(out, "hello");
        let err = run(sh, &["-c", "echo oops >&2; exit 3"], None)
            .await
            .expect_err("fails");
        let msg = err.to_string();
        assert!(msg.contains("oops") && msg.contains('3'), "{msg}");
    }
}

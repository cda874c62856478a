//! Running the command-line tools the benchmark times (`kctl`, `virsh`) or needs.

use std::ffi::OsStr;
use std::time::Instant;

use anyhow::{Context, bail};
use kcore_bench::ms_since;

/// Run `program args...`; its stdout, or an error with its stderr when it fails.
pub async fn cmd<I, S>(program: &str, args: I) -> anyhow::Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Ok(timed(program, args).await?.1)
}

/// Run `program args...` and time it (spawn -> exit, in ms); its stdout, or an error with
/// its stderr when it fails.
pub async fn timed<I, S>(program: &str, args: I) -> anyhow::Result<(f64, String)>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let shown = std::iter::once(program.to_string())
        .chain(
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = tokio::process::Command::new(program);
    c.args(&args).stdin(std::process::Stdio::null());
    let t = Instant::now();
    let out = c.output().await.with_context(|| format!("run {shown}"))?;
    let ms = ms_since(t);
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((ms, String::from_utf8_lossy(&out.stdout).into_owned()))
}

//! kcore-mcp: a Model Context Protocol server for kcore, so AI agents can list, create,
//! watch and (when allowed) stop and delete VMs through the same gRPC API as everyone else.
//!
//! `kcore-mcp [--endpoint URL] [--allow-write [--allow-destructive]] [--listen ADDR]`:
//! MCP over stdio (what desktop agents launch), or Streamable HTTP at
//! `http://ADDR/mcp` on a loopback address. It finds kcore exactly as kctl does
//! (`--endpoint`, `$KCORE_ENDPOINT` with `$KCORE_CA_CERT`, `$KCORE_CLIENT_CERT`,
//! `$KCORE_CLIENT_KEY`, the local socket, `~/.config/kcore/config.toml`) and logs to stderr
//! (stdout is the protocol on stdio). See docs/mcp.md.

mod access;
mod error;
mod http;
mod registry;
mod server;
mod tools;
mod views;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use kcore_client::endpoint;
use rmcp::ServiceExt;

use crate::access::Policy;
use crate::registry::Kcore;
use crate::server::KcoreMcp;

/// kcore-mcp: an MCP server for kcore (read-only unless allowed).
#[derive(Debug, Parser)]
#[command(name = "kcore-mcp", version, about)]
struct Cli {
    /// The controller: unix:///path/to/kcore.sock or https://host:port. Default:
    /// $KCORE_ENDPOINT, then the local socket if it exists ($KCORE_SOCKET, a path; default
    /// /run/kcore/kcore.sock), then `endpoint` in ~/.config/kcore/config.toml.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,

    /// Offer the tools that create or change things (create, start, stop, reboot, pause,
    /// resume, import an image, cordon).
    #[arg(long)]
    allow_write: bool,

    /// Also offer the destructive tools (delete, force stop, drain, QMP commands other than
    /// query-*).
    #[arg(long, requires = "allow_write")]
    allow_destructive: bool,

    /// Serve Streamable HTTP at http://ADDR/mcp (a loopback address, e.g. 127.0.0.1:8931)
    /// instead of stdio.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// What to log, in RUST_LOG syntax (to stderr).
    #[arg(long, env = "KCORE_MCP_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config_path = endpoint::default_config_path(&endpoint::process_env);
    let resolved = endpoint::resolve(
        cli.endpoint.as_deref(),
        &endpoint::process_env,
        &endpoint::local_socket(&endpoint::process_env),
        config_path.as_deref(),
    )?;
    let ceiling = access::ceiling_of(&resolved)?;
    let policy = Policy {
        allow_write: cli.allow_write,
        allow_destructive: cli.allow_destructive,
        ceiling,
    };
    tracing::info!(endpoint = %resolved.raw, "kcore-mcp {}: {}", env!("CARGO_PKG_VERSION"), policy.describe());
    let server = KcoreMcp::new(Arc::new(Kcore::new(resolved, policy)));
    let offered: Vec<&str> = server.offered().map(|t| t.meta.name).collect();
    tracing::info!("tools: {}", offered.join(", "));
    match cli.listen {
        Some(addr) => http::serve(server, addr).await,
        None => {
            let running = server
                .serve(rmcp::transport::stdio())
                .await
                .context("starting MCP on stdio")?;
            tokio::select! {
                r = running.waiting() => { r.context("serving MCP on stdio")?; }
                () = shutdown_signal() => {}
            }
            Ok(())
        }
    }
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

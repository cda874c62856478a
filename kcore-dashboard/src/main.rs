//! `kcore-dashboard`: a read-only web dashboard of a kcore cluster, served on `--listen`
//! (127.0.0.1:8080). It is a plain client of the public API and connects exactly as
//! `kctl` does (`--endpoint`, `KCORE_ENDPOINT` and the other `KCORE_*` variables, the local
//! socket, `~/.config/kcore/config.toml`); a viewer certificate is all it needs. Pages are
//! HTML rendered on the server (maud); a few lines of script refresh them as events come.
//! Nothing it serves changes anything: every method but GET and HEAD gets 405.

mod api;
mod app;
mod charts;
mod error;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use kcore_client::endpoint;

#[derive(Parser, Debug)]
#[command(
    name = "kcore-dashboard",
    version,
    about = "Read-only web dashboard of a kcore cluster"
)]
struct Cli {
    /// Where to serve the dashboard (plain HTTP: keep it on loopback, or put a TLS proxy
    /// with authentication in front of it).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: SocketAddr,
    /// The controller: unix:///path/to/kcore.sock or https://host:port. Default:
    /// $KCORE_ENDPOINT, then the local socket if it exists ($KCORE_SOCKET, a path; default
    /// /run/kcore/kcore.sock), then `endpoint` in ~/.config/kcore/config.toml.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config_path = endpoint::default_config_path(&endpoint::process_env);
    let resolved = endpoint::resolve(
        cli.endpoint.as_deref(),
        &endpoint::process_env,
        &endpoint::local_socket(&endpoint::process_env),
        config_path.as_deref(),
    )?;
    let api = api::Api::new(resolved);
    tracing::info!(
        endpoint = api.endpoint(),
        identity = api.identity(),
        "kcore API"
    );
    let state = Arc::new(app::AppState { api });
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("--listen {}: bind", cli.listen))?;
    tracing::info!(listen = %cli.listen, "serving the dashboard on http://{}/", cli.listen);
    axum::serve(listener, app::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")?;
    Ok(())
}

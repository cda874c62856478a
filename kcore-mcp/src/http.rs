//! Streamable HTTP on a loopback address: `POST/GET/DELETE http://ADDR/mcp` (rmcp's
//! `StreamableHttpService`, one session per client). kcore-mcp has no authentication of its
//! own, so it listens only on loopback, accepts only loopback `Host` headers (DNS
//! rebinding) and refuses any request a browser marks with an `Origin`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::server::KcoreMcp;

/// The path the MCP endpoint is served at.
pub const PATH: &str = "/mcp";

/// Serve `server` on `addr` until Ctrl-C or SIGTERM.
pub async fn serve(server: KcoreMcp, addr: SocketAddr) -> Result<()> {
    if !addr.ip().is_loopback() {
        bail!(
            "--listen {addr}: kcore-mcp serves HTTP only on a loopback address (it has no \
             authentication of its own; anyone who reaches it acts with its certificate)"
        );
    }
    let shutdown = CancellationToken::new();
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts([
            "localhost".to_string(),
            "127.0.0.1".into(),
            "::1".into(),
            addr.ip().to_string(),
        ])
        .enforce_origin_validation()
        .with_cancellation_token(shutdown.child_token());
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new().nest_service(PATH, service);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr().context("the listener's address")?;
    tracing::info!("serving MCP over Streamable HTTP at http://{local}{PATH}");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            crate::shutdown_signal().await;
            shutdown.cancel();
        })
        .await
        .context("serving HTTP")
}

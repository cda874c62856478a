//! Prometheus metrics of the daemon, served on an opt-in `--metrics-listen ADDR` at
//! `/metrics` (Prometheus text 0.0.4; OpenMetrics 1.0 to a scraper that asks for it), made
//! with the `prometheus-client` crate. What is there (names, types, labels) is listed in
//! docs/metrics.md:
//!
//! - [`rpc`]: every gRPC server's calls by method and code, and their latency;
//! - [`daemon`]: QMP command latency (node), heartbeats and reconciliation (controller);
//! - [`vm`]: the node's VMs (CPU, memory, disks, NICs, state, restarts, boot timings);
//! - [`cluster`]: the controller's nodes (capacity, allocation, VMs by state, heartbeat
//!   age, pools).
//!
//! Counters kept as things happen cost a map lookup each; the collectors read files and
//! the store at scrape time, on a blocking thread, bounded by [`SCRAPE_TIMEOUT`].

pub mod cluster;
pub mod daemon;
pub mod rpc;
pub mod vm;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The longest a scrape may take before it is answered 503.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Labels of a series written by a collector.
pub type Labels = Vec<(&'static str, String)>;

/// Write one family: its descriptor, then each row's labels and value.
pub fn encode_rows<M: EncodeMetric>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: Vec<(Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let mut family = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in &rows {
        metric.encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

/// The daemon's registry while it is being put together, with the families every role
/// shares.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub rpc: rpc::RpcMetrics,
    pub qmp: daemon::QmpMetrics,
}

impl Metrics {
    /// `role` (all-in-one, node, controller) goes into `kcore_build_info`; `known_rpcs`
    /// are the gRPC paths the servers answer (see [`rpc`]).
    pub fn new(role: &str, known_rpcs: std::collections::HashSet<String>) -> Metrics {
        let mut registry = Registry::default();
        registry.register(
            "kcore_build",
            "The daemon's version and role",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("role", role.to_string()),
            ]),
        );
        let rpc = rpc::RpcMetrics::new(known_rpcs);
        rpc.register(&mut registry);
        let qmp = daemon::QmpMetrics::default();
        qmp.register(&mut registry);
        registry.register(
            "kcore_process_start_time_seconds",
            "When the daemon started (unix epoch)",
            ConstGauge::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0),
            ),
        );
        Metrics { registry, rpc, qmp }
    }

    pub fn registry(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Serve `/metrics` on `addr` from now on.
    pub async fn serve(self, addr: SocketAddr) -> anyhow::Result<()> {
        let registry = Arc::new(self.registry);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |headers: HeaderMap| scrape(registry.clone(), headers)),
        );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics-listen {addr}: bind"))?;
        tracing::info!(listen = %addr, "serving Prometheus metrics at /metrics");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "metrics server stopped");
            }
        });
        Ok(())
    }
}

/// Whether the scraper prefers OpenMetrics.
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"))
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn scrape(registry: Arc<Registry>, headers: HeaderMap) -> Response {
    let open = wants_openmetrics(&headers);
    let encode = tokio::task::spawn_blocking(move || {
        let mut text = String::with_capacity(64 * 1024);
        let r = if open {
            prometheus_client::encoding::text::encode(&mut text, &registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        };
        r.map(|()| text)
    });
    match tokio::time::timeout(SCRAPE_TIMEOUT, encode).await {
        Ok(Ok(Ok(text))) => {
            let ctype = if open {
                OPENMETRICS
            } else {
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE
            };
            ([(header::CONTENT_TYPE, ctype)], text).into_response()
        }
        Ok(Ok(Err(e))) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding failed: {e}\n"),
        )
            .into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("scrape failed: {e}\n"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("scrape took over {} s\n", SCRAPE_TIMEOUT.as_secs()),
        )
            .into_response(),
    }
}

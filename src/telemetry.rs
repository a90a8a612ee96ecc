//! Prometheus metrics: one recorder per process (the `metrics` facade with its Prometheus
//! exporter), rendered by ingest at `/metrics` and, for the other services, by a small
//! listener at `[metrics] listen`. Names and units follow Prometheus conventions
//! (`_total` counters, `_seconds` histograms); `docs/operations.md` lists them.

use std::sync::OnceLock;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Stage and provider durations, in seconds: from a quick store to a slow model.
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// The process's recorder, installed on first use (every service calls this at start).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("the buckets are not empty")
            .install_recorder()
            .expect("huiying installs the only metrics recorder of its process");
        metrics::gauge!("huiying_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// The metrics in Prometheus' text format.
pub fn render() -> String {
    handle().render()
}

/// Serves `GET /metrics` at `listen` until `shutdown` fires (generator, store, mailer and
/// webhook; ingest has its own route). One per process: `huiying up` runs one for all.
pub async fn serve(listen: String, shutdown: CancellationToken) -> anyhow::Result<()> {
    handle();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} ([metrics] listen): {e}"))?;
    tracing::info!(address = %listen, "metrics at /metrics");
    let app = Router::new().route("/metrics", get(|| async { render() }));
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}

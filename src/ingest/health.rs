//! `GET /health`: whether ingest can queue jobs, and which services are running.
//!
//! Every service answers NATS service pings while it runs ([`Service::ping_subject`]); one that
//! does not answer within a second is named as missing and the status is `degraded`.
//! The answer stays 200 while ingest can queue (jobs wait for the missing service); it is
//! 503 only when NATS is unreachable.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AppState;
use crate::contract::services::Service;

/// How long a service may take to answer its ping.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

#[utoipa::path(
    get, path = "/health", tag = "operations", summary = "Which services are alive",
    responses((status = 200, description = "ok or degraded (naming what is missing)", body = serde_json::Value),
        (status = 503, description = "NATS is unreachable", body = serde_json::Value))
)]
pub(super) async fn health(State(state): State<AppState>) -> Response {
    let connected = state.publisher.is_connected();
    let pinged = Service::ALL.into_iter().filter_map(|service| Some((service.name(), service.ping_subject()?)));
    let pings = pinged.map(|(name, subject)| {
        let store = state.store.clone();
        async move {
            let answered = connected
                && matches!(
                    tokio::time::timeout(PING_TIMEOUT, store.request(subject, Default::default())).await,
                    Ok(Ok(_))
                );
            (name, answered)
        }
    });
    let answers = futures::future::join_all(pings).await;
    let missing: Vec<&str> = answers.iter().filter(|(_, up)| !up).map(|(name, _)| *name).collect();
    let services: Map<String, Value> =
        answers.iter().map(|(name, up)| (name.to_string(), json!(if *up { "up" } else { "down" }))).collect();
    let body = json!({
        "status": if connected && missing.is_empty() { "ok" } else { "degraded" },
        "timestamp": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        "version": env!("CARGO_PKG_VERSION"),
        "nats": if connected { "connected" } else { "disconnected" },
        "services": services,
        "missing": missing,
    });
    let status = if connected { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

//! `GET /health`: whether ingest can queue jobs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AppState;

pub(super) async fn health(State(state): State<AppState>) -> Response {
    let connected = state.publisher.is_connected();
    let body = json!({
        "status": if connected { "ok" } else { "degraded" },
        "timestamp": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        "version": env!("CARGO_PKG_VERSION"),
        "nats": if connected { "connected" } else { "disconnected" },
    });
    let status = if connected { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

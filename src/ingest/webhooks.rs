//! `GET /webhooks` and `GET /webhooks/deliveries`: read-only views of the endpoints and
//! the delivery log (no secret is ever shown).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AppState;
use super::error::ApiError;
use crate::contract::webhooks::DeliveryState;

fn unavailable(error: crate::parts::PartError) -> ApiError {
    tracing::warn!(%error, "cannot read the webhook log");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the webhook log (NATS) is unavailable; try again shortly")
}

#[utoipa::path(
    get, path = "/webhooks", tag = "operations", summary = "Configured webhook endpoints and their health",
    responses((status = 200, body = serde_json::Value))
)]
pub(super) async fn endpoints(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut endpoints = Vec::new();
    for endpoint in &state.settings.webhooks.endpoints {
        let id = endpoint.id();
        let health = state.logs.webhook_states.get(&id).await.map_err(unavailable)?.unwrap_or_default();
        endpoints.push(json!({
            "id": id,
            "url": endpoint.url,
            "events": endpoint.events,
            "enabled": endpoint.enabled && !health.disabled,
            "disabled_reason": health.reason,
            "failing_since": health.failing_since.and_then(|t| t.format(&Rfc3339).ok()),
        }));
    }
    Ok(Json(json!({ "endpoints": endpoints })).into_response())
}

/// `?failed=true` for those given up, `?since=<RFC 3339>` for those touched since.
#[utoipa::path(
    get, path = "/webhooks/deliveries", tag = "operations", summary = "Recent webhook deliveries",
    responses((status = 200, body = serde_json::Value))
)]
pub(super) async fn deliveries(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if let Some(unknown) = params.keys().find(|k| !["failed", "since"].contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!("unknown parameter {unknown:?}; known: failed, since")));
    }
    let failed = match params.get("failed").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(ApiError::bad_request(format!("failed must be true or false, got {other:?}"))),
    };
    let since = params
        .get("since")
        .map(|text| {
            OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
                ApiError::bad_request(format!("since must be a time like 2026-12-01T08:00:00Z, got {text:?}"))
            })
        })
        .transpose()?;
    let log = &state.logs.webhook_deliveries;
    let mut deliveries = Vec::new();
    for key in log.keys().await.map_err(unavailable)? {
        if let Some(delivery) = log.get(&key).await.map_err(unavailable)? {
            deliveries.push(delivery);
        }
    }
    deliveries.retain(|d| (!failed || d.state == DeliveryState::Failed) && since.is_none_or(|s| d.updated_at >= s));
    deliveries.sort_by_key(|d| d.updated_at);
    Ok(Json(json!({ "deliveries": deliveries })).into_response())
}

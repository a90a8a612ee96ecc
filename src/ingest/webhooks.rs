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
use super::access::Caller;
use super::error::ApiError;
use crate::contract::webhooks::{Delivery, DeliveryState};
use crate::redact;

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
            "url": redact::url(&endpoint.url),
            "events": endpoint.events,
            "enabled": endpoint.enabled && !health.disabled,
            "disabled_reason": health.reason,
            "failing_since": health.failing_since.and_then(|t| t.format(&Rfc3339).ok()),
        }));
    }
    Ok(Json(json!({ "endpoints": endpoints })).into_response())
}

/// The most deliveries one answer holds (each is a few hundred bytes with its attempts).
const MAX_DELIVERIES_PAGE: u32 = 500;

/// `?failed=true` for those given up, `?since=<RFC 3339>` for those touched since,
/// `?page=` and `?limit=` (at most 500, default 100): oldest first.
#[utoipa::path(
    get, path = "/webhooks/deliveries", tag = "operations", summary = "Recent webhook deliveries, a page at a time",
    params(("failed" = Option<bool>, Query), ("since" = Option<String>, Query),
        ("page" = Option<u32>, Query), ("limit" = Option<u32>, Query, description = "at most 500; default 100")),
    responses((status = 200, body = serde_json::Value))
)]
pub(super) async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    const KNOWN: [&str; 4] = ["failed", "since", "page", "limit"];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!("unknown parameter {unknown:?}; known: {}", KNOWN.join(", "))));
    }
    let page = super::records::page_number(&params, "page", 1, u32::MAX)?;
    let limit = super::records::page_number(&params, "limit", 100, MAX_DELIVERIES_PAGE)?;
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
    deliveries.retain(|d| {
        caller.may_see(d.task.owner.as_deref())
            && (!failed || d.state == DeliveryState::Failed)
            && since.is_none_or(|s| d.updated_at >= s)
    });
    deliveries.sort_by_key(|d| d.updated_at);
    let total = deliveries.len() as u64;
    let skipped = (u64::from(page) - 1) * u64::from(limit);
    let deliveries: Vec<_> = deliveries.into_iter().skip(skipped as usize).take(limit as usize).map(shown).collect();
    let pages = total.div_ceil(u64::from(limit));
    Ok(Json(json!({ "deliveries": deliveries, "total": total, "page": page, "limit": limit, "pages": pages }))
        .into_response())
}

/// A delivery as it may be shown: the URL never whole (it may be a robot's credential),
/// nor in what the endpoint answered. The body holds no target (the webhook service
/// leaves them out of what it sends).
fn shown(mut delivery: Delivery) -> Delivery {
    for attempt in &mut delivery.attempts {
        attempt.response = redact::scrub(&attempt.response, &delivery.task.url);
        attempt.error = attempt.error.as_deref().map(|error| redact::scrub(error, &delivery.task.url));
    }
    delivery.task.url = redact::url(&delivery.task.url);
    delivery
}

//! `POST /batches`: many prompts with the same options, as one group; one summary mail
//! at the end instead of one per picture (`notify: "summary"`, the default; `"each"` or
//! `"none"`). `GET /batches/{id}` counts the jobs in each state; `POST
//! /batches/{id}/cancel` cancels every job that has not reached the model yet.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::AppState;
use super::access::Caller;
use super::error::{ApiError, ErrorBody};
use super::generate::requested;
use super::groups::{group_body, owned_group, queue_group};
use crate::contract::groups::GroupNotify;
use crate::contract::jobs::CancelRequest;

/// The most prompts one batch may hold.
const MAX_PROMPTS: usize = 1000;

#[utoipa::path(
    post, path = "/batches", tag = "generate", summary = "Many prompts at once",
    description = "The body of `POST /generate-image` with `prompts` (1 to 1000) instead of `prompt`, and `notify`: `summary` (one mail at the end, the default), `each` or `none`. Answers 202 at once.",
    request_body = serde_json::Value,
    responses((status = 202, description = "The batch's id and `status_url`", body = serde_json::Value),
        (status = 400, description = "Bad request", body = ErrorBody))
)]
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (mut fields, meaning) = group_body(&headers, body, "batches", r#"{"prompts": ["...", "..."]}"#)?;
    let prompts: Vec<Value> = match fields.remove("prompts") {
        Some(Value::Array(prompts)) if !prompts.is_empty() && prompts.len() <= MAX_PROMPTS => prompts,
        _ => return Err(ApiError::bad_request(format!("prompts must be a list of 1 to {MAX_PROMPTS} prompts"))),
    };
    let notify: GroupNotify = match fields.remove("notify") {
        None => GroupNotify::Summary,
        Some(notify) => {
            serde_json::from_value(notify).map_err(|_| ApiError::bad_request("notify must be summary, each or none"))?
        }
    };
    if fields.contains_key("prompt") || fields.contains_key("n") {
        return Err(ApiError::bad_request("a batch takes prompts (a list), not prompt or n"));
    }
    let mut jobs = Vec::with_capacity(prompts.len());
    for (index, prompt) in prompts.into_iter().enumerate() {
        fields.insert("prompt".into(), prompt);
        let one = serde_json::to_vec(&fields).expect("JSON serializes");
        let (job, _, _) = requested(&state, &one)
            .await
            .map_err(|refused| ApiError::bad_request(format!("prompts[{index}]: {}", refused.message())))?;
        jobs.push(job);
    }
    let group = queue_group(&state, &headers, &caller, jobs, notify, meaning).await?;
    let mut body = json!({
        "id": group.id,
        "status": "queued",
        "count": group.members.len(),
        "status_url": format!("{}/batches/{}", state.settings.public_base_url, group.id),
    });
    if let Some(why) = &group.cut_short {
        body["cut_short"] = json!(why);
    }
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[utoipa::path(
    post, path = "/batches/{id}/cancel", tag = "jobs", summary = "Cancel what has not started",
    params(("id" = String, Path, description = "the batch id")),
    responses((status = 202, description = "How many jobs were asked to stop", body = serde_json::Value),
        (status = 404, description = "No such batch", body = ErrorBody))
)]
pub(super) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let unavailable = |_| ApiError::queue_unavailable();
    let group = owned_group(&state, &caller, &id).await?;
    let asked =
        CancelRequest { requested_at: OffsetDateTime::now_utc(), notify: false, by: caller.owner().map(String::from) };
    let mut stopping = 0;
    for member in &group.members {
        let running = state.jobs.get(member).await.map_err(unavailable)?.is_some_and(|job| !job.status.is_final());
        if running {
            state.jobs.request_cancel(member, &asked).await.map_err(unavailable)?;
            stopping += 1;
        }
    }
    let body = json!({"id": group.id, "cancel_requested": stopping, "status_url": format!("{}/batches/{}", state.settings.public_base_url, group.id)});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

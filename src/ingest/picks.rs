//! `POST /groups/{id}/pick`: the caller's choice of a group's best picture (a comparison's
//! winner), kept with the group and marked on the picture's record, so that the gallery
//! shows it and `GET /models/stats` counts it for the model that drew it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::access::Caller;
use super::body::json_body;
use super::error::{ApiError, ErrorBody};
use super::groups::owned_group;
use super::records::ask_store;
use crate::contract::jobs::JobState;
use crate::contract::records::{PickRequest, RECORDS_PICK};

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct Pick {
    /// The id of a completed job of the group.
    job: String,
}

#[utoipa::path(
    post, path = "/groups/{id}/pick", tag = "jobs", summary = "Choose a group's best picture",
    description = "Marks one completed job of the group (a comparison, `n` pictures, a batch) as its pick; a later pick replaces it. The gallery shows the pick, and `GET /models/stats` counts it.",
    params(("id" = String, Path, description = "the group id")),
    request_body = Pick,
    responses((status = 200, description = "The group and its pick", body = serde_json::Value),
        (status = 404, description = "No such group", body = ErrorBody),
        (status = 409, description = "The job has no stored picture", body = ErrorBody),
        (status = 422, description = "The job is not in the group", body = ErrorBody))
)]
pub(super) async fn pick(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(&headers, body)?;
    let Pick { job } = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request(r#"the body must name one job of the group: {"job": "<job id>"}"#))?;
    let mut group = owned_group(&state, &caller, &id).await?;
    if !group.members.contains(&job) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("job {job:?} is not in group {id:?}")));
    }
    let status = state.jobs.get(&job).await.map_err(|_| ApiError::queue_unavailable())?;
    if let Some(status) = status.filter(|status| status.status != JobState::Completed) {
        let state = status.status.name();
        return Err(ApiError::new(StatusCode::CONFLICT, format!("job {job:?} has no picture to pick: it is {state}")));
    }
    // The record first: a pick the gallery does not show is not kept either.
    let asked = PickRequest { group_id: group.id.clone(), job_id: job.clone() };
    ask_store::<bool>(&state, RECORDS_PICK, serde_json::to_vec(&asked).expect("JSON serializes").into()).await?;
    group.picked = Some(job);
    state.jobs.set_group(&group).await.map_err(|_| ApiError::queue_unavailable())?;
    tracing::info!(group = %group.id, job = ?group.picked, "picked");
    Ok(Json(json!({"id": group.id, "picked": group.picked})).into_response())
}

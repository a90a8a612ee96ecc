//! Following edits: `GET /edit-tasks/{id}` shows an edit job in the original service's
//! task shape; `GET /edit-records` lists stored edits as the original's rows.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AppState;
use super::access::Caller;
use super::error::{ApiError, ErrorBody};
use super::records::record_query;
use crate::contract::events::JobKind;
use crate::contract::jobs::{JobState, JobStatus};
use crate::contract::records::RecordViewPage;
use crate::contract::values::JobId;

/// `GET /edit-tasks/{task_id}`: the original's task shape, from the job state (the same
/// job `GET /jobs/{id}` shows).
#[utoipa::path(
    get, path = "/edit-tasks/{id}", tag = "edits", summary = "An edit's state, as the original service showed it",
    params(("id" = String, Path)),
    responses((status = 200, body = serde_json::Value), (status = 404, description = "No such task", body = ErrorBody))
)]
pub(super) async fn edit_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let missing = || ApiError::new(StatusCode::NOT_FOUND, "任务不存在 no such task");
    let id = JobId::parse(id.as_str()).map_err(|_| missing())?;
    let status = state.jobs.get(id.as_str()).await.map_err(|_| ApiError::queue_unavailable())?;
    let status = status.filter(|job| caller.may_see(job.owner.as_deref())).ok_or_else(missing)?;
    Ok(Json(task_view(&status)).into_response())
}

/// A job as the original's edit task: status pending / processing / completed / failed
/// with progress 0 / 50 / 100 / -1.
pub(super) fn task_view(job: &JobStatus) -> Value {
    let (status, progress) = match job.status {
        JobState::Queued => ("pending", 0),
        JobState::Translating | JobState::Generating | JobState::Storing => ("processing", 50),
        JobState::Completed => ("completed", 100),
        JobState::Failed => ("failed", -1),
        JobState::Cancelled => ("cancelled", -1),
    };
    let format = |at: OffsetDateTime| at.format(&Rfc3339).unwrap_or_default();
    let mut view = json!({
        "id": job.id,
        "task_id": job.id,
        "status": status,
        "edit_type": job.kind.name(),
        "edit_prompt": job.prompt,
        "model": job.model,
        "progress": progress,
        "created_at": format(job.result.as_ref().map_or(job.updated_at, |done| done.requested_at)),
    });
    if let Some(done) = &job.result {
        view["result_image_url"] = json!(done.url);
        view["r2_url"] = json!(done.r2_url);
        view["local_url"] = json!(done.local_url);
        view["completed_at"] = json!(format(done.completed_at));
        view["inputs"] = json!(done.inputs.iter().map(|i| &i.source).collect::<Vec<_>>());
    }
    if let Some(failed) = &job.error {
        view["error_message"] = json!(failed.error);
        view["completed_at"] = json!(format(failed.failed_at));
    }
    view
}

/// `GET /edit-records`: stored edits, paged and filtered as `/records` is, plus
/// `edit_type` and `status` (records hold finished pictures, so only `completed` matches).
#[utoipa::path(
    get, path = "/edit-records", tag = "edits", summary = "Stored edits, newest first",
    params(("page" = Option<u32>, Query), ("limit" = Option<u32>, Query), ("edit_type" = Option<String>, Query)),
    responses((status = 200, body = serde_json::Value), (status = 400, description = "Bad request", body = ErrorBody))
)]
pub(super) async fn edit_records(
    State(state): State<AppState>,
    caller: Caller,
    Query(mut params): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let edit_type = params.remove("edit_type").filter(|t| !t.is_empty());
    let status = params.remove("status").filter(|s| !s.is_empty());
    let mut query = record_query(&params, &caller)?;
    query.edits_only = true;
    if let Some(edit_type) = edit_type {
        let kind = JobKind::parse(&edit_type).filter(|k| !k.is_generate()).ok_or_else(|| {
            ApiError::bad_request(format!("edit_type must be edit, compose, style or fusion, got {edit_type:?}"))
        })?;
        query.kind = Some(kind);
    }
    let page: RecordViewPage = match status.as_deref() {
        None | Some("completed") => super::records::records_page(&state, query).await?,
        Some("pending" | "processing" | "failed") => RecordViewPage {
            records: Vec::new(),
            total: 0,
            page: query.page,
            limit: query.limit,
            pages: 0,
            more: false,
        },
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status must be pending, processing, completed or failed, got {other:?}"
            )));
        }
    };
    let records: Vec<Value> = page
        .records
        .iter()
        .map(|view| {
            let record = &view.record;
            json!({
                "id": record.id,
                "task_id": record.job_id,
                // The original's link to a record; inputs are named in input_image_urls here.
                "original_image_id": Value::Null,
                "edit_type": record.kind.name(),
                "edit_prompt": record.original_prompt,
                "input_image_urls": record.inputs,
                "result_image_url": view.url,
                "local_path": record.local_path,
                "r2_url": record.r2_url,
                "status": "completed",
                "error_message": Value::Null,
                "file_size": record.file_size,
                "width": record.width,
                "height": record.height,
                "format": record.format,
                "model": record.model,
                "labels": record.labels,
                "created_at": record.created_at,
                "completed_at": record.updated_at,
            })
        })
        .collect();
    let body =
        json!({"records": records, "total": page.total, "page": page.page, "limit": page.limit, "pages": page.pages});
    Ok(Json(body).into_response())
}

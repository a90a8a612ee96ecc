//! `DELETE /jobs/{id}` and `DELETE /records/{id}`: a job's picture gone from everywhere
//! huiying kept it. The store deletes the record, the file, its thumbnail and the R2 /
//! S3 copy; ingest then deletes what NATS still holds (the generated picture, an edit's
//! inputs) and the job's state, leaving a mark so that a repeated delete is `204` too.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use time::OffsetDateTime;

use super::AppState;
use super::access::Caller;
use super::error::{ApiError, ErrorBody};
use super::records::ask_store;
use crate::contract::jobs::DeletedJob;
use crate::contract::records::{RECORDS_DELETE, RecordView};
use crate::contract::values::JobId;

#[utoipa::path(
    delete, path = "/jobs/{id}", tag = "jobs", summary = "Delete a job and its picture",
    description = "The record, the picture and its thumbnail (on disk and on R2 / S3), what NATS holds of it, and \
                   the job's state. A job still running is 409: cancel it first.",
    params(("id" = String, Path, description = "the job id")),
    responses((status = 204, description = "Deleted (or deleted before)"),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job is still running", body = ErrorBody))
)]
pub(super) async fn delete_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let missing = || ApiError::new(StatusCode::NOT_FOUND, format!("no job with id {id:?}"));
    let job = JobId::parse(id.as_str()).map_err(|_| missing())?;
    match state.jobs.get(&job).await.map_err(unavailable)? {
        Some(status) if !caller.may_see(status.owner.as_deref()) => Err(missing()),
        Some(status) if !status.status.is_final() => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} is still {}; cancel it first (POST /jobs/{id}/cancel)", status.status.name()),
        )),
        Some(status) => remove(&state, &job, status.owner).await,
        // No state (it expired after 7 days, or the job was deleted): its record decides.
        None => match owned_record(&state, &caller, job.as_str()).await? {
            Some(record) => remove(&state, &job, record.record.owner).await,
            None => deleted_before(&state, &caller, &job).await?.ok_or_else(missing),
        },
    }
}

#[utoipa::path(
    delete, path = "/records/{id}", tag = "records", summary = "Delete a record and its picture",
    description = "As `DELETE /jobs/{id}`, by the record's number or job id.",
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted (or deleted before)"),
        (status = 404, description = "No such record", body = ErrorBody))
)]
pub(super) async fn delete_record(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let missing = || ApiError::new(StatusCode::NOT_FOUND, format!("no record with id {id:?}"));
    if let Some(record) = owned_record(&state, &caller, &id).await? {
        let job = JobId::parse(record.record.job_id.as_str()).map_err(|_| missing())?;
        return remove(&state, &job, record.record.owner).await;
    }
    match JobId::parse(id.as_str()) {
        Ok(job) if id.parse::<i64>().is_err() => deleted_before(&state, &caller, &job).await?.ok_or_else(missing),
        _ => Err(missing()),
    }
}

/// The record of `key` (number or job id) when there is one `caller` may see.
async fn owned_record(state: &AppState, caller: &Caller, key: &str) -> Result<Option<RecordView>, ApiError> {
    match super::records::owned_record(state, caller, key).await {
        Ok(record) => Ok(Some(record)),
        Err(error) if error.status() == StatusCode::NOT_FOUND => Ok(None),
        Err(error) => Err(error),
    }
}

/// `204` when `caller` deleted this job (or may see who did) before.
async fn deleted_before(state: &AppState, caller: &Caller, job: &JobId) -> Result<Option<StatusCode>, ApiError> {
    let mark = state.jobs.deleted(job).await.map_err(unavailable)?;
    Ok(mark.filter(|mark| caller.may_see(mark.owner.as_deref())).map(|_| StatusCode::NO_CONTENT))
}

/// Deletes everywhere, in the order that leaves something to delete again if it stops.
async fn remove(state: &AppState, job: &JobId, owner: Option<String>) -> Result<StatusCode, ApiError> {
    let _: bool = ask_store(state, RECORDS_DELETE, job.to_string().into()).await?;
    let held = state.objects.names().await.map_err(unavailable)?;
    let (picture, inputs) = (format!("{job}."), format!("input/{job}/"));
    for name in held.iter().filter(|name| name.starts_with(&picture) || name.starts_with(&inputs)) {
        state.objects.delete(name).await.map_err(unavailable)?;
    }
    let mark = DeletedJob { owner, deleted_at: OffsetDateTime::now_utc() };
    state.jobs.forget(job, &mark).await.map_err(unavailable)?;
    metrics::counter!("huiying_jobs_deleted_total").increment(1);
    tracing::info!(%job, key = mark.owner.as_deref().unwrap_or("-"), "deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn unavailable(error: crate::parts::PartError) -> ApiError {
    tracing::warn!(%error, "cannot delete now");
    // A repeated delete finishes what this one began.
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NATS is unavailable; try the delete again shortly")
}

//! `DELETE /jobs/{id}` and `DELETE /records/{id}`: a job's picture gone from everywhere
//! huiying kept it. The store deletes the record, the file, its thumbnail, the R2 / S3
//! copy and what the NATS picture bucket still holds (the generated picture, an edit's
//! inputs); ingest then deletes the job's state, leaving a mark so that a repeated delete
//! is `204` too.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use time::OffsetDateTime;

use super::AppState;
use super::access::Caller;
use super::error::{ApiError, ErrorBody};
use super::records::ask_store;
use crate::contract::jobs::DeletedJob;
use crate::contract::records::{Answer, RECORDS_DELETE, RECORDS_GET, RecordView};
use crate::contract::values::JobId;
use crate::parts::{JobBoard, PartError};

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
        let answer = remove(&state, &job, record.record.owner.clone()).await?;
        // A repeated delete by number finds the record's mark, as one by job id finds the job's.
        let mark = DeletedJob { owner: record.record.owner, deleted_at: OffsetDateTime::now_utc() };
        state.jobs.forget_record(record.record.id, &mark).await.map_err(unavailable)?;
        return Ok(answer);
    }
    let mark = match (id.parse::<i64>(), JobId::parse(id.as_str())) {
        (Ok(number), _) => state.jobs.deleted_record(number).await.map_err(unavailable)?,
        (Err(_), Ok(job)) => state.jobs.deleted(&job).await.map_err(unavailable)?,
        (Err(_), Err(_)) => None,
    };
    match mark {
        Some(mark) if caller.may_see(mark.owner.as_deref()) => Ok(StatusCode::NO_CONTENT),
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
    forget(&state.jobs, job, owner).await.map_err(unavailable)?;
    Ok(StatusCode::NO_CONTENT)
}

/// After the store deleted the pictures: the job's state, leaving the mark of a deleted job.
async fn forget(jobs: &JobBoard, job: &JobId, owner: Option<String>) -> Result<(), PartError> {
    let mark = DeletedJob { owner, deleted_at: OffsetDateTime::now_utc() };
    jobs.forget(job, &mark).await?;
    metrics::counter!("huiying_jobs_deleted_total").increment(1);
    tracing::info!(%job, key = mark.owner.as_deref().unwrap_or("-"), "deleted");
    Ok(())
}

/// `huiying records delete <id>...`: as `DELETE /records/{id}` by an admin key, for
/// records by number or job id (a job without a record too). One line per id.
pub async fn run(config: &crate::config::Config, ids: &[String]) -> anyhow::Result<Vec<String>> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bus = crate::bus::Bus::connect(&config.nats, "huiying-records", &shutdown).await?;
    let jobs = bus.job_board();
    let mut lines = Vec::new();
    for id in ids {
        let (job, owner) = match ask::<RecordView>(&bus.client, RECORDS_GET, id).await? {
            Answer::Ok(view) => (view.record.job_id, view.record.owner),
            Answer::Error { status: 404, .. } => match jobs.get(id).await? {
                Some(status) => (status.id.to_string(), status.owner),
                None => {
                    lines.push(format!("{id}: no such record or job"));
                    continue;
                }
            },
            Answer::Error { message, .. } => anyhow::bail!("{id}: the store says: {message}"),
        };
        let job = JobId::parse(job.as_str()).map_err(|e| anyhow::anyhow!("{id}: {}", e.problem))?;
        if let Answer::<bool>::Error { message, .. } = ask(&bus.client, RECORDS_DELETE, job.as_str()).await? {
            anyhow::bail!("{id}: the store could not delete it: {message}");
        }
        forget(&jobs, &job, owner).await?;
        lines.push(format!("{id}: deleted (job {job})"));
    }
    Ok(lines)
}

/// The store's answer to `subject` about `key`, for the command line.
async fn ask<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: &'static str,
    key: &str,
) -> anyhow::Result<Answer<T>> {
    let reply = crate::parts::Requests::request(client, subject, key.to_string().into()).await?;
    Ok(serde_json::from_slice(&reply)?)
}

fn unavailable(error: crate::parts::PartError) -> ApiError {
    tracing::warn!(%error, "cannot delete now");
    // A repeated delete finishes what this one began.
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NATS is unavailable; try the delete again shortly")
}

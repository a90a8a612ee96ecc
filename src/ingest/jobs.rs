//! `GET /jobs/{id}`: a job's state, from whichever process did the work; and
//! `GET /jobs/{id}/events`, the same as Server-Sent Events, one per change of state; and
//! `POST /jobs/{id}/cancel`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use time::OffsetDateTime;

use super::AppState;
use super::access::Caller;
use super::body::{json_body, parse_object, preferred_wait};
use super::error::{ApiError, ErrorBody};
use crate::contract::jobs::{CancelRequest, JobState, JobStatus};
use crate::redact;

#[utoipa::path(
    get, path = "/jobs/{id}", tag = "jobs", summary = "A job's state",
    params(("id" = String, Path, description = "the job id")),
    responses((status = 200, body = JobStatus), (status = 404, description = "No such job", body = ErrorBody))
)]
pub(super) async fn job_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(current(&state, &caller, &id).await?).into_response())
}

/// The job as `GET /jobs/{id}` shows it to `caller`: its state, and whether a cancel is
/// pending. Another key's job is not there, as a job that does not exist.
pub(super) async fn current(state: &AppState, caller: &Caller, id: &str) -> Result<JobStatus, ApiError> {
    let mut status = owned(state, caller, id).await?;
    if !status.status.is_final() {
        status.cancel_requested = state.jobs.cancel_request(id).await.map_err(unavailable)?.is_some();
    }
    if status.status == JobState::Queued {
        status.queue_position = state.queue.position(id).await;
    }
    Ok(shown_to(caller, with_targets(state, status).await?))
}

/// An ended job with whom it notifies, which its events leave out, filled in from beside
/// its state (shown masked to all but admins by [`shown_to`]).
pub(super) async fn with_targets(state: &AppState, mut status: JobStatus) -> Result<JobStatus, ApiError> {
    if status.result.is_none() && status.error.is_none() {
        return Ok(status);
    }
    let Some(targets) = state.jobs.targets(&status.id).await.map_err(unavailable)? else { return Ok(status) };
    if let Some(result) = status.result.as_mut() {
        result.notify_email = targets.notify_email.clone();
        result.callback = targets.callback.clone();
    }
    if let Some(error) = status.error.as_mut() {
        error.notify_email = targets.notify_email;
        error.callback = targets.callback;
    }
    Ok(status)
}

/// Every kept job `caller` may see (its key's own; an admin's all), as stored. Reads
/// them all: for lists and reports.
pub(super) async fn all_seen_by(state: &AppState, caller: &Caller) -> Result<Vec<JobStatus>, ApiError> {
    let all = state.jobs.all().await.map_err(unavailable)?;
    Ok(all.into_iter().filter(|job| caller.may_see(job.owner.as_deref())).collect())
}

/// Job `id` when `caller` may see it, as it is stored; else 404.
pub(super) async fn owned(state: &AppState, caller: &Caller, id: &str) -> Result<JobStatus, ApiError> {
    match state.jobs.get(id).await.map_err(unavailable)? {
        Some(status) if caller.may_see(status.owner.as_deref()) => Ok(status),
        _ => Err(no_job(id)),
    }
}

/// A job's state as `caller` may see it: notification targets masked but for admins.
pub(super) fn shown_to(caller: &Caller, mut status: JobStatus) -> JobStatus {
    if !caller.is_admin() {
        if let Some(result) = status.result.as_mut() {
            result.notify_email = result.notify_email.as_deref().map(redact::email);
            result.callback.webhook = result.callback.webhook.as_deref().map(redact::url);
        }
        if let Some(error) = status.error.as_mut() {
            error.notify_email = error.notify_email.as_deref().map(redact::email);
            error.callback.webhook = error.callback.webhook.as_deref().map(redact::url);
        }
    }
    status
}

/// How long `POST /jobs/{id}/cancel` waits for the job to end before answering 202.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// The body of `POST /jobs/{id}/cancel`, which may be empty.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
pub(super) struct CancelBody {
    /// Send the usual failure mail for the cancelled job.
    #[serde(default)]
    notify: bool,
}

/// `POST /jobs/{id}/cancel`: a job not yet at the model is never sent to it; one in a
/// model call is abandoned when the call returns and its picture discarded. Answers 200
/// with the cancelled job once it has ended (within `Prefer: wait=N`, else 5 s), 202 with
/// `cancel_requested` while it has not, and 409 for a job that ended otherwise.
#[utoipa::path(
    post, path = "/jobs/{id}/cancel", tag = "jobs", summary = "Cancel a job",
    description = "A job not yet at the model is never sent; one in a model call is abandoned when the call returns. No mail unless `notify`.",
    params(("id" = String, Path, description = "the job id"),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: how long to wait for the job to end (default 5 s)")),
    request_body(content = Option<CancelBody>, description = "optional"),
    responses(
        (status = 200, description = "Cancelled", body = JobStatus),
        (status = 202, description = "Asked; the job has not ended yet", body = JobStatus),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job ended otherwise", body = ErrorBody),
    )
)]
pub(super) async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(&headers, body)?;
    let asked: CancelBody = match body.iter().all(u8::is_ascii_whitespace) {
        true => CancelBody::default(),
        false => parse_object(&body, r#"{"notify": false}"#)?,
    };
    let status = current(&state, &caller, &id).await?;
    if status.status.is_final() {
        return finished(status);
    }
    let request = CancelRequest {
        requested_at: OffsetDateTime::now_utc(),
        notify: asked.notify,
        by: caller.owner().map(String::from),
    };
    state.jobs.request_cancel(&id, &request).await.map_err(unavailable)?;
    let wait = preferred_wait(&headers).or(CANCEL_WAIT, state.settings.wait_timeout);
    match state.jobs.wait_until_final(&id, wait).await.map_err(unavailable)? {
        Some(ended) => finished(shown_to(&caller, ended)),
        None => Ok((StatusCode::ACCEPTED, Json(current(&state, &caller, &id).await?)).into_response()),
    }
}

/// The answer for a job that has ended: 200 when cancelled, 409 when it ended otherwise.
fn finished(status: JobStatus) -> Result<Response, ApiError> {
    match status.status {
        JobState::Cancelled => Ok(Json(status).into_response()),
        other => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {} has already {}; there is nothing to cancel", status.id, other.name()),
        )),
    }
}

/// `GET /jobs/{id}/events`: an event `status` per change of state (its id is the state's
/// name, its data the job as `GET /jobs/{id}` shows it), ending with the final one. Built
/// on the job-state watch NATS offers, not on polling. A client that reconnects with
/// `Last-Event-ID` is not sent the state it already has; states only move forward, so it
/// misses nothing.
#[utoipa::path(
    get, path = "/jobs/{id}/events", tag = "jobs", summary = "A job's changes of state as Server-Sent Events",
    params(("id" = String, Path, description = "the job id"),
        ("Last-Event-ID" = Option<String>, Header, description = "the last state seen")),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "events `status`, data: the job as GET /jobs/{id} shows it; while it waits, events `position`, data: `{id, queue_position}` when its place in the queue moves"),
        (status = 404, description = "No such job", body = ErrorBody))
)]
pub(super) async fn job_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    owned(&state, &caller, &id).await?;
    let seen = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(String::from);
    let updates = state.jobs.watch(&id).await.map_err(unavailable)?;
    let follow = Following { state, caller, id, updates, seen, position: None, queued: false, done: false };
    let events = futures::stream::unfold(follow, |mut follow| async move {
        let event = follow.next_event().await?;
        Some((Ok(event), follow))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// How often a waiting job's place in the queue is looked at again.
const POSITION_EVERY: Duration = Duration::from_secs(2);

/// One job's event stream: its states as they change (events `status`, id the state's
/// name) and, while it waits, its place in the queue when that moves (events `position`).
struct Following {
    state: AppState,
    caller: Caller,
    id: String,
    updates: futures::stream::BoxStream<'static, Result<JobStatus, crate::parts::PartError>>,
    /// The state the client has.
    seen: Option<String>,
    position: Option<u64>,
    queued: bool,
    done: bool,
}

impl Following {
    async fn next_event(&mut self) -> Option<Event> {
        while !self.done {
            let update = match self.queued {
                true => tokio::select! {
                    update = self.updates.next() => update,
                    _ = tokio::time::sleep(POSITION_EVERY) => {
                        if let Some(event) = self.position_moved().await { return Some(event) }
                        continue;
                    }
                },
                false => self.updates.next().await,
            };
            let mut status = match update? {
                Ok(status) => status,
                Err(error) => {
                    tracing::warn!(%error, "job state watch failed; ending the event stream");
                    return None;
                }
            };
            let name = status.status.name();
            self.queued = status.status == JobState::Queued;
            if self.seen.as_deref() == Some(name) {
                self.done = status.status.is_final(); // the client has the end already
                continue; // the client has it already (or it was written again)
            }
            self.seen = Some(name.to_string());
            self.done = status.status.is_final();
            if self.queued {
                self.position = self.state.queue.position(&self.id).await;
                status.queue_position = self.position;
            }
            let shown = shown_to(&self.caller, status);
            return Some(Event::default().event("status").id(name).json_data(&shown).expect("job states serialize"));
        }
        None
    }

    /// An event `position` when the job's place in the queue has changed.
    async fn position_moved(&mut self) -> Option<Event> {
        let now = self.state.queue.position(&self.id).await;
        if now == self.position || now.is_none() {
            return None;
        }
        self.position = now;
        let data = serde_json::json!({"id": self.id, "queue_position": now});
        Some(Event::default().event("position").json_data(&data).expect("JSON serializes"))
    }
}

/// `GET /events`: every job's changes of state, as events `status` whose id is the change's
/// revision in the job-state bucket. A client reconnecting with `Last-Event-ID` gets what
/// changed after it (the latest state of each job at least).
#[utoipa::path(
    get, path = "/events", tag = "jobs", summary = "Every job's changes of state as Server-Sent Events",
    params(("Last-Event-ID" = Option<String>, Header, description = "resume after this event id")),
    responses((status = 200, content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad Last-Event-ID", body = ErrorBody))
)]
pub(super) async fn all_events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let after = match headers.get("last-event-id").map(|v| v.to_str().unwrap_or("").trim().parse::<u64>()) {
        None => None,
        Some(Ok(revision)) => Some(revision),
        Some(Err(_)) => return Err(ApiError::bad_request("Last-Event-ID must be an event id this stream sent")),
    };
    let changes = state.jobs.changes(after).await.map_err(unavailable)?;
    let events = changes
        .take_while(|change| {
            if let Err(error) = change {
                tracing::warn!(%error, "job state changes failed; ending the event stream");
            }
            futures::future::ready(change.is_ok())
        })
        .filter_map(move |change| {
            // Another key's jobs are left out; the ids of those sent stay increasing.
            let shown =
                change.ok().filter(|(_, status)| caller.may_see(status.owner.as_deref())).map(|(revision, status)| {
                    let event = Event::default().event("status").id(revision.to_string());
                    Ok(event.json_data(shown_to(&caller, status)).expect("job states serialize"))
                });
            futures::future::ready(shown)
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

fn no_job(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no job with id {id:?}"))
}

fn unavailable(error: crate::parts::PartError) -> ApiError {
    tracing::warn!(%error, "cannot read job state");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "job states (NATS) are unavailable; try again shortly")
}

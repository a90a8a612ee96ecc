//! `GET /jobs/{id}`: a job's state, from whichever process did the work; and
//! `GET /jobs/{id}/events`, the same as Server-Sent Events, one per change of state.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};

use super::AppState;
use super::error::ApiError;
use crate::contract::jobs::{JobState, JobStatus};

pub(super) async fn job_status(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    match state.jobs.get(&id).await {
        Ok(Some(status)) => Ok(Json(status).into_response()),
        Ok(None) => Err(no_job(&id)),
        Err(e) => Err(unavailable(e)),
    }
}

/// `GET /jobs/{id}/events`: an event `status` per change of state (its id is the state's
/// name, its data the job as `GET /jobs/{id}` shows it), ending with the final one. Built
/// on the job-state watch NATS offers, not on polling. A client that reconnects with
/// `Last-Event-ID` is not sent the state it already has; states only move forward, so it
/// misses nothing.
pub(super) async fn job_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    if state.jobs.get(&id).await.map_err(unavailable)?.is_none() {
        return Err(no_job(&id));
    }
    let seen = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(String::from);
    let updates = state.jobs.watch(&id).await.map_err(unavailable)?;
    let events = futures::stream::unfold((updates, seen, false), |(mut updates, mut seen, done)| async move {
        if done {
            return None;
        }
        loop {
            let status: JobStatus = match updates.next().await? {
                Ok(status) => status,
                Err(error) => {
                    tracing::warn!(%error, "job state watch failed; ending the event stream");
                    return None;
                }
            };
            let name = state_name(status.status);
            if seen.as_deref() == Some(name) {
                if status.status.is_final() {
                    return None; // the client has the end already
                }
                continue; // the client has it already (or it was written again)
            }
            seen = Some(name.to_string());
            let event = Event::default().event("status").id(name).json_data(&status).expect("job states serialize");
            return Some((Ok(event), (updates, seen, status.status.is_final())));
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// `GET /events`: every job's changes of state, as events `status` whose id is the change's
/// revision in the job-state bucket. A client reconnecting with `Last-Event-ID` gets what
/// changed after it (the latest state of each job at least).
pub(super) async fn all_events(
    State(state): State<AppState>,
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
        .filter_map(|change| async move {
            let (revision, status) = change.ok()?;
            let event = Event::default().event("status").id(revision.to_string()).json_data(&status);
            Some(Ok(event.expect("job states serialize")))
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Generating => "generating",
        JobState::Storing => "storing",
        JobState::Completed => "completed",
        JobState::Failed => "failed",
    }
}

fn no_job(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no job with id {id:?}"))
}

fn unavailable(error: crate::bus::BusError) -> ApiError {
    tracing::warn!(%error, "cannot read job state");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "job states (NATS) are unavailable; try again shortly")
}

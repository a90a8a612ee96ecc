//! `GET /batches/{id}/events` (and `/groups/{id}/events`): a group's progress as
//! Server-Sent Events `progress`, `{id, total, counts, status}`, sent at once and again
//! whenever one of its jobs changes state; the stream ends when every job has ended.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde_json::json;

use super::AppState;
use super::access::Caller;
use super::error::{ApiError, ErrorBody};
use super::groups::{count_states, owned_group, progress_name};
use crate::contract::jobs::JobState;

/// Each job's state, by job id; `None`: no state seen yet.
struct Tally {
    id: String,
    states: HashMap<String, Option<JobState>>,
}

impl Tally {
    /// The event `progress` now, and whether every job has ended.
    fn event(&self) -> (Event, bool) {
        let (counts, ended) = count_states(self.states.values().copied());
        let data = json!({"id": self.id, "total": self.states.len(), "counts": counts, "status": progress_name(ended)});
        (Event::default().event("progress").json_data(&data).expect("JSON serializes"), ended)
    }
}

#[utoipa::path(
    get, path = "/batches/{id}/events", tag = "jobs", summary = "A batch's progress as Server-Sent Events",
    params(("id" = String, Path, description = "the batch (or group) id")),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "events `progress`, data: `{id, total, counts, status}`; the last has status `ended`"),
        (status = 404, description = "No such batch", body = ErrorBody))
)]
pub(super) async fn progress(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let unavailable = |_| ApiError::queue_unavailable();
    let group = owned_group(&state, &caller, &id).await?;
    // Changes are followed before the states are read, so none falls in between.
    let changes = state.jobs.changes(None).await.map_err(unavailable)?;
    let mut tally = Tally { id: group.id.clone(), states: HashMap::with_capacity(group.members.len()) };
    for member in group.members {
        let now = state.jobs.get(&member).await.map_err(unavailable)?.map(|job| job.status);
        tally.states.insert(member, now);
    }
    let (first, ended) = tally.event();
    let later = futures::stream::unfold((changes, tally, ended), |(mut changes, mut tally, ended)| async move {
        if ended {
            return None;
        }
        loop {
            let (_, job) = match changes.next().await? {
                Ok(change) => change,
                Err(error) => {
                    tracing::warn!(%error, "job state changes failed; ending the progress stream");
                    return None;
                }
            };
            let Some(known) = tally.states.get_mut(job.id.as_str()) else { continue };
            if *known == Some(job.status) {
                continue;
            }
            *known = Some(job.status);
            let (event, ended) = tally.event();
            return Some((Ok(event), (changes, tally, ended)));
        }
    });
    let events = futures::stream::once(async move { Ok(first) }).chain(later);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

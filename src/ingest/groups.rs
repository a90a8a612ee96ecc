//! Jobs asked for together: `n` pictures of one request are `n` jobs of one group.
//! Queuing them, the answer that waits for all of them, and `GET /groups/{id}`.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::time::Instant;

use super::AppState;
use super::access::Caller;
use super::body::{json_body, preferred_wait, prefers_async};
use super::error::{ApiError, ErrorBody};
use super::generate::{failure_of, picture_of, usage};
use super::hold::Hold;
use super::idempotency::{Claim, Claimed};
use super::queueing::{caller_key, queue_job, unavailable};
use crate::contract::cost::{Cost, CostSource};
use crate::contract::events::ImageRequested;
use crate::contract::groups::{Group, GroupNotify, GroupRef};
use crate::contract::jobs::{JobState, JobStatus};
use crate::contract::values::JobId;

/// What a request queued: one job, or a group of them.
pub(super) enum Queued {
    Job(JobId),
    Group(Group),
}

/// `request` as `n` jobs, each with its own seed (the request's, counting up; else a
/// random one counting up), so that no two pictures are the same.
pub(super) fn n_pictures(request: ImageRequested, n: u32) -> Vec<ImageRequested> {
    let first_seed = request.options.seed.unwrap_or_else(|| fastrand::u64(..u64::from(u32::MAX)));
    (0..n)
        .map(|index| {
            let mut job = request.clone();
            job.options.seed = Some(first_seed.wrapping_add(u64::from(index)));
            job
        })
        .collect()
}

/// A group request's body (`POST /compare`, `POST /batches`) as its JSON fields, with
/// what it means for its `Idempotency-Key`; `shape` shows the body expected.
pub(super) fn group_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    route: &str,
    shape: &str,
) -> Result<(serde_json::Map<String, Value>, String), ApiError> {
    let body = json_body(headers, body)?;
    let fields = serde_json::from_slice(&body)
        .map_err(|_| ApiError::bad_request(format!("the body must be a JSON object: {shape}")))?;
    Ok((fields, meaning_of(route, &body)))
}

/// What a request for a group means, for its `Idempotency-Key`: the route and the body
/// as JSON (so spacing and field order do not count).
pub(super) fn meaning_of(route: &str, body: &[u8]) -> String {
    super::idempotency::fingerprint(&(route, serde_json::from_slice::<Value>(body).ok()))
}

/// Queues `jobs` as one group. The group is kept first, so that whoever sees one of its
/// jobs finds it. A job refused after the first were queued (a quota or budget filled
/// up) ends the group there: the group holds the jobs that were queued, and says why it
/// has fewer. `meaning` is the request's fingerprint: under an `Idempotency-Key`, the
/// same request again is this group again (with any job the first try did not queue).
pub(super) async fn queue_group(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    jobs: Vec<ImageRequested>,
    notify: GroupNotify,
    meaning: String,
) -> Result<Group, ApiError> {
    let key = caller_key(headers, caller)?;
    // The key names the group: its jobs are each their own, without one.
    let mut headers = headers.clone();
    headers.remove("idempotency-key");
    let mut id = JobId::random();
    // NATS electing a leader holds the group's own writes as it holds each job's.
    let hold = Hold::new(state, &headers);
    if let Some(key) = key {
        let claimed = Claimed { job_id: id.clone(), fingerprint: meaning };
        match hold.on(state, || state.idempotency.claim(&key, &claimed)).await.map_err(unavailable)? {
            Claim::New => {}
            Claim::Existing(existing) if existing.fingerprint != claimed.fingerprint => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "this Idempotency-Key was used for a different request; use a new key for a new request",
                ));
            }
            Claim::Existing(existing) => match state.jobs.group(existing.job_id.as_str()).await.map_err(unavailable)? {
                Some(group) => return queue_the_rest(state, &headers, caller, group, jobs).await,
                // The first try stopped before it kept its group: this one makes it.
                None => id = existing.job_id,
            },
        }
    }
    let size = jobs.len() as u32;
    let mut group = Group {
        id: id.to_string(),
        members: jobs.iter().map(|_| JobId::random().to_string()).collect(),
        prompt: jobs.first().map(|job| job.prompt.clone()).unwrap_or_default(),
        notify,
        owner: caller.owner().map(String::from),
        created_at: OffsetDateTime::now_utc(),
        cut_short: None,
        picked: None,
    };
    hold.on(state, || state.jobs.set_group(&group)).await.map_err(unavailable)?;
    for (index, mut job) in jobs.into_iter().enumerate() {
        job.group = Some(GroupRef { id: group.id.clone(), index: index as u32, size });
        let member = JobId::parse(group.members[index].as_str()).expect("a fresh job id");
        if let Err(refused) = queue_job(state, &headers, caller, member, job, None).await {
            if index == 0 {
                return Err(refused);
            }
            tracing::warn!(group = %id, queued = index, error = %refused.message(), "a group was cut short");
            group.members.truncate(index);
            group.cut_short = Some(format!("{index} of {size} pictures were queued: {}", refused.message()));
            hold.on(state, || state.jobs.set_group(&group)).await.map_err(unavailable)?;
            break;
        }
    }
    tracing::info!(group = %id, jobs = group.members.len(), "group queued");
    Ok(group)
}

/// The group asked for again under its `Idempotency-Key`: its jobs that have no state
/// (the first try stopped before queuing them) are queued now, under their own ids.
async fn queue_the_rest(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    group: Group,
    jobs: Vec<ImageRequested>,
) -> Result<Group, ApiError> {
    let size = group.members.len() as u32;
    for (index, (member, mut job)) in group.members.iter().zip(jobs).enumerate() {
        if state.jobs.get(member).await.map_err(unavailable)?.is_some() {
            continue;
        }
        job.group = Some(GroupRef { id: group.id.clone(), index: index as u32, size });
        let member = JobId::parse(member.as_str()).map_err(|_| ApiError::queue_unavailable())?;
        queue_job(state, headers, caller, member, job, None).await?;
    }
    tracing::info!(group = %group.id, "the same group again (Idempotency-Key)");
    Ok(group)
}

/// The answer for a queued group: 202 at once when the client prefers it, else every
/// picture once all its jobs ended (202 when the wait passes first). Pictures that could
/// not be made are named in `errors`; with none made, the first failure is the answer.
pub(super) async fn answer_for_group(
    state: &AppState,
    headers: &HeaderMap,
    group: &Group,
    with_picture: bool,
) -> Result<Response, ApiError> {
    let accepted = || {
        let body = json!({
            "id": group.id,
            "status": "queued",
            "jobs": group.members,
            "status_url": format!("{}/groups/{}", state.settings.public_base_url, group.id),
        });
        (StatusCode::ACCEPTED, Json(body)).into_response()
    };
    if prefers_async(headers) {
        return Ok(accepted());
    }
    let wait = preferred_wait(headers).or(state.settings.wait_timeout, state.settings.wait_timeout);
    let until = Instant::now() + wait;
    let mut ended = Vec::with_capacity(group.members.len());
    for member in &group.members {
        let left = until.saturating_duration_since(Instant::now());
        match state.jobs.wait_until_final(member, left).await {
            Ok(Some(status)) => ended.push(status),
            // Still running (or not to be followed now): the client follows status_url.
            _ => return Ok(accepted()),
        }
    }
    let (mut data, mut errors, mut costs) = (Vec::new(), Vec::new(), Vec::new());
    let mut first_failure = None;
    for status in ended {
        if let Some(done) = &status.result {
            let mut picture = picture_of(state, done, with_picture).await?;
            picture["model"] = json!(done.model);
            data.push(picture);
            costs.push(done.cost.clone());
        } else if let Some(failed) = status.error {
            errors.push(json!({"id": failed.id, "model": failed.model, "error": failed.error}));
            costs.push(failed.cost.clone());
            first_failure.get_or_insert(failed);
        }
    }
    if data.is_empty()
        && let Some(failed) = first_failure
    {
        return Err(failure_of(failed));
    }
    let mut body = json!({
        "id": group.id,
        "created": group.created_at.unix_timestamp(),
        "data": data,
        "usage": usage(&total(&costs)),
    });
    if !errors.is_empty() {
        body["errors"] = Value::Array(errors);
    }
    if let Some(why) = &group.cut_short {
        body["cut_short"] = json!(why);
    }
    Ok(Json(body).into_response())
}

/// What the jobs cost together: known only when each one's cost is.
fn total(costs: &[Cost]) -> Cost {
    let known: Option<Vec<f64>> = costs.iter().map(|cost| cost.cost_usd).collect();
    let source = costs.iter().map(|cost| cost.cost_source).max().unwrap_or(CostSource::Unknown);
    Cost { cost_usd: known.map(|each| each.iter().sum()), cost_source: source, usage: None }
}

#[utoipa::path(
    get, path = "/groups/{id}", tag = "jobs", summary = "The jobs asked for together (n pictures)",
    params(("id" = String, Path, description = "the group id")),
    responses((status = 200, description = "The group and each job's state", body = serde_json::Value),
        (status = 404, description = "No such group", body = ErrorBody))
)]
pub(super) async fn group_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let group = owned_group(&state, &caller, &id).await?;
    let mut jobs = Vec::with_capacity(group.members.len());
    let mut states = Vec::with_capacity(group.members.len());
    for member in &group.members {
        let status = state.jobs.get(member).await.map_err(unavailable)?;
        states.push(status.as_ref().map(|status| status.status));
        let mut view = status.as_ref().map_or_else(|| json!({"id": member, "status": "unknown"}), job_view);
        if group.picked.as_ref() == Some(member) {
            view["picked"] = json!(true);
        }
        jobs.push(view);
    }
    let (counts, ended) = count_states(states);
    Ok(Json(json!({
        "id": group.id,
        "prompt": group.prompt,
        "created_at": group.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "status": progress_name(ended),
        "cut_short": group.cut_short,
        "picked": group.picked,
        "counts": counts,
        "jobs": jobs,
    }))
    .into_response())
}

/// How many of a group's jobs are in each state (`unknown`: no state yet), and whether
/// all have ended: what `GET /groups/{id}` and the group's event stream both say.
pub(super) fn count_states(states: impl IntoIterator<Item = Option<JobState>>) -> (BTreeMap<&'static str, u64>, bool) {
    let (mut counts, mut ended) = (BTreeMap::new(), true);
    for state in states {
        *counts.entry(state.map_or("unknown", JobState::name)).or_insert(0) += 1;
        ended &= state.is_some_and(JobState::is_final);
    }
    (counts, ended)
}

/// A group's `status`.
pub(super) fn progress_name(ended: bool) -> &'static str {
    if ended { "ended" } else { "running" }
}

/// The group `id` as `caller` may see it: another key's is not there, as one that does
/// not exist.
pub(super) async fn owned_group(state: &AppState, caller: &Caller, id: &str) -> Result<Group, ApiError> {
    let group = state.jobs.group(id).await.map_err(unavailable)?;
    group
        .filter(|group| caller.may_see(group.owner.as_deref()))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no group with id {id:?}")))
}

/// One job of a group: its state, model, picture, time taken and cost, or its error.
fn job_view(status: &JobStatus) -> Value {
    let mut view = json!({"id": status.id, "status": status.status.name(), "model": status.model});
    if let Some(done) = &status.result {
        view["url"] = json!(done.url);
        view["duration_ms"] = json!(done.duration_ms);
        view["cost_usd"] = json!(done.cost.cost_usd);
    }
    if let Some(failed) = &status.error {
        view["error"] = json!(failed.error);
        view["cost_usd"] = json!(failed.cost.cost_usd);
    }
    view
}

//! Putting a job on the queue, for every route that makes one: the queue's bound, the
//! request's `Idempotency-Key`, the job's first state and its `image.requested`.

use axum::http::{HeaderMap, StatusCode};

use super::AppState;
use super::access::Caller;
use super::body::idempotency_key;
use super::error::ApiError;
use super::hold::Hold;
use super::idempotency::{Claim, Claimed, fingerprint};
use super::quota::Quota;
use crate::contract::events::{ImageRequested, JobKind};
use crate::contract::jobs::{JobState, JobStatus, NotifyTargets};
use crate::contract::values::JobId;
use crate::parts::{self, PartError};

/// The refusals that cost nothing to find, made before a request writes anything (an
/// edit's input pictures), so that a refused or repeated request leaves nothing behind:
/// NATS away, the queue or the picture bucket full, or the same request again under its
/// `Idempotency-Key` (then its job). [`queue_job`] makes them again, atomically for the key.
pub(super) async fn precheck(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    event: &ImageRequested,
    edit: Option<&serde_json::Value>,
) -> Result<Option<JobId>, ApiError> {
    refuse_when_full(state, &Hold::new(state, headers)).await?;
    let Some(key) = caller_key(headers, caller)? else { return Ok(None) };
    match state.idempotency.claimed(&key).await.map_err(unavailable)? {
        Some(existing) if existing.fingerprint == request_fingerprint(event, edit) => Ok(Some(existing.job_id)),
        _ => Ok(None),
    }
}

/// 503 when a job could not be taken now: NATS away (past the hold), the queue or the
/// picture bucket full.
async fn refuse_when_full(state: &AppState, hold: &Hold) -> Result<(), ApiError> {
    // While NATS is away the client would buffer the publish and send it on reconnect,
    // after we answered 503: a job the client was told is not queued. Refuse up front.
    if !hold.connected(state).await {
        return Err(ApiError::queue_unavailable());
    }
    // Both read NATS (at most once a second, each within a second): side by side, so a
    // NATS that just went away costs a client one second here, not two.
    let (queue, bucket) = tokio::join!(state.queue.is_full(), refuse_when_bucket_full(state));
    if let Some(waiting) = queue {
        let message =
            format!("the queue is full ({waiting} jobs waiting, [server] max_queued_jobs); try again shortly");
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).retry_after(5));
    }
    bucket
}

/// 503 when the picture bucket has no room ([nats] bucket_max_bytes): a job, an upload
/// or an edit's input would only fail on the way.
pub(super) async fn refuse_when_bucket_full(state: &AppState) -> Result<(), ApiError> {
    match state.bucket.is_full().await {
        Some(usage) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the picture bucket is full ({} of {} MB, [nats] bucket_max_bytes); try again shortly",
                usage.bytes >> 20,
                usage.max_bytes.unwrap_or_default() >> 20
            ),
        )
        .retry_after(30)),
        None => Ok(()),
    }
}

pub(super) fn unavailable(error: PartError) -> ApiError {
    tracing::warn!(%error, "cannot queue a job");
    ApiError::queue_unavailable()
}

/// The request's `Idempotency-Key`, as the caller's own (each API key has its own keys).
pub(super) fn caller_key(headers: &HeaderMap, caller: &Caller) -> Result<Option<String>, ApiError> {
    Ok(idempotency_key(headers)?.map(|key| match caller.owner() {
        Some(name) => format!("api-key-{name}:{key}"),
        None => key,
    }))
}

/// 429 when the caller's key has queued its `jobs_per_day` today. Counted before the job
/// is published, so a refused job never reaches NATS.
async fn take_quota(state: &AppState, caller: &Caller, hold: &Hold) -> Result<(), ApiError> {
    let (Some(name), Some(per_day)) = (caller.owner(), caller.jobs_per_day()) else { return Ok(()) };
    match hold.on(state, || state.quotas.take(name, per_day)).await.map_err(unavailable)? {
        Quota::Taken => Ok(()),
        Quota::Exceeded { resets_at } => {
            metrics::counter!("huiying_quota_refusals_total", "key" => name.to_string()).increment(1);
            let wait = resets_at - state.quotas.now();
            Err(ApiError::quota_exceeded(per_day.get(), resets_at, wait))
        }
    }
}

/// What a request means, for its key: a key reused for another meaning is refused.
fn request_fingerprint(event: &ImageRequested, edit: Option<&serde_json::Value>) -> String {
    let meaning = (&event.prompt, &event.model, &event.notify_email, &event.options);
    // The webhook joined the request later: keys of requests without one keep their meaning.
    match (&event.callback.webhook, edit) {
        (None, None) => fingerprint(&meaning),
        (_, None) => fingerprint(&(meaning, &event.callback)),
        (_, Some(edit)) => fingerprint(&(meaning, &event.callback, edit)),
    }
}

/// Queues `event` as job `id`: checks the queue, claims its `Idempotency-Key` (each API
/// key has its own), records the job as queued and publishes it. Returns the job's id:
/// `id`, or the earlier job's when the same request came with the same key. `edit` is what
/// else the request meant (an edit's kind and inputs) for the key's fingerprint.
pub(super) async fn queue_job(
    state: &AppState,
    headers: &HeaderMap,
    caller: &Caller,
    id: JobId,
    event: ImageRequested,
    edit: Option<serde_json::Value>,
) -> Result<JobId, ApiError> {
    let event = ImageRequested { id: id.to_string(), owner: caller.owner().map(String::from), ..event };
    // What the request means is fingerprinted with its targets; they travel beside the
    // job, not in its events.
    let fingerprint = request_fingerprint(&event, edit.as_ref());
    let (event, targets) = targets_apart(event);
    let idempotency_key = caller_key(headers, caller)?;
    let hold = Hold::new(state, headers);
    refuse_when_full(state, &hold).await?;
    // A request repeated under its Idempotency-Key is its first job again: no new quota.
    let repeated = match &idempotency_key {
        Some(key) => hold.on(state, || state.idempotency.claimed(key)).await.map_err(unavailable)?.is_some(),
        None => false,
    };
    if !repeated {
        let routing = &state.settings.routing;
        let model = event.model.clone().unwrap_or_else(|| match event.kind {
            JobKind::Generate => routing.default_model(),
            _ => routing.default_edit_model(),
        });
        state.spend.check(caller.owner(), &model, event.options.quality.as_deref()).await?;
        take_quota(state, caller, &hold).await?;
    }
    if let Some(key) = &idempotency_key {
        let claimed = Claimed { job_id: id.clone(), fingerprint };
        match hold.on(state, || state.idempotency.claim(key, &claimed)).await.map_err(unavailable)? {
            Claim::New => {}
            Claim::Existing(existing) if existing.fingerprint != claimed.fingerprint => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "this Idempotency-Key was used for a different request; use a new key for a new request",
                ));
            }
            // The same request again: its job, not a second one. If that job is still
            // queued, the first try may have failed, or timed out after JetStream stored it
            // (a cluster electing a leader): publish it again under the same id, which
            // JetStream drops (by its Nats-Msg-Id) when the first copy arrived.
            Claim::Existing(existing) => {
                let job_id = existing.job_id;
                if matches!(
                    state.jobs.get(&job_id).await,
                    Ok(None) | Ok(Some(JobStatus { status: JobState::Queued, .. }))
                ) {
                    let again = ImageRequested { id: job_id.to_string(), ..event };
                    let queued = JobStatus::new(&job_id, JobState::Queued, &again.prompt, again.model.as_deref());
                    let queued = queued.of_kind(again.kind).owned_by(again.owner.as_deref());
                    hold.on(state, || state.jobs.set(&queued)).await.map_err(unavailable)?;
                    if !targets.is_empty() {
                        hold.on(state, || state.jobs.set_targets(&job_id, &targets)).await.map_err(unavailable)?;
                    }
                    hold.on(state, || parts::publish(&*state.publisher, &again)).await.map_err(unavailable)?;
                }
                return Ok(job_id);
            }
        }
    }

    // The first state and the event go out together rather than one after the other (on
    // one node the server still stores them in turn; on a cluster their replication
    // rounds overlap). The state is create-only: a generator that took the job already
    // is never set back to `queued`.
    let queued = JobStatus::new(&id, JobState::Queued, &event.prompt, event.model.as_deref())
        .of_kind(event.kind)
        .owned_by(event.owner.as_deref());
    // Before the event: the mailer and the webhook service look for them when it ends.
    if !targets.is_empty() {
        hold.on(state, || state.jobs.set_targets(&id, &targets)).await.map_err(unavailable)?;
    }
    let publish = hold.on(state, || parts::publish(&*state.publisher, &event));
    let (recorded, published) = tokio::join!(state.jobs.open(&queued), publish);
    if let Err(e) = published {
        // The key keeps its job: the publish may have been stored although its answer was
        // lost, and a retry with the key publishes the same job again (see above).
        return Err(unavailable(e));
    }
    if let Err(e) = recorded {
        // The job is queued and will run (a 503 would invite a second one); its state
        // shows once the generator takes it.
        tracing::warn!(job = %event.id, error = %e, "queued, but its first state was not recorded");
    }
    state.queue.queued();
    let key = event.owner.clone().unwrap_or_default();
    metrics::counter!("huiying_jobs_accepted_total", "kind" => event.kind.name(), "key" => key).increment(1);
    tracing::info!(job = %id, kind = event.kind.name(), key = event.owner.as_deref().unwrap_or("-"), "queued");
    Ok(id)
}

/// The request without its notification targets, and the targets: they stay beside the
/// job (`<id>.notify`), out of the events every subscriber reads.
fn targets_apart(mut event: ImageRequested) -> (ImageRequested, NotifyTargets) {
    let targets =
        NotifyTargets { notify_email: event.notify_email.take(), callback: std::mem::take(&mut event.callback) };
    (event, targets)
}

//! Putting a job on the queue, for every route that makes one: the queue's bound, the
//! request's `Idempotency-Key`, the job's first state and its `image.requested`.

use axum::Extension;
use axum::http::{HeaderMap, StatusCode};

use super::AppState;
use super::access::KeyNumber;
use super::body::idempotency_key;
use super::error::ApiError;
use super::idempotency::{Claim, Claimed, fingerprint};
use crate::contract::events::ImageRequested;
use crate::contract::jobs::{JobState, JobStatus};
use crate::contract::values::JobId;
use crate::parts::{self, PartError};

/// Queues `event` as job `id`: checks the queue, claims its `Idempotency-Key` (each API
/// key has its own), records the job as queued and publishes it. Returns the job's id:
/// `id`, or the earlier job's when the same request came with the same key. `edit` is what
/// else the request meant (an edit's kind and inputs) for the key's fingerprint.
pub(super) async fn queue_job(
    state: &AppState,
    headers: &HeaderMap,
    api_key: Option<Extension<KeyNumber>>,
    id: JobId,
    event: ImageRequested,
    edit: Option<serde_json::Value>,
) -> Result<JobId, ApiError> {
    let event = ImageRequested { id: id.to_string(), ..event };
    let idempotency_key = idempotency_key(headers)?.map(|key| match api_key {
        Some(Extension(number)) => format!("api-key-{}:{key}", number.0),
        None => key,
    });
    // While NATS is away the client would buffer the publish and send it on reconnect,
    // after we answered 503: a job the client was told is not queued. Refuse up front.
    if !state.publisher.is_connected() {
        return Err(ApiError::queue_unavailable());
    }
    if let Some(waiting) = state.queue.is_full().await {
        let message =
            format!("the queue is full ({waiting} jobs waiting, [server] max_queued_jobs); try again shortly");
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).retry_after(5));
    }
    let unavailable = |e: PartError| {
        tracing::warn!(error = %e, "cannot queue a job");
        ApiError::queue_unavailable()
    };
    if let Some(key) = &idempotency_key {
        let meaning = (&event.prompt, &event.model, &event.notify_email, &event.options);
        // The webhook joined the request later: keys of requests without one keep their meaning.
        let fingerprint = match (&event.callback.webhook, &edit) {
            (None, None) => fingerprint(&meaning),
            (_, None) => fingerprint(&(meaning, &event.callback)),
            (_, Some(edit)) => fingerprint(&(meaning, &event.callback, edit)),
        };
        let claimed = Claimed { job_id: id.clone(), fingerprint };
        match state.idempotency.claim(key, &claimed).await.map_err(unavailable)? {
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
                    state.jobs.set(&queued.of_kind(again.kind)).await.map_err(unavailable)?;
                    parts::publish(&*state.publisher, &again).await.map_err(unavailable)?;
                }
                return Ok(job_id);
            }
        }
    }

    // The first state and the event go out together rather than one after the other (on
    // one node the server still stores them in turn; on a cluster their replication
    // rounds overlap). The state is create-only: a generator that took the job already
    // is never set back to `queued`.
    let queued = JobStatus::new(&id, JobState::Queued, &event.prompt, event.model.as_deref()).of_kind(event.kind);
    let (recorded, published) = tokio::join!(state.jobs.open(&queued), parts::publish(&*state.publisher, &event));
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
    metrics::counter!("huiying_jobs_accepted_total", "kind" => event.kind.name()).increment(1);
    tracing::info!(job = %id, kind = event.kind.name(), "queued");
    Ok(id)
}

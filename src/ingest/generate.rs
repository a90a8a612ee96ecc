//! `POST /generate-image`: check the request (who it may notify: [`super::notify_targets`]),
//! record the job as queued, publish `image.requested` (answering only after JetStream
//! stored it) and, unless the client prefers an asynchronous answer, wait for the job to
//! finish.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::AppState;
use super::access::KeyNumber;
use super::body::{
    DeadlineValue, WaitPreference, idempotency_key, json_body, parse_object, preferred_wait, prefers_async,
};
use super::error::{ApiError, ErrorBody};
use super::idempotency::{Claim, Claimed, fingerprint};
use super::notify_targets::{check_recipient, check_webhook, check_webhook_address};
use crate::config::{SmtpConfig, WebhooksConfig};
use crate::contract::events::{
    EVENT_VERSION, GenerationOptions, ImageCompleted, ImageRequested, RequestWebhook, Stage,
};
use crate::contract::jobs::{JobState, JobStatus};
use crate::contract::values::{JobId, ModelName, Prompt};
use crate::parts;

/// The body of `POST /generate-image`, as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GenerateRequest {
    /// What to draw: 1 to 4000 characters, not only spaces.
    #[schema(min_length = 1, max_length = 4000, example = "一只在雪地里的红狐狸")]
    prompt: String,
    /// A model name (`GET /models`); absent: the server's default.
    #[serde(default)]
    model: Option<String>,
    /// Mail the outcome to this address instead of `[smtp] to` (must be allowed).
    #[serde(default)]
    notify_email: Option<String>,
    /// `WIDTHxHEIGHT`, each side 64 to 4096, for models that take a size.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{2,4}x[0-9]{2,4}$", example = "1024x1024")]
    size: Option<String>,
    /// Pictures per job: only 1.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1)]
    n: Option<u32>,
    #[serde(default)]
    negative_prompt: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    quality: Option<String>,
    #[serde(default)]
    style: Option<String>,
    /// `url` (the default) or `b64_json`: the picture itself in the answer too.
    #[serde(default)]
    #[schema(pattern = "^(url|b64_json)$")]
    response_format: Option<String>,
    /// Who asks, as the client names them (OpenAI's `user`); kept on the record.
    #[serde(default)]
    user: Option<String>,
    /// A webhook of the request's own (must start with one of `[webhooks] allowed_urls`).
    #[serde(default)]
    webhook: Option<String>,
    #[serde(default)]
    webhook_events_filter: Option<Vec<String>>,
    /// Seconds from now, or an RFC 3339 time: not at the model by then, the job is cancelled.
    #[serde(default)]
    deadline: Option<DeadlineValue>,
}

/// A request that passed every check: what the job is made of.
struct NewJob {
    prompt: Prompt,
    model: Option<ModelName>,
    notify_email: Option<String>,
    options: GenerationOptions,
    callback: RequestWebhook,
    user: Option<String>,
    with_picture: bool,
    deadline: Option<OffsetDateTime>,
}

impl GenerateRequest {
    fn parse(self, smtp: &SmtpConfig, webhooks: &WebhooksConfig) -> Result<NewJob, ApiError> {
        let prompt = Prompt::parse(self.prompt)?;
        // Its own fields rather than a flattened struct: serde cannot deny unknown fields
        // through a flatten.
        let options = GenerationOptions {
            size: self.size,
            n: self.n,
            negative_prompt: self.negative_prompt,
            seed: self.seed,
            quality: self.quality,
            style: self.style,
        };
        options.check()?;
        let model = self.model.filter(|m| !m.trim().is_empty()).map(ModelName::parse).transpose()?;
        if let Some(address) = &self.notify_email {
            check_recipient(address, smtp)?;
        }
        let callback = RequestWebhook { webhook: self.webhook, webhook_events_filter: self.webhook_events_filter };
        check_webhook(&callback, webhooks)?;
        let with_picture = match self.response_format.as_deref() {
            None | Some("url") => false,
            Some("b64_json") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!("response_format must be url or b64_json, got {other:?}")));
            }
        };
        if let Some(user) = &self.user
            && (user.chars().count() > 200 || user.chars().any(char::is_control))
        {
            return Err(ApiError::bad_request("user must be at most 200 characters, without control characters"));
        }
        let deadline = self.deadline.map(|d| d.at(OffsetDateTime::now_utc())).transpose()?;
        Ok(NewJob {
            prompt,
            model,
            notify_email: self.notify_email,
            options,
            callback,
            user: self.user,
            with_picture,
            deadline,
        })
    }
}

#[utoipa::path(
    post, path = "/generate-image", tag = "generate",
    summary = "Draw a picture from a prompt",
    description = "Queues a job. Waits up to `[server] timeout` for the picture unless `Prefer: respond-async` (202 at once) or `Prefer: wait=N`. `Idempotency-Key` makes a retry return the same job.",
    request_body = GenerateRequest,
    params(
        ("Prefer" = Option<String>, Header, description = "`respond-async`, `wait` or `wait=N` (RFC 7240)"),
        ("Idempotency-Key" = Option<String>, Header, description = "the same key and request give the same job"),
    ),
    responses(
        (status = 200, description = "The picture", body = serde_json::Value),
        (status = 202, description = "Queued; follow `status_url`", body = serde_json::Value),
        (status = 400, description = "Bad request", body = ErrorBody),
        (status = 409, description = "Cancelled while waiting", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused for another request", body = ErrorBody),
        (status = 502, description = "The model failed", body = ErrorBody),
        (status = 503, description = "The queue is full or unavailable", body = ErrorBody),
    )
)]
pub(super) async fn generate_image(
    State(state): State<AppState>,
    api_key: Option<Extension<KeyNumber>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(&headers, body)?;
    let request: GenerateRequest = parse_object(&body, r#"{"prompt": "..."}"#)?;
    let job = request.parse(&state.smtp, &state.webhooks)?;
    if let Some(url) = &job.callback.webhook {
        check_webhook_address(url, &state.webhooks).await?;
    }
    let event = ImageRequested {
        version: EVENT_VERSION,
        id: JobId::random().to_string(),
        options: job.options,
        model: job.model.map(String::from),
        prompt: job.prompt.into(),
        notify_email: job.notify_email,
        callback: job.callback,
        user: job.user,
        kind: Default::default(),
        inputs: Vec::new(),
        requested_at: OffsetDateTime::now_utc(),
        deadline: job.deadline,
    };
    let id = queue_job(&state, &headers, api_key, event, None).await?;
    answer_for_job(&state, &headers, id, job.with_picture).await
}

/// Queues `event`: checks the queue, claims its `Idempotency-Key` (each API key has its
/// own), records the job as queued and publishes it. Returns the job's id: the event's,
/// or the earlier job's when the same request came with the same key. `edit` is what
/// else the request meant (an edit's kind and inputs) for the key's fingerprint.
pub(super) async fn queue_job(
    state: &AppState,
    headers: &HeaderMap,
    api_key: Option<Extension<KeyNumber>>,
    event: ImageRequested,
    edit: Option<serde_json::Value>,
) -> Result<String, ApiError> {
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
    let unavailable = |e: crate::bus::BusError| {
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
        let claimed = Claimed { job_id: event.id.clone(), fingerprint };
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
                    let again = ImageRequested { id: job_id.clone(), ..event };
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
    let queued = JobStatus::new(&event.id, JobState::Queued, &event.prompt, event.model.as_deref()).of_kind(event.kind);
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
    tracing::info!(job = %event.id, kind = event.kind.name(), "queued");
    Ok(event.id)
}

/// Largest picture read back into an answer.
const MAX_PICTURE_BYTES: usize = 50 * 1024 * 1024;

/// The stored picture's bytes: from `images_dir` when a store on this host wrote it, else
/// from its S3 / R2 link (a store on another host wrote it).
async fn stored_picture(state: &AppState, done: &ImageCompleted) -> Option<Vec<u8>> {
    let path = state.images_dir.join(&done.filename);
    let local_error = match tokio::fs::read(&path).await {
        Ok(bytes) => return Some(bytes),
        Err(error) => error,
    };
    let Some(url) = &done.r2_url else {
        tracing::warn!(error = %local_error, path = %path.display(), "the stored picture cannot be read back");
        return None;
    };
    let fetched = async {
        let response = state.http.get(url).send().await?.error_for_status()?;
        response.bytes().await
    };
    match fetched.await {
        Ok(bytes) if bytes.len() <= MAX_PICTURE_BYTES => Some(bytes.to_vec()),
        Ok(bytes) => {
            tracing::warn!(%url, size = bytes.len(), "the stored picture is too large to answer with");
            None
        }
        Err(error) => {
            tracing::warn!(%url, %error, "the stored picture cannot be fetched from its link");
            None
        }
    }
}

/// The answer for a queued job: 202 at once when the client prefers it, else the result
/// once the job ends (or 202 when `[server] timeout` passes first). `with_picture` puts the
/// picture in the answer as `b64_json` too.
async fn answer_for_job(
    state: &AppState,
    headers: &HeaderMap,
    id: String,
    with_picture: bool,
) -> Result<Response, ApiError> {
    let accepted = || {
        let body = json!({
            "id": id,
            "status": "queued",
            "status_url": format!("{}/jobs/{id}", state.public_base_url),
        });
        (StatusCode::ACCEPTED, Json(body)).into_response()
    };
    if prefers_async(headers) {
        return Ok(accepted());
    }
    let wait = match preferred_wait(headers) {
        WaitPreference::Seconds(seconds) => seconds,
        WaitPreference::None | WaitPreference::ServerDefault => state.wait_timeout,
    };
    let finished = match state.jobs.wait_until_final(&id, wait).await {
        Ok(finished) => finished,
        Err(error) => {
            // The job is queued and will run: say so (a 503 would invite a second job).
            tracing::warn!(%error, job = %id, "cannot follow a job; answering with its status URL");
            return Ok(accepted());
        }
    };
    match finished {
        Some(JobStatus { result: Some(done), .. }) => {
            let mut picture = json!({ "url": done.url, "revised_prompt": done.english_prompt });
            if with_picture {
                let bytes = stored_picture(state, &done).await.ok_or_else(|| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the picture is stored but cannot be read back")
                        .for_job(id.clone())
                })?;
                picture["b64_json"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
            let body = json!({ "id": id, "created": done.completed_at.unix_timestamp(), "data": [picture] });
            let mut response = Json(body).into_response();
            // What the model could not honour and left out (`[server] strict_options` refuses instead).
            if !done.ignored_options.is_empty()
                && let Ok(value) = done.ignored_options.join(", ").parse()
            {
                response.headers_mut().insert("huiying-ignored", value);
            }
            Ok(response)
        }
        Some(JobStatus { error: Some(failed), .. }) => {
            let status = match failed.stage {
                Stage::Request => StatusCode::BAD_REQUEST,
                Stage::Generate => StatusCode::BAD_GATEWAY,
                Stage::Store => StatusCode::INTERNAL_SERVER_ERROR,
                // Nobody is left to answer but the canceller; say what became of it.
                Stage::Cancelled => StatusCode::CONFLICT,
            };
            Err(ApiError::new(status, failed.error).for_job(id))
        }
        // Still running when the wait ended: the client polls status_url.
        _ => Ok(accepted()),
    }
}

//! `POST /generate-image`: check the request (who it may notify: [`super::notify_targets`]),
//! record the job as queued, publish `image.requested` (answering only after JetStream
//! stored it) and, unless the client prefers an asynchronous answer, wait for the job to
//! finish.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::AppState;
use super::access::Caller;
use super::body::{DeadlineValue, json_body, parse_object, preferred_wait, prefers_async};
use super::error::{ApiError, ErrorBody};
use super::groups::{Queued, answer_for_group, meaning_of, n_pictures, queue_group};
use super::notify_targets::{check_recipient, check_webhook, check_webhook_address};
use super::queueing::queue_job;
use crate::config::{AllowedRecipients, WebhooksConfig};
use crate::contract::cost::Cost;
use crate::contract::events::{
    EVENT_VERSION, GenerationOptions, ImageCompleted, ImageFailed, ImageRequested, RequestWebhook, Stage,
};
use crate::contract::groups::GroupNotify;
use crate::contract::jobs::JobStatus;
use crate::contract::values::{JobId, ModelName, Prompt};

/// The body of `POST /generate-image`, as sent.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
    /// Pictures: 1 to `[server] max_n` (10); each is a job of its own, one mail for all.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10)]
    n: Option<u32>,
    #[serde(default)]
    negative_prompt: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    quality: Option<String>,
    #[serde(default)]
    style: Option<String>,
    /// Parameters of the model's own API with no field here, e.g.
    /// `{"image_config": {"aspect_ratio": "16:9"}}` for Gemini on OpenRouter: passed where
    /// the provider allows them, else left out and named in `Huiying-Ignored`.
    #[serde(default)]
    #[schema(value_type = Object)]
    extra: serde_json::Map<String, serde_json::Value>,
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
    /// How many pictures (jobs).
    n: u32,
}

impl GenerateRequest {
    fn parse(self, recipients: &AllowedRecipients, webhooks: &WebhooksConfig, max_n: u32) -> Result<NewJob, ApiError> {
        let prompt = Prompt::parse(self.prompt)?;
        let n = self.n.unwrap_or(1);
        if n == 0 || n > max_n {
            return Err(ApiError::bad_request(format!("n must be from 1 to {max_n} ([server] max_n), got {n}")));
        }
        // Its own fields rather than a flattened struct: serde cannot deny unknown fields
        // through a flatten.
        let options = GenerationOptions {
            size: self.size,
            // Each job makes one picture: n pictures are n jobs.
            n: None,
            negative_prompt: self.negative_prompt,
            seed: self.seed,
            quality: self.quality,
            style: self.style,
            extra: self.extra,
        };
        options.check()?;
        let model = self.model.filter(|m| !m.trim().is_empty()).map(ModelName::parse).transpose()?;
        if let Some(address) = &self.notify_email {
            check_recipient(address, recipients)?;
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
            n,
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
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    match queue_generation(&state, &caller, &headers, body).await? {
        (Queued::Job(id), with_picture) => answer_for_job(&state, &headers, id, with_picture).await,
        (Queued::Group(group), with_picture) => answer_for_group(&state, &headers, &group, with_picture).await,
    }
}

/// Checks a generation request and queues it: its job, and whether the picture itself
/// goes in the answer.
pub(super) async fn queue_generation(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Queued, bool), ApiError> {
    let body = json_body(headers, body)?;
    let (event, n, with_picture) = requested(state, &body).await?;
    let queued = match n {
        1 => Queued::Job(queue_job(state, headers, caller, JobId::random(), event, None).await?),
        n => {
            let meaning = meaning_of("generate-image", &body);
            Queued::Group(
                queue_group(state, headers, caller, n_pictures(event, n), GroupNotify::Summary, meaning).await?,
            )
        }
    };
    Ok((queued, with_picture))
}

/// A generation request's body checked into the job it asks for, with its `n` and
/// whether the picture itself goes in the answer.
pub(super) async fn requested(state: &AppState, body: &[u8]) -> Result<(ImageRequested, u32, bool), ApiError> {
    let request: GenerateRequest = parse_object(body, r#"{"prompt": "..."}"#)?;
    let settings = &state.settings;
    let job = request.parse(&settings.recipients, &settings.webhooks, settings.max_n)?;
    if let Some(url) = &job.callback.webhook {
        check_webhook_address(url, &settings.webhooks).await?;
    }
    let event = ImageRequested {
        version: EVENT_VERSION,
        id: String::new(),
        options: job.options,
        model: job.model.map(String::from),
        prompt: job.prompt.into(),
        notify_email: job.notify_email,
        callback: job.callback,
        user: job.user,
        owner: None,
        kind: Default::default(),
        inputs: Vec::new(),
        group: None,
        requested_at: OffsetDateTime::now_utc(),
        deadline: job.deadline,
    };
    Ok((event, job.n, job.with_picture))
}

/// Largest picture read back into an answer.
const MAX_PICTURE_BYTES: usize = 50 * 1024 * 1024;

/// The answer for a queued job: 202 at once when the client prefers it, else the result
/// once the job ends (or 202 when `[server] timeout` passes first). `with_picture` puts the
/// picture in the answer as `b64_json` too.
pub(super) async fn answer_for_job(
    state: &AppState,
    headers: &HeaderMap,
    id: JobId,
    with_picture: bool,
) -> Result<Response, ApiError> {
    let accepted = || {
        let body = json!({
            "id": id,
            "status": "queued",
            "status_url": format!("{}/jobs/{id}", state.settings.public_base_url),
        });
        (StatusCode::ACCEPTED, Json(body)).into_response()
    };
    if prefers_async(headers) {
        return Ok(accepted());
    }
    let wait = preferred_wait(headers).or(state.settings.wait_timeout, state.settings.wait_timeout);
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
            let picture = picture_of(state, &done, with_picture).await?;
            let created = done.completed_at.unix_timestamp();
            let body = json!({ "id": id, "created": created, "data": [picture], "usage": usage(&done.cost) });
            let mut response = Json(body).into_response();
            if let Ok(value) = done.cost.describe().parse() {
                response.headers_mut().insert("huiying-cost", value);
            }
            // What the model could not honour and left out (`[server] strict_options` refuses instead).
            if !done.ignored_options.is_empty()
                && let Ok(value) = done.ignored_options.join(", ").parse()
            {
                response.headers_mut().insert("huiying-ignored", value);
            }
            Ok(response)
        }
        Some(JobStatus { error: Some(failed), .. }) => Err(failure_of(failed)),
        // Still running when the wait ended: the client polls status_url.
        _ => Ok(accepted()),
    }
}

/// A stored picture as an answer's `data` item: its link, and with `with_picture` the
/// picture itself (`b64_json`).
pub(super) async fn picture_of(state: &AppState, done: &ImageCompleted, with_picture: bool) -> Result<Value, ApiError> {
    let mut picture = json!({ "url": done.url, "revised_prompt": done.english_prompt });
    if with_picture {
        let read = state.pictures.read(&done.filename, done.r2_url.as_deref(), MAX_PICTURE_BYTES).await;
        let bytes = read.map_err(|error| {
            tracing::warn!(job = %done.id, %error, "the stored picture cannot be read back");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the picture is stored but cannot be read back")
                .for_job(done.id.to_string())
        })?;
        picture["b64_json"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    Ok(picture)
}

/// The answer for a job that ended without a picture.
pub(super) fn failure_of(failed: ImageFailed) -> ApiError {
    let id = failed.id.to_string();
    if failed.stage == Stage::Budget {
        return ApiError::over_budget(failed.error, failed.budget).for_job(id);
    }
    let status = match failed.stage {
        Stage::Budget | Stage::Request => StatusCode::BAD_REQUEST,
        Stage::Generate => StatusCode::BAD_GATEWAY,
        Stage::Store => StatusCode::INTERNAL_SERVER_ERROR,
        // Nobody is left to answer but the canceller; say what became of it.
        Stage::Cancelled => StatusCode::CONFLICT,
    };
    ApiError::new(status, failed.error).for_job(id)
}

/// `usage` of an answer, as OpenAI's Images API has it: the provider's own (its tokens),
/// with what the picture cost and how that is known.
pub(super) fn usage(cost: &Cost) -> Value {
    let mut usage = match &cost.usage {
        Some(Value::Object(fields)) => Value::Object(fields.clone()),
        _ => json!({}),
    };
    usage["cost_usd"] = json!(cost.cost_usd);
    usage["cost_source"] = json!(cost.cost_source.name());
    usage
}

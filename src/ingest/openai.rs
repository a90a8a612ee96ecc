//! The OpenAI Images API, for programs that already speak it: point their base URL at
//! `<huiying>/v1`. `POST /v1/images/generations` is `POST /generate-image` with OpenAI's
//! fields and OpenAI's error shape (`{"error": {"message", "type", "param", "code"}}`);
//! `GET /v1/models` lists the configured models.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::access::Caller;
use super::error::ApiError;
use super::generate::{answer_for_job, queue_generation};
use super::groups::{Queued, answer_for_group};
use super::idempotency::fingerprint;
use crate::contract::values::JobId;

/// OpenAI's request fields; any other is refused, naming it, as OpenAI does.
const FIELDS: [&str; 12] = [
    "prompt",
    "model",
    "n",
    "size",
    "quality",
    "style",
    "response_format",
    "user",
    "background",
    "moderation",
    "output_compression",
    "output_format",
];

/// gpt-image's fields: they go to the model as `extra` parameters, so a model that has
/// no such thing leaves them out and names them (`extra.background`) in `Huiying-Ignored`.
const GPT_IMAGE_FIELDS: [&str; 4] = ["background", "moderation", "output_compression", "output_format"];

/// `POST /v1/images/generations`.
#[utoipa::path(
    post, path = "/v1/images/generations", tag = "openai", summary = "OpenAI Images API: generate",
    request_body = serde_json::Value,
    responses((status = 200, description = "`{created, data: [{url | b64_json, revised_prompt}]}`", body = serde_json::Value),
        (status = 400, description = "OpenAI's error shape", body = serde_json::Value))
)]
pub(super) async fn generations(
    State(state): State<AppState>,
    caller: Caller,
    mut headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Ok(body) = &body
        && let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body)
        && let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str()))
    {
        return error(StatusCode::BAD_REQUEST, &format!("unknown parameter {unknown:?}"), Some(unknown));
    }
    // OpenAI's clients expect the picture in the answer, not a job to follow: the answer
    // waits as long as their own timeout (600 s in the official SDKs) while they stay
    // connected, rather than [server] timeout, after which they would call again.
    headers.insert("prefer", HeaderValue::from_static("wait=600"));
    let body = body.map(gpt_image_fields_as_extra);
    let answer = match queue_or_join(&state, &caller, &headers, body).await {
        Ok((Queued::Job(id), with_picture)) => answer_for_job(&state, &headers, id, with_picture).await.into_response(),
        Ok((Queued::Group(group), with_picture)) => {
            answer_for_group(&state, &headers, &group, with_picture).await.into_response()
        }
        Err(refused) => refused.into_response(),
    };
    in_openai_shape(answer).await
}

/// One of huiying's answers as OpenAI's Images API gives it: a picture as it is, an error
/// in OpenAI's shape (a job still running when the wait ended: 504).
pub(super) async fn in_openai_shape(answer: Response) -> Response {
    if answer.status() == StatusCode::OK {
        return answer;
    }
    let (parts, body) = answer.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let ours: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    match parts.status {
        // Still running when the wait ended: no picture to give. The job goes on.
        StatusCode::ACCEPTED => error(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "the picture was not ready in time; job {} goes on at /jobs/{}",
                ours["id"].as_str().unwrap_or("?"),
                ours["id"].as_str().unwrap_or("?")
            ),
            None,
        ),
        // Over a budget: OpenAI's word for it as the type, ours (`budget_exceeded`) as the code.
        StatusCode::PAYMENT_REQUIRED => {
            let body = json!({"error": {"message": ours["error"], "type": "insufficient_quota", "param": Value::Null,
                "code": ours["type"]}});
            (StatusCode::PAYMENT_REQUIRED, Json(body)).into_response()
        }
        status => error(status, ours["error"].as_str().unwrap_or("the request failed"), None),
    }
}

/// The body with gpt-image's fields moved under `extra` (a body that is not a JSON
/// object is left as it is, for the usual error).
fn gpt_image_fields_as_extra(body: Bytes) -> Bytes {
    let Ok(Value::Object(mut fields)) = serde_json::from_slice::<Value>(&body) else { return body };
    let extra: serde_json::Map<String, Value> =
        GPT_IMAGE_FIELDS.iter().filter_map(|name| Some((name.to_string(), fields.remove(*name)?))).collect();
    if extra.is_empty() {
        return body;
    }
    fields.insert("extra".into(), Value::Object(extra));
    Bytes::from(serde_json::to_vec(&fields).expect("JSON serializes"))
}

/// The job (or group) for this request. The official SDKs call again after a timeout or
/// a 5xx, counting in `x-stainless-retry-count`, with the same body: a retry joins what its
/// first call started (same caller, same body), so one call never pays for two pictures.
async fn queue_or_join(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Queued, bool), ApiError> {
    let retry = headers.get("x-stainless-retry-count").and_then(|v| v.to_str().ok()?.trim().parse::<u32>().ok());
    let asker = caller.owner().unwrap_or("no key").to_string();
    // Only calls of such an SDK are remembered and matched: others pay nothing for it.
    let request = retry.and(body.as_ref().ok()).map(|body| fingerprint(&String::from_utf8_lossy(body)));
    if let (Some(1..), Some(request), Ok(body)) = (retry, &request, &body)
        && let Ok(Some(id)) = state.retried.job_of(&asker, request).await
        && let Some(started) = started(state, id).await
    {
        tracing::info!("an SDK retry joins what its first call started");
        let with_picture = serde_json::from_slice::<Value>(body).is_ok_and(|r| r["response_format"] == "b64_json");
        return Ok((started, with_picture));
    }
    let (queued, with_picture) = queue_generation(state, caller, headers, body).await?;
    let id = match &queued {
        Queued::Job(id) => id.clone(),
        Queued::Group(group) => JobId::parse(group.id.as_str()).expect("a group id is a job id"),
    };
    if let (Some(_), Some(request)) = (retry, &request)
        && let Err(error) = state.retried.started(&asker, request, &id).await
    {
        tracing::warn!(%id, %error, "an SDK retry of this request will start a job of its own");
    }
    Ok((queued, with_picture))
}

/// The job or group `id` names, when it is there.
async fn started(state: &AppState, id: JobId) -> Option<Queued> {
    if let Ok(Some(_)) = state.jobs.get(&id).await {
        return Some(Queued::Job(id));
    }
    state.jobs.group(&id).await.ok().flatten().map(Queued::Group)
}

/// OpenAI's error shape; `type` as OpenAI names its classes of error.
pub(super) fn error(status: StatusCode, message: &str, param: Option<&str>) -> Response {
    let kind = match status.as_u16() {
        400 | 404 | 409 | 413 | 415 | 422 => "invalid_request_error",
        401 | 403 => "authentication_error",
        429 => "rate_limit_error",
        _ => "server_error",
    };
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": Value::Null}});
    (status, Json(body)).into_response()
}

/// `GET /v1/models`: the models this server is configured for.
#[utoipa::path(
    get, path = "/v1/models", tag = "openai", summary = "OpenAI API: the configured models",
    responses((status = 200, body = serde_json::Value))
)]
pub(super) async fn models(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = super::models::configured(&state.settings.routing)
        .into_iter()
        .map(|model| json!({"id": model.id, "object": "model", "created": 0, "owned_by": model.provider}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

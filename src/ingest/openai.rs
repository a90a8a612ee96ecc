//! The OpenAI Images API, for programs that already speak it: point their base URL at
//! `<huiying>/v1`. `POST /v1/images/generations` is `POST /generate-image` with OpenAI's
//! fields and OpenAI's error shape (`{"error": {"message", "type", "param", "code"}}`);
//! `GET /v1/models` lists the configured models.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::AppState;
use super::access::KeyNumber;
use super::generate::generate_image;

/// OpenAI's request fields; any other is refused, naming it, as `/generate-image` does.
const FIELDS: [&str; 8] = ["prompt", "model", "n", "size", "quality", "style", "response_format", "user"];

/// `POST /v1/images/generations`.
#[utoipa::path(
    post, path = "/v1/images/generations", tag = "openai", summary = "OpenAI Images API: generate",
    request_body = serde_json::Value,
    responses((status = 200, description = "`{created, data: [{url | b64_json, revised_prompt}]}`", body = serde_json::Value),
        (status = 400, description = "OpenAI's error shape", body = serde_json::Value))
)]
pub(super) async fn generations(
    state: State<AppState>,
    api_key: Option<Extension<KeyNumber>>,
    mut headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Ok(body) = &body
        && let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body)
        && let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str()))
    {
        return error(StatusCode::BAD_REQUEST, &format!("unknown parameter {unknown:?}"), Some(unknown));
    }
    // OpenAI's clients expect the picture in the answer, not a job to follow.
    headers.remove("prefer");
    let answer = generate_image(state, api_key, headers, body).await.into_response();
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
                "the picture was not ready within [server] timeout; job {} goes on at /jobs/{}",
                ours["id"].as_str().unwrap_or("?"),
                ours["id"].as_str().unwrap_or("?")
            ),
            None,
        ),
        status => error(status, ours["error"].as_str().unwrap_or("the request failed"), None),
    }
}

/// OpenAI's error shape; `type` as OpenAI names its classes of error.
fn error(status: StatusCode, message: &str, param: Option<&str>) -> Response {
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

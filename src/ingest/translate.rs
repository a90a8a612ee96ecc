//! `POST /translate {"text"}` → `{"translated_text", "success"}`, as the original service
//! answered. Without a translator, or when it fails, the text comes back unchanged with
//! `success: false` and the reason in `error`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::body::{json_body, parse_object};
use super::error::{ApiError, ErrorBody};
use crate::contract::values::MAX_PROMPT_CHARS;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(super) struct TranslateRequest {
    text: String,
}

#[utoipa::path(
    post, path = "/translate", tag = "generate", summary = "Translate a Chinese prompt to English",
    request_body = TranslateRequest,
    responses((status = 200, body = serde_json::Value), (status = 400, description = "Bad request", body = ErrorBody),
        (status = 503, description = "No translator configured or it failed", body = ErrorBody))
)]
pub(super) async fn translate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(&headers, body)?;
    let request: TranslateRequest = parse_object(&body, r#"{"text": "..."}"#)?;
    if request.text.trim().is_empty() {
        return Err(ApiError::bad_request("text must not be empty"));
    }
    if request.text.chars().count() > MAX_PROMPT_CHARS {
        return Err(ApiError::bad_request(format!("text is longer than {MAX_PROMPT_CHARS} characters")));
    }
    // As the original: text without Chinese comes back as it is, with no model call.
    if !crate::translate::has_cjk(&request.text) {
        return Ok(Json(json!({"translated_text": request.text, "success": true})).into_response());
    }
    let Some(translator) = &state.translator else {
        let body = json!({
            "translated_text": request.text,
            "success": false,
            "error": "translation is not configured: set MODEL_SCOPE_TOKEN ([api_keys] model_scope_token)",
        });
        return Ok(Json(body).into_response());
    };
    let body = match translator.translate(&request.text).await {
        Ok(translated) => json!({"translated_text": translated, "success": true}),
        Err(error) => json!({"translated_text": request.text, "success": false, "error": error.to_string()}),
    };
    Ok(Json(body).into_response())
}

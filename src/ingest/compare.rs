//! `POST /compare`: the same request on several models, side by side. Each model's
//! picture is a job of one group (the same seed for all, so that only the model
//! differs); `GET /groups/{id}` shows each model's state, time and cost, and one mail
//! shows the pictures with the model names when all have ended.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use super::AppState;
use super::access::Caller;
use super::error::{ApiError, ErrorBody};
use super::generate::requested;
use super::groups::{answer_for_group, group_body, queue_group};
use crate::contract::groups::GroupNotify;
use crate::contract::values::ModelName;

#[utoipa::path(
    post, path = "/compare", tag = "generate",
    summary = "The same prompt on several models, side by side",
    description = "The body of `POST /generate-image` with `models` (2 to `[server] max_compare`) instead of `model`. Answers like a request with `n`: every picture in `data` (each names its model), or 202 with the group's `status_url`.",
    request_body = serde_json::Value,
    responses((status = 200, description = "The pictures", body = serde_json::Value),
        (status = 202, description = "Queued; follow `status_url`", body = serde_json::Value),
        (status = 400, description = "Bad request", body = ErrorBody))
)]
pub(super) async fn compare(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (mut fields, meaning) = group_body(&headers, body, "compare", r#"{"prompt": "...", "models": [...]}"#)?;
    let models = models(fields.remove("models"), state.settings.max_compare)?;
    if fields.contains_key("model") || fields.contains_key("n") {
        return Err(ApiError::bad_request("a comparison takes models (a list), not model or n"));
    }
    // The same seed for every model: only the model differs.
    let seed = fields.get("seed").and_then(Value::as_u64).unwrap_or_else(|| fastrand::u64(..u64::from(u32::MAX)));
    fields.insert("seed".into(), seed.into());
    let rest = serde_json::to_vec(&fields).expect("JSON serializes");
    let (request, _, with_picture) = requested(&state, &rest).await?;
    for model in &models {
        state.settings.routing.provider_for(model).map_err(ApiError::bad_request)?;
    }
    let jobs = models
        .into_iter()
        .map(|model| {
            let mut job = request.clone();
            job.model = Some(model.into());
            job
        })
        .collect();
    let group = queue_group(&state, &headers, &caller, jobs, GroupNotify::Summary, meaning).await?;
    answer_for_group(&state, &headers, &group, with_picture).await
}

/// The models to compare: 2 to `most`, each a valid name, none twice.
fn models(given: Option<Value>, most: u32) -> Result<Vec<ModelName>, ApiError> {
    let names: Vec<String> = given
        .and_then(|value| serde_json::from_value(value).ok())
        .ok_or_else(|| ApiError::bad_request("models must be a list of model names"))?;
    if names.len() < 2 || names.len() > most as usize {
        return Err(ApiError::bad_request(format!(
            "models names {} models; a comparison takes 2 to {most} ([server] max_compare)",
            names.len()
        )));
    }
    let mut models: Vec<ModelName> = Vec::with_capacity(names.len());
    for name in names {
        let model = ModelName::parse(name)?;
        if models.contains(&model) {
            return Err(ApiError::bad_request(format!("models names {model} twice")));
        }
        models.push(model);
    }
    Ok(models)
}

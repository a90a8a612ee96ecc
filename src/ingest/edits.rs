//! The original service's edit routes, through the pipeline: `POST /edit-image`,
//! `/compose-images`, `/style-transfer`, `/fusion-images` queue an edit job (kind and
//! input pictures on `image.requested`); `GET /preset-styles`. Following them:
//! [`super::edit_tasks`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AppState;
use super::access::Caller;
use super::body::{WaitPreference, json_body, parse_object, preferred_wait};
use super::edit_tasks::task_view;
use super::error::{ApiError, ErrorBody};
use super::queueing::{precheck, queue_job};
use super::uploads::resolve_input;
use crate::contract::events::{EVENT_VERSION, GenerationOptions, ImageRequested, JobKind};
use crate::contract::values::{JobId, ModelName, Prompt};

/// The original's preset styles: `style_type` of `/style-transfer` takes an `id`.
const PRESETS: [(&str, &str, &str, &str); 6] = [
    ("anime", "动漫风格", "将图片转换为动漫/卡通风格", "convert to anime style, cartoon style, vibrant colors"),
    (
        "oil_painting",
        "油画风格",
        "将图片转换为古典油画风格",
        "convert to oil painting style, classical painting, artistic brushstrokes",
    ),
    (
        "watercolor",
        "水彩画风格",
        "将图片转换为水彩画风格",
        "convert to watercolor painting style, soft colors, artistic",
    ),
    ("sketch", "素描风格", "将图片转换为铅笔素描风格", "convert to pencil sketch style, black and white drawing"),
    (
        "cyberpunk",
        "赛博朋克",
        "将图片转换为赛博朋克未来科技风格",
        "convert to cyberpunk style, neon lights, futuristic, high tech",
    ),
    ("vintage", "复古风格", "将图片转换为复古怀旧风格", "convert to vintage style, retro, old-fashioned, sepia tones"),
];

/// `GET /preset-styles`.
#[utoipa::path(
    get, path = "/preset-styles", tag = "edits", summary = "Preset styles for /style-transfer",
    responses((status = 200, body = serde_json::Value))
)]
pub(super) async fn preset_styles() -> Json<Value> {
    let styles: Vec<Value> = PRESETS
        .iter()
        .map(|(id, name, description, prompt)| json!({"id": id, "name": name, "description": description, "prompt": prompt}))
        .collect();
    Json(json!({ "styles": styles }))
}

/// Every edit body: the original's fields for the four routes, plus huiying's own
/// (`model`, `notify_email`, `size`, `seed`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub(super) struct EditBody {
    image_url: Option<String>,
    image_urls: Option<Vec<String>>,
    image1_url: Option<String>,
    image2_url: Option<String>,
    /// The original's record numbers; a picture by number when no URL is given.
    image_id: Option<i64>,
    image_ids: Option<Vec<i64>>,
    image1_id: Option<i64>,
    image2_id: Option<i64>,
    edit_prompt: Option<String>,
    compose_prompt: Option<String>,
    style_prompt: Option<String>,
    fusion_prompt: Option<String>,
    /// `/edit-image` only: a mask (PNG, transparent where the model may paint), for models
    /// that take one (OpenAI-compatible `/images/edits`).
    mask_url: Option<String>,
    /// A preset id (`anime`, ...): its prompt goes before `style_prompt`.
    style_type: Option<String>,
    /// 0 to 1: how much of the first picture the fusion keeps (said in the prompt).
    fusion_ratio: Option<f64>,
    model: Option<String>,
    notify_email: Option<String>,
    size: Option<String>,
    seed: Option<u64>,
    /// Seconds from now, or an RFC 3339 time: not at the model by then, the job is cancelled.
    deadline: Option<super::body::DeadlineValue>,
}

#[utoipa::path(
    post, path = "/edit-image", tag = "edits", summary = "Edit pictures (edit image)",
    request_body = EditBody,
    params(("Prefer" = Option<String>, Header, description = "`wait` or `wait=N` to wait for the result")),
    responses((status = 200, description = "The task (`task_id`, `status`, `status_url`)", body = serde_json::Value), (status = 400, description = "Bad request", body = ErrorBody),
        (status = 503, description = "The queue is unavailable", body = ErrorBody))
)]
pub(super) async fn edit_image(
    state: State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    submit(state, caller, headers, body, JobKind::Edit).await
}

#[utoipa::path(
    post, path = "/compose-images", tag = "edits", summary = "Edit pictures (compose images)",
    request_body = EditBody,
    params(("Prefer" = Option<String>, Header, description = "`wait` or `wait=N` to wait for the result")),
    responses((status = 200, description = "The task (`task_id`, `status`, `status_url`)", body = serde_json::Value), (status = 400, description = "Bad request", body = ErrorBody),
        (status = 503, description = "The queue is unavailable", body = ErrorBody))
)]
pub(super) async fn compose_images(
    state: State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    submit(state, caller, headers, body, JobKind::Compose).await
}

#[utoipa::path(
    post, path = "/style-transfer", tag = "edits", summary = "Edit pictures (style transfer)",
    request_body = EditBody,
    params(("Prefer" = Option<String>, Header, description = "`wait` or `wait=N` to wait for the result")),
    responses((status = 200, description = "The task (`task_id`, `status`, `status_url`)", body = serde_json::Value), (status = 400, description = "Bad request", body = ErrorBody),
        (status = 503, description = "The queue is unavailable", body = ErrorBody))
)]
pub(super) async fn style_transfer(
    state: State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    submit(state, caller, headers, body, JobKind::Style).await
}

#[utoipa::path(
    post, path = "/fusion-images", tag = "edits", summary = "Edit pictures (fusion images)",
    request_body = EditBody,
    params(("Prefer" = Option<String>, Header, description = "`wait` or `wait=N` to wait for the result")),
    responses((status = 200, description = "The task (`task_id`, `status`, `status_url`)", body = serde_json::Value), (status = 400, description = "Bad request", body = ErrorBody),
        (status = 503, description = "The queue is unavailable", body = ErrorBody))
)]
pub(super) async fn fusion_images(
    state: State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    submit(state, caller, headers, body, JobKind::Fusion).await
}

/// What the body asks for: the prompt and the pictures (as `(field, reference)`).
fn prompt_and_pictures(body: &EditBody, kind: JobKind) -> Result<(String, Vec<(String, String)>), ApiError> {
    let required = |value: &Option<String>, name: &str| {
        value
            .clone()
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("{name} is required")))
    };
    let picture = |url: &Option<String>, id: Option<i64>, field: &str| -> Result<(String, String), ApiError> {
        match (url.as_ref().filter(|u| !u.trim().is_empty()), id) {
            (Some(url), _) => Ok((field.to_string(), url.clone())),
            (None, Some(id)) => Ok((field.to_string(), format!("record:{id}"))),
            (None, None) => Err(ApiError::bad_request(format!("{field} is required"))),
        }
    };
    Ok(match kind {
        JobKind::Edit => {
            (required(&body.edit_prompt, "edit_prompt")?, vec![picture(&body.image_url, body.image_id, "image_url")?])
        }
        JobKind::Style => {
            let preset = match body.style_type.as_deref().filter(|t| !t.is_empty()) {
                None => None,
                Some(id) => Some(PRESETS.iter().find(|p| p.0 == id).map(|p| p.3).ok_or_else(|| {
                    let ids: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
                    ApiError::bad_request(format!("style_type {id:?} is not a preset: {}", ids.join(", ")))
                })?),
            };
            let own = body.style_prompt.clone().filter(|p| !p.trim().is_empty());
            let prompt = match (preset, own) {
                (Some(preset), Some(own)) => format!("{preset}, {own}"),
                (Some(preset), None) => preset.to_string(),
                (None, Some(own)) => own,
                (None, None) => return Err(ApiError::bad_request("style_prompt (or a preset style_type) is required")),
            };
            (prompt, vec![picture(&body.image_url, body.image_id, "image_url")?])
        }
        JobKind::Compose => {
            let urls = body.image_urls.clone().unwrap_or_default();
            let ids = body.image_ids.clone().unwrap_or_default();
            let pictures: Vec<(String, String)> = if urls.is_empty() {
                ids.iter().enumerate().map(|(n, id)| (format!("image_ids[{n}]"), format!("record:{id}"))).collect()
            } else {
                urls.iter().enumerate().map(|(n, url)| (format!("image_urls[{n}]"), url.clone())).collect()
            };
            let (least, most) = kind.inputs();
            if pictures.len() < least || pictures.len() > most {
                return Err(ApiError::bad_request(format!(
                    "image_urls must hold {least} to {most} pictures, got {}",
                    pictures.len()
                )));
            }
            (required(&body.compose_prompt, "compose_prompt")?, pictures)
        }
        JobKind::Fusion => {
            let mut prompt = required(&body.fusion_prompt, "fusion_prompt")?;
            if let Some(ratio) = body.fusion_ratio {
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(ApiError::bad_request(format!("fusion_ratio must be from 0 to 1, got {ratio}")));
                }
                let first = (ratio * 100.0).round();
                prompt = format!("{prompt} (about {first}% of the first picture, {}% of the second)", 100.0 - first);
            }
            let pictures = vec![
                picture(&body.image1_url, body.image1_id, "image1_url")?,
                picture(&body.image2_url, body.image2_id, "image2_url")?,
            ];
            (prompt, pictures)
        }
        JobKind::Generate => unreachable!("edit routes only"),
    })
}

/// The model an edit of `pictures` (and a mask) goes to: the one asked for, else the
/// default edit model. One that takes fewer pictures, or no mask, is refused here with
/// the model named, rather than cut down to the first picture.
pub(super) fn model_for_edit(
    state: &AppState,
    asked: Option<&str>,
    kind: JobKind,
    pictures: usize,
    mask: bool,
) -> Result<String, ApiError> {
    let model = match asked.filter(|m| !m.trim().is_empty()) {
        Some(model) => String::from(ModelName::parse(model)?),
        None => state.settings.routing.default_edit_model(),
    };
    let provider = state.settings.routing.provider_for(&model).map_err(ApiError::bad_request)?;
    let most = provider.max_edit_inputs(&model);
    if pictures > most {
        return Err(ApiError::bad_request(format!(
            "model {model} takes {most} input picture{} and this {} has {pictures}; choose a model that takes \
             several (for example gpt-image-1 or an OpenRouter model with image input)",
            if most == 1 { "" } else { "s" },
            kind.name(),
        )));
    }
    if mask && !provider.takes_mask() {
        return Err(ApiError::bad_request(format!(
            "model {model} takes no mask; masks go to OpenAI-compatible models (gpt-image-1, dall-e-2)"
        )));
    }
    Ok(model)
}

async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    kind: JobKind,
) -> Result<Response, ApiError> {
    let body = json_body(&headers, body)?;
    let request: EditBody = parse_object(&body, r#"{"image_url": "https://...", "edit_prompt": "..."}"#)?;
    let (prompt, pictures) = prompt_and_pictures(&request, kind)?;
    let prompt = Prompt::parse(prompt)?;
    let mask = request.mask_url.as_ref().filter(|m| !m.trim().is_empty());
    if mask.is_some() && kind != JobKind::Edit {
        return Err(ApiError::bad_request("mask_url is taken by /edit-image only"));
    }
    let model = model_for_edit(&state, request.model.as_deref(), kind, pictures.len(), mask.is_some())?;
    if let Some(address) = &request.notify_email {
        super::notify_targets::check_recipient(address, &state.settings.recipients)?;
    }
    let options = GenerationOptions { size: request.size.clone(), seed: request.seed, ..Default::default() };
    options.check()?;
    let deadline = request.deadline.as_ref().map(|d| d.at(OffsetDateTime::now_utc())).transpose()?;
    let mut sources: Vec<&str> = pictures.iter().map(|(_, reference)| reference.as_str()).collect();
    sources.extend(mask.map(String::as_str));
    let mut event = ImageRequested {
        version: EVENT_VERSION,
        id: String::new(),
        prompt: prompt.into(),
        model: Some(model),
        notify_email: request.notify_email.clone(),
        callback: Default::default(),
        options,
        user: None,
        owner: None,
        kind,
        inputs: Vec::new(),
        group: None,
        requested_at: OffsetDateTime::now_utc(),
        deadline,
    };
    let created_at = event.requested_at;
    let meaning = json!({"kind": kind.name(), "inputs": sources});
    // Refused or repeated, it writes no input picture: nothing is left behind for 24 hours.
    let id = match precheck(&state, &headers, &caller, &event, Some(&meaning)).await? {
        Some(existing) => existing,
        None => {
            let id = JobId::random();
            for (n, (field, reference)) in pictures.iter().enumerate() {
                event.inputs.push(resolve_input(&state, &caller, field, reference, &id, n).await?);
            }
            if let Some(mask) = mask {
                let mut input = resolve_input(&state, &caller, "mask_url", mask, &id, pictures.len()).await?;
                input.mask = true;
                event.inputs.push(input);
            }
            queue_job(&state, &headers, &caller, id, event, Some(meaning)).await?
        }
    };
    // Edits answer at once, as the original did, unless the client prefers to wait
    // (`Prefer: wait` for `[server] timeout`, `wait=N` for N seconds; RFC 7240).
    let wait = match preferred_wait(&headers) {
        WaitPreference::None => None,
        WaitPreference::ServerDefault => Some(state.settings.wait_timeout),
        WaitPreference::Seconds(seconds) => Some(seconds),
    };
    let Some(wait) = wait else {
        let body = json!({
            "task_id": id,
            "status": "pending",
            "edit_type": kind.name(),
            "created_at": created_at.format(&Rfc3339).unwrap_or_default(),
            "message": "编辑任务已创建 the edit is queued; follow it at /edit-tasks/<task_id>",
            "status_url": format!("{}/edit-tasks/{id}", state.settings.public_base_url),
        });
        return Ok(Json(body).into_response());
    };
    let finished = state.jobs.wait_until_final(&id, wait).await.ok().flatten();
    let status = match finished {
        Some(status) => status,
        None => state.jobs.get(&id).await.ok().flatten().ok_or_else(ApiError::queue_unavailable)?,
    };
    Ok(Json(task_view(&status)).into_response())
}

//! `POST /v1/images/edits`: OpenAI's edit call, multipart as its SDKs send it (`image` or
//! `image[]` files, `mask`, `prompt`, `model`, `n`, `size`, `quality`, `response_format`,
//! `user` and gpt-image's fields), over the edit pipeline: one picture is an `edit`,
//! several a `compose`. The answer waits for the picture, as `/v1/images/generations` does.

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::AppState;
use super::access::Caller;
use super::edits::model_for_edit;
use super::error::ApiError;
use super::generate::answer_for_job;
use super::openai::{error, in_openai_shape};
use super::queueing::{precheck, queue_job};
use super::uploads::{check_picture, keep_input};
use crate::contract::events::{EVENT_VERSION, GenerationOptions, ImageRequested, JobKind};
use crate::contract::values::{JobId, Prompt};

/// Text fields the call takes; gpt-image's own go to the model as `extra` parameters.
const TEXT_FIELDS: [&str; 6] = ["prompt", "model", "n", "size", "quality", "user"];
const GPT_IMAGE_FIELDS: [&str; 5] =
    ["background", "input_fidelity", "moderation", "output_compression", "output_format"];
/// OpenAI's edits take up to 16 pictures.
const MAX_PICTURES: usize = 16;
/// A form of four pictures at the largest size an upload may have.
pub(super) const MAX_FORM_BYTES: usize = 4 * super::uploads::MAX_PICTURE_BYTES + 64 * 1024;

/// The form, as sent.
#[derive(Default)]
struct EditForm {
    pictures: Vec<Vec<u8>>,
    mask: Option<Vec<u8>>,
    text: serde_json::Map<String, Value>,
    extra: serde_json::Map<String, Value>,
    with_picture: bool,
}

/// `POST /v1/images/edits`.
#[utoipa::path(
    post, path = "/v1/images/edits", tag = "openai", summary = "OpenAI Images API: edit",
    request_body(content = String, content_type = "multipart/form-data",
        description = "`image` or `image[]` files, `prompt`, optional `mask`, `model`, `n`, `size`, `response_format`"),
    responses((status = 200, description = "`{created, data: [{url | b64_json, revised_prompt}]}`", body = serde_json::Value),
        (status = 400, description = "OpenAI's error shape", body = serde_json::Value))
)]
pub(super) async fn edits(
    State(state): State<AppState>,
    caller: Caller,
    mut headers: HeaderMap,
    request: Request,
) -> Response {
    let form = match read_form(request).await {
        Ok(form) => form,
        Err(refused) => return refused,
    };
    // As for generations: the SDK waits up to its own timeout for the picture.
    headers.insert("prefer", HeaderValue::from_static("wait=600"));
    let with_picture = form.with_picture;
    let answer = match queue_edit(&state, &caller, &headers, form).await {
        Ok(id) => answer_for_job(&state, &headers, id, with_picture).await.into_response(),
        Err(refused) => refused.into_response(),
    };
    in_openai_shape(answer).await
}

/// Reads the multipart form; an unknown field or a form that is not one is a 400 in
/// OpenAI's shape.
async fn read_form(request: Request) -> Result<EditForm, Response> {
    let bad = |message: String, param: Option<&str>| error(StatusCode::BAD_REQUEST, &message, param);
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| bad(e.body_text(), None))?;
    let mut form = EditForm::default();
    while let Some(field) = multipart.next_field().await.map_err(|e| bad(e.body_text(), None))? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "image" | "image[]" => {
                form.pictures.push(field.bytes().await.map_err(|e| bad(e.body_text(), None))?.to_vec())
            }
            "mask" => form.mask = Some(field.bytes().await.map_err(|e| bad(e.body_text(), None))?.to_vec()),
            "response_format" => match field.text().await.unwrap_or_default().as_str() {
                "url" => form.with_picture = false,
                "b64_json" => form.with_picture = true,
                other => {
                    return Err(bad(format!("response_format must be url or b64_json, got {other:?}"), Some(&name)));
                }
            },
            known if TEXT_FIELDS.contains(&known) || GPT_IMAGE_FIELDS.contains(&known) => {
                let text = field.text().await.map_err(|e| bad(e.body_text(), None))?;
                // Numbers as numbers (n, output_compression), the rest as text.
                let value =
                    serde_json::from_str::<serde_json::Number>(&text).map_or(Value::String(text), Value::Number);
                match GPT_IMAGE_FIELDS.contains(&known) {
                    true => form.extra.insert(name, value),
                    false => form.text.insert(name, value),
                };
            }
            _ => return Err(bad(format!("unknown parameter {name:?}"), Some(&name))),
        }
    }
    match form.pictures.len() {
        0 => Err(bad("image is required: one picture, or several as image[]".into(), Some("image"))),
        n if n > MAX_PICTURES => {
            Err(bad(format!("at most {MAX_PICTURES} pictures, and this call has {n}"), Some("image")))
        }
        _ => Ok(form),
    }
}

/// Checks the form and queues the edit; its pictures become the job's inputs.
async fn queue_edit(state: &AppState, caller: &Caller, headers: &HeaderMap, form: EditForm) -> Result<JobId, ApiError> {
    let text =
        |name: &str| form.text.get(name).map(|value| value.as_str().map_or_else(|| value.to_string(), String::from));
    let prompt = Prompt::parse(text("prompt").unwrap_or_default())?;
    let kind = if form.pictures.len() == 1 { JobKind::Edit } else { JobKind::Compose };
    let model = model_for_edit(state, text("model").as_deref(), kind, form.pictures.len(), form.mask.is_some())?;
    let n = match form.text.get("n") {
        None => None,
        Some(n) => Some(
            n.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| ApiError::bad_request("n must be a whole number"))?,
        ),
    };
    let options =
        GenerationOptions { size: text("size"), n, quality: text("quality"), extra: form.extra, ..Default::default() };
    options.check()?;
    let mut event = ImageRequested {
        version: EVENT_VERSION,
        id: String::new(),
        prompt: prompt.into(),
        model: Some(model),
        notify_email: None,
        callback: Default::default(),
        options,
        user: text("user"),
        owner: None,
        kind,
        inputs: Vec::new(),
        group: None,
        requested_at: OffsetDateTime::now_utc(),
        deadline: None,
    };
    // The pictures themselves are what the request means (an Idempotency-Key repeat with
    // other pictures is another request).
    let digest = |bytes: &Vec<u8>| uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, bytes).to_string();
    let sources: Vec<String> = form.pictures.iter().chain(&form.mask).map(digest).collect();
    let meaning = json!({"kind": kind.name(), "inputs": sources});
    if let Some(existing) = precheck(state, headers, caller, &event, Some(&meaning)).await? {
        return Ok(existing);
    }
    let id = JobId::random();
    let pictures = form.pictures.into_iter().map(|bytes| (bytes, false)).chain(form.mask.map(|mask| (mask, true)));
    for (n, (bytes, mask)) in pictures.enumerate() {
        let field = if mask { "mask" } else { "image" };
        let picture = check_picture(&state.decoding, bytes, field).await?;
        let mut input = keep_input(state, picture, format!("{field} (multipart)"), id.as_str(), n).await?;
        input.mask = mask;
        event.inputs.push(input);
    }
    queue_job(state, headers, caller, id, event, Some(meaning)).await
}

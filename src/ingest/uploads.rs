//! Pictures an edit starts from: `POST /upload-image` (the original's JSON, or
//! `multipart/form-data`), `GET /uploads/{id}`, and turning what an edit request names
//! (an upload, a stored picture, a URL) into an object in the images bucket.
//!
//! Content is sniffed and decoded, never trusted from `mime_type`; size and pixels are
//! bounded before anything is decoded, so a tiny file declaring 50,000 × 50,000 pixels
//! is refused from its header.

use std::io::Cursor;

use image::ImageDecoder;
use tokio::sync::Semaphore;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::access::Caller;
use super::body::{json_body, parse_object};
use super::error::{ApiError, ErrorBody};
use super::records::ask_store;
use crate::contract::events::InputPicture;
use crate::contract::records::{RECORDS_GET, RecordView};
use crate::contract::values::JobId;

/// Largest picture accepted, in bytes (an upload, or an input fetched from a URL).
pub(super) const MAX_PICTURE_BYTES: usize = 10 * 1024 * 1024;
/// Largest request body of `POST /upload-image`: the picture as base64 and a little JSON.
pub(super) const MAX_UPLOAD_BODY: usize = MAX_PICTURE_BYTES / 3 * 4 + 64 * 1024;
/// Most pixels of a picture accepted (40 megapixels: 8K is 33).
const MAX_PIXELS: u64 = 40_000_000;
/// Longest side accepted.
const MAX_SIDE: u32 = 12_000;
/// Most memory one picture may decode to: 40 megapixels of 8-bit RGBA. A 16-bit picture
/// (8 bytes a pixel) may have half as many pixels.
const MAX_DECODED_BYTES: u64 = MAX_PIXELS * 4;

/// A checked picture: what its content says it is.
pub(super) struct Checked {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Sniffs, bounds and decodes `bytes` on a blocking thread, at most as many at once as
/// `decoding` has permits (so a burst of uploads cannot take every core or all memory);
/// `what` names it in the 4xx.
pub(super) async fn check_picture(decoding: &Semaphore, bytes: Vec<u8>, what: &str) -> Result<Checked, ApiError> {
    let _permit = decoding.acquire().await.expect("the semaphore is never closed");
    let what = what.to_string();
    tokio::task::spawn_blocking(move || check_picture_now(bytes, &what))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("checking the picture crashed: {e}")))?
}

fn check_picture_now(bytes: Vec<u8>, what: &str) -> Result<Checked, ApiError> {
    if bytes.len() > MAX_PICTURE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} is larger than {} MB", MAX_PICTURE_BYTES / 1024 / 1024),
        ));
    }
    let not_a_picture = || ApiError::bad_request(format!("{what} is not a PNG, JPEG, WebP or GIF picture"));
    let format = image::guess_format(&bytes).map_err(|_| not_a_picture())?;
    let content_type = match format {
        image::ImageFormat::Png => "image/png",
        image::ImageFormat::Jpeg => "image/jpeg",
        image::ImageFormat::WebP => "image/webp",
        image::ImageFormat::Gif => "image/gif",
        _ => return Err(not_a_picture()),
    };
    let reader = || image::ImageReader::with_format(Cursor::new(&bytes), format);
    // The header alone, without the decoder's own limits: we state ours below, by size.
    let mut header = reader();
    header.no_limits();
    let decoder = header.into_decoder().map_err(|_| not_a_picture())?;
    let (width, height) = decoder.dimensions();
    let (decoded, color) = (decoder.total_bytes(), decoder.color_type());
    drop(decoder);
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ApiError::bad_request(format!(
            "{what} is {width}×{height} pixels; at most {MAX_SIDE} a side and {} megapixels are accepted",
            MAX_PIXELS / 1_000_000
        )));
    }
    // Deep colour takes more memory per pixel: bounded by what it decodes to, before decoding.
    if decoded > MAX_DECODED_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{what} ({width}×{height}, {color:?}) would take {} MB to decode; at most {} MB are accepted",
                decoded / 1_000_000,
                MAX_DECODED_BYTES / 1_000_000
            ),
        ));
    }
    // Decoding proves it is whole; the bounds above keep that affordable.
    reader().decode().map_err(|e| ApiError::bad_request(format!("{what} cannot be decoded: {e}")))?;
    Ok(Checked { bytes, content_type, width, height })
}

/// The original's JSON body.
#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct UploadJson {
    base64_data: String,
    file_name: String,
    /// Accepted for compatibility; the content decides the type.
    #[serde(default)]
    #[allow(dead_code)]
    mime_type: Option<String>,
}

/// `POST /upload-image`: JSON (`base64_data`, `file_name`, `mime_type`) or a multipart
/// form with the picture in a `file` (or `image`) part. Answers 201 with the upload's id
/// and a URL usable as an edit's input.
#[utoipa::path(
    post, path = "/upload-image", tag = "edits", summary = "Upload a picture to edit (kept 24 hours)",
    request_body(content(
        (UploadJson = "application/json"),
        (String = "multipart/form-data"),
    ), description = "JSON (`base64_data`, `file_name`) or a multipart form with the picture in `file`"),
    responses((status = 201, description = "The upload's id and link", body = serde_json::Value), (status = 400, description = "Bad request", body = ErrorBody),
        (status = 413, description = "Too large", body = ErrorBody))
)]
pub(super) async fn upload_image(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (bytes, file_name) = if content_type.starts_with("multipart/form-data") {
        from_form(request).await?
    } else {
        let headers = request.headers().clone();
        let body: Result<Bytes, BytesRejection> = Bytes::from_request(request, &()).await;
        let body = json_body(&headers, body)?;
        let upload: UploadJson =
            parse_object(&body, r#"{"base64_data": "...", "file_name": "cat.png", "mime_type": "image/png"}"#)?;
        let payload = upload.base64_data.split_once("base64,").map_or(upload.base64_data.as_str(), |(_, b)| b);
        let payload: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .map_err(|_| ApiError::bad_request("base64_data is not valid base64"))?;
        (bytes, upload.file_name)
    };
    if file_name.chars().count() > 255 || file_name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("file_name must be at most 255 characters, without control characters"));
    }
    super::queueing::refuse_when_bucket_full(&state).await?;
    let picture = check_picture(&state.decoding, bytes, "the upload").await?;
    let id = JobId::random().to_string();
    let keep = |error: crate::parts::PartError| {
        tracing::warn!(%error, "cannot keep an upload");
        ApiError::queue_unavailable()
    };
    // Whose it is first, so that no upload is ever there without its owner.
    if let Some(owner) = caller.owner() {
        state.objects.put(&upload_owner(&id), owner.as_bytes()).await.map_err(keep)?;
    }
    state.objects.put(&upload_object(&id), &picture.bytes).await.map_err(keep)?;
    tracing::info!(upload = %id, size = picture.bytes.len(), "upload kept");
    let body = json!({
        "id": id,
        "url": format!("{}/uploads/{id}", state.settings.public_base_url),
        "file_name": file_name,
        "mime_type": picture.content_type,
        "size": picture.bytes.len(),
        "width": picture.width,
        "height": picture.height,
        "message": "图片上传成功 uploaded; usable as an edit input for 24 hours",
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The picture part of a multipart form, and its file name.
async fn from_form(request: Request) -> Result<(Vec<u8>, String), ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| ApiError::new(e.status(), e.body_text());
    let mut form = Multipart::from_request(request, &()).await.map_err(|e| ApiError::bad_request(e.body_text()))?;
    while let Some(field) = form.next_field().await.map_err(bad)? {
        if matches!(field.name(), Some("file" | "image")) {
            let name = field.file_name().unwrap_or("upload").to_string();
            return Ok((field.bytes().await.map_err(bad)?.to_vec(), name));
        }
    }
    Err(ApiError::bad_request("the form has no file part: send the picture as a part named file"))
}

fn upload_object(id: &str) -> String {
    format!("upload/{id}")
}

/// The name of the key that uploaded `upload/<id>`, beside it.
fn upload_owner(id: &str) -> String {
    format!("upload/{id}.owner")
}

/// Whether `caller` may see upload `id`: its uploader's key, or an admin.
async fn may_see_upload(state: &AppState, caller: &Caller, id: &str) -> Result<bool, ApiError> {
    if caller.is_admin() {
        return Ok(true);
    }
    let owner = state.objects.get(&upload_owner(id)).await.map_err(|_| ApiError::queue_unavailable())?;
    Ok(owner.is_some_and(|owner| caller.owner().is_some_and(|name| name.as_bytes() == owner.as_slice())))
}

/// `GET /uploads/{id}`: an uploaded picture, while it is kept (24 hours).
#[utoipa::path(
    get, path = "/uploads/{id}", tag = "edits", summary = "An uploaded picture",
    params(("id" = String, Path)),
    responses((status = 200, content_type = "image/*", body = Vec<u8>), (status = 404, description = "Gone or never uploaded", body = ErrorBody))
)]
pub(super) async fn get_upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let missing = || ApiError::new(StatusCode::NOT_FOUND, format!("no upload {id:?} (uploads are kept for 24 hours)"));
    let id = JobId::parse(id.as_str()).map_err(|_| missing())?;
    if !may_see_upload(&state, &caller, id.as_str()).await? {
        return Err(missing());
    }
    let bytes = state.objects.get(&upload_object(id.as_str())).await.map_err(|_| ApiError::queue_unavailable())?;
    let bytes = bytes.ok_or_else(missing)?;
    let content_type = image::guess_format(&bytes).map(|f| f.to_mime_type()).unwrap_or("application/octet-stream");
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

/// `GET /inputs/{job}/{n}`: an edit's input picture, while it is kept (24 hours). Open to
/// anyone with the link while `[server] public_pictures` is on (mails show it); else, as
/// every route naming a job, to its owner's key and admins only.
#[utoipa::path(
    get, path = "/inputs/{job}/{n}", tag = "edits", summary = "An edit's n-th input picture",
    params(("job" = String, Path), ("n" = u32, Path)),
    responses((status = 200, content_type = "image/*", body = Vec<u8>), (status = 404, description = "Gone", body = ErrorBody))
)]
pub(super) async fn get_input(
    State(state): State<AppState>,
    caller: Option<axum::Extension<Caller>>,
    Path((job, n)): Path<(String, u32)>,
) -> Result<Response, ApiError> {
    let missing = || ApiError::new(StatusCode::NOT_FOUND, "no such input picture (inputs are kept for 24 hours)");
    let job = JobId::parse(job.as_str()).map_err(|_| missing())?;
    if let Some(axum::Extension(caller)) = caller {
        let owner = state.jobs.get(&job).await.map_err(|_| ApiError::queue_unavailable())?.map(|status| status.owner);
        if !owner.is_some_and(|owner| caller.may_see(owner.as_deref())) {
            return Err(missing());
        }
    }
    let object = format!("input/{}/{n}", job.as_str());
    let bytes = state.objects.get(&object).await.map_err(|_| ApiError::queue_unavailable())?.ok_or_else(missing)?;
    let content_type = image::guess_format(&bytes).map(|f| f.to_mime_type()).unwrap_or("application/octet-stream");
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}

/// Turns what a request named as a picture into an input of job `job_id` (number `n`):
/// `upload:<id>` or this server's `/uploads/<id>` link, `record:<job id or number>` or this
/// server's `/static/images/<file>` link, or an http(s) URL fetched once through the
/// download guard. `field` names the request field in a 400.
pub(super) async fn resolve_input(
    state: &AppState,
    caller: &Caller,
    field: &str,
    reference: &str,
    job_id: &str,
    n: usize,
) -> Result<InputPicture, ApiError> {
    let reference = reference.trim();
    let own =
        |prefix: &str| reference.strip_prefix(&format!("{}{prefix}", state.settings.public_base_url)).map(String::from);
    let (picture, source) = if let Some(id) =
        reference.strip_prefix("upload:").map(String::from).or_else(|| own("/uploads/"))
    {
        let id = JobId::parse(id.as_str()).map_err(|_| ApiError::bad_request(format!("{field}: no upload {id:?}")))?;
        if !may_see_upload(state, caller, id.as_str()).await? {
            return Err(ApiError::bad_request(format!("{field}: no upload {id} (uploads are kept for 24 hours)")));
        }
        let bytes = state.objects.get(&upload_object(id.as_str())).await.map_err(|_| ApiError::queue_unavailable())?;
        let bytes = bytes
            .ok_or_else(|| ApiError::bad_request(format!("{field}: no upload {id} (uploads are kept for 24 hours)")))?;
        (check_picture(&state.decoding, bytes, field).await?, format!("upload:{id}"))
    } else if let Some(key) = reference.strip_prefix("record:").map(String::from) {
        (stored_record_picture(state, caller, field, &key).await?, format!("record:{key}"))
    } else if let Some(file) = own("/static/images/") {
        // This server's own link: the file on this host, nothing outside images_dir.
        let bytes = state
            .pictures
            .read(&file, None, MAX_PICTURE_BYTES)
            .await
            .map_err(|_| ApiError::bad_request(format!("{field}: no stored picture {file:?}")))?;
        (check_picture(&state.decoding, bytes, field).await?, reference.to_string())
    } else if reference.starts_with("http://") || reference.starts_with("https://") {
        let fetched = state.fetcher.fetch(reference).await.map_err(|failure| {
            ApiError::bad_request(format!("{field}: {reference} cannot be used: {}", failure.reason))
        })?;
        (check_picture(&state.decoding, fetched.bytes, field).await?, reference.to_string())
    } else {
        return Err(ApiError::bad_request(format!(
            "{field} must be an http(s) URL, an upload (upload:<id> or its /uploads/ link) or a stored picture \
             (record:<job id>)"
        )));
    };
    keep_input(state, picture, source, job_id, n).await
}

/// Keeps `picture` as input `n` of job `job_id`, for the generator to read.
pub(super) async fn keep_input(
    state: &AppState,
    picture: Checked,
    source: String,
    job_id: &str,
    n: usize,
) -> Result<InputPicture, ApiError> {
    let object = format!("input/{job_id}/{n}");
    state.objects.put(&object, &picture.bytes).await.map_err(|_| ApiError::queue_unavailable())?;
    Ok(InputPicture {
        url: format!("{}/inputs/{job_id}/{n}", state.settings.public_base_url),
        object,
        content_type: picture.content_type.to_string(),
        width: picture.width,
        height: picture.height,
        source,
        mask: false,
    })
}

/// A stored picture by its record (job id or record number): the local file, else its
/// R2 / S3 link. Only the caller's own records (any, for admins).
async fn stored_record_picture(state: &AppState, caller: &Caller, field: &str, key: &str) -> Result<Checked, ApiError> {
    let record: RecordView = ask_store(state, RECORDS_GET, Bytes::from(key.to_string()))
        .await
        .map_err(|e| ApiError::bad_request(format!("{field}: record {key}: {}", e.message())))?;
    if !caller.may_see(record.record.owner.as_deref()) {
        return Err(ApiError::bad_request(format!("{field}: record {key}: no record with id {key:?}")));
    }
    let bytes = state
        .pictures
        .read(&record.record.filename(), record.record.r2_url.as_deref(), MAX_PICTURE_BYTES)
        .await
        .map_err(|error| ApiError::bad_request(format!("{field}: record {key}'s picture: {error}")))?;
    check_picture(&state.decoding, bytes, field).await
}

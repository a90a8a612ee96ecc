//! `GET /r2/images/{file}`: a picture in a private R2 / S3 bucket. The link in records,
//! mails and webhooks names this route; each request gets a `302` to a presigned URL that
//! is valid for 15 minutes, made now, so the link itself never expires with S3's presign
//! cap (7 days) and no presigned URL is ever stored.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

pub(super) async fn redirect(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let Some(bucket) = &state.private_bucket else {
        return ApiError::new(StatusCode::NOT_FOUND, "no private bucket is configured").into_response();
    };
    // A picture's name, or `thumbs/<name>`: nothing that climbs out of images/.
    if file.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return ApiError::new(StatusCode::NOT_FOUND, "no such picture").into_response();
    }
    match bucket.presigned(&file).await {
        Ok(url) => {
            (StatusCode::FOUND, [(header::LOCATION, url), (header::CACHE_CONTROL, "no-store".into())]).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "no presigned URL for a private picture");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the picture bucket cannot be reached; try again")
                .into_response()
        }
    }
}

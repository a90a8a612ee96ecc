//! `GET /jobs/{id}`: a job's state, from whichever process did the work.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;

pub(super) async fn job_status(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    match state.jobs.get(&id).await {
        Ok(Some(status)) => Ok(Json(status).into_response()),
        Ok(None) => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no job with id {id:?}"))),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read job state");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "job states (NATS) are unavailable; try again shortly"))
        }
    }
}

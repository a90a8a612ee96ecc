//! Error answers: `{"error": "..."}` (plus `"id"` when a job exists) with a status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::contract::values::InvalidValue;

/// The one shape of an error answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, in words a user can act on.
    error: String,
    /// The job, when one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    job_id: Option<String>,
    /// Seconds for a `Retry-After` header (429 and 503 answers).
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), job_id: None, retry_after: None }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The job queue is unreachable: the job was not accepted.
    pub(crate) fn queue_unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "the job queue (NATS) is unavailable; try again shortly")
    }

    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn for_job(mut self, id: String) -> Self {
        self.job_id = Some(id);
        self
    }
}

impl From<InvalidValue> for ApiError {
    fn from(invalid: InvalidValue) -> Self {
        Self::bad_request(invalid.problem)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.message, id: self.job_id };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

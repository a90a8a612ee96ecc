//! Error answers: `{"error": "..."}` (plus `"id"` when a job exists) with a status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::contract::budget::BudgetRefusal;
use crate::contract::values::InvalidValue;

/// The one shape of an error answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, in words a user can act on.
    error: String,
    /// The job, when one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// What kind of refusal it is, when a client may act on the kind (`quota_exceeded`).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    /// When a quota starts again (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    resets_at: Option<String>,
    /// Which budget refused the job (`type: budget_exceeded`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    budget: Option<BudgetRefusal>,
}

pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    job_id: Option<String>,
    /// Seconds for a `Retry-After` header (429 and 503 answers).
    retry_after: Option<u64>,
    kind: Option<&'static str>,
    resets_at: Option<String>,
    budget: Option<Box<BudgetRefusal>>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            job_id: None,
            retry_after: None,
            kind: None,
            resets_at: None,
            budget: None,
        }
    }

    /// 402: a budget would be passed (`refusal`), or, with a budget set, the model has no
    /// price to reserve (`refusal` absent, `message` names the `[prices]` key to set).
    pub(crate) fn over_budget(message: String, refusal: Option<BudgetRefusal>) -> Self {
        let kind = if refusal.is_some() { "budget_exceeded" } else { "budget_unpriced" };
        Self { kind: Some(kind), budget: refusal.map(Box::new), ..Self::new(StatusCode::PAYMENT_REQUIRED, message) }
    }

    /// 429: a key's `jobs_per_day` are used up until `resets_at`, `wait` from now.
    pub(crate) fn quota_exceeded(per_day: u64, resets_at: time::OffsetDateTime, wait: time::Duration) -> Self {
        let resets_at = resets_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let message = format!("this key's {per_day} jobs for today are used up; more from {resets_at}");
        Self {
            kind: Some("quota_exceeded"),
            resets_at: Some(resets_at),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message).retry_after(wait.whole_seconds().max(1) as u64)
        }
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

    pub(crate) fn status(&self) -> StatusCode {
        self.status
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
        let body = ErrorBody {
            error: self.message,
            id: self.job_id,
            kind: self.kind,
            resets_at: self.resets_at,
            budget: self.budget.map(|budget| *budget),
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

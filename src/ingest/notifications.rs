//! `GET /jobs/{id}/notifications`: what became of a job's mail and webhooks, read from
//! the mailer's and the webhook service's logs (recipients shown masked).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use time::OffsetDateTime;

use super::AppState;
use super::access::Caller;
use super::error::{ApiError, ErrorBody};
use crate::contract::events::{IMAGE_COMPLETED, IMAGE_FAILED};
use crate::contract::mail::DeliveryState as MailState;
use crate::contract::values::JobId;
use crate::contract::webhooks::{DeliveryState as HookState, WebhookTask};
use crate::redact;

/// A job's notifications as the page shows them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Notifications {
    pub mails: Vec<MailOutcome>,
    pub webhooks: Vec<WebhookOutcome>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct MailOutcome {
    /// `completed` or `failed`: which notice it was.
    pub kind: String,
    /// `sent`, `retrying` or `failed`.
    pub state: String,
    /// Masked (`u***@example.com`): anyone with a key may look.
    pub recipients: Vec<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct WebhookOutcome {
    /// The `[[webhooks.endpoints]]` entry's id.
    pub endpoint: String,
    pub event: String,
    /// `succeeded`, `retrying` or `failed`.
    pub state: String,
    pub attempts: usize,
    /// The HTTP status of the last answer, if one came.
    pub last_status: Option<u16>,
}

#[utoipa::path(
    get, path = "/jobs/{id}/notifications", tag = "jobs", summary = "What became of a job's mail and webhooks",
    params(("id" = String, Path, description = "the job id")),
    responses((status = 200, body = Notifications), (status = 404, description = "No such job", body = ErrorBody))
)]
pub(super) async fn job_notifications(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Notifications>, ApiError> {
    let unavailable = |error: crate::parts::PartError| {
        tracing::warn!(%error, "cannot read the notification logs");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the notification logs (NATS) are unavailable; try again")
    };
    if JobId::parse(id.as_str()).is_err() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no job with id {id:?}")));
    }
    super::jobs::owned(&state, &caller, &id).await?;
    let mut mails = Vec::new();
    for kind in ["completed", "failed"] {
        if let Some(entry) = state.logs.mail.get(&format!("{id}.{kind}")).await.map_err(unavailable)? {
            mails.push(MailOutcome {
                kind: kind.into(),
                state: match entry.state {
                    MailState::Sent => "sent",
                    MailState::Retrying => "retrying",
                    MailState::Failed => "failed",
                    MailState::Suppressed => "suppressed",
                }
                .into(),
                recipients: entry.recipients.iter().map(|r| redact::email(r)).collect(),
                attempts: entry.attempts,
                last_error: entry.last_error,
                sent_at: entry.sent_at,
            });
        }
    }
    let mut webhooks = Vec::new();
    for endpoint in &state.settings.webhooks.endpoints {
        for event in [IMAGE_COMPLETED, IMAGE_FAILED] {
            let key = WebhookTask::delivery_id(event, &id, &endpoint.id());
            if let Some(delivery) = state.logs.webhook_deliveries.get(&key).await.map_err(unavailable)? {
                webhooks.push(WebhookOutcome {
                    endpoint: endpoint.id(),
                    event: event.into(),
                    state: match delivery.state {
                        HookState::Succeeded => "succeeded",
                        HookState::Retrying => "retrying",
                        HookState::Failed => "failed",
                    }
                    .into(),
                    attempts: delivery.attempts.len(),
                    last_status: delivery.attempts.last().and_then(|a| a.status),
                });
            }
        }
    }
    Ok(Json(Notifications { mails, webhooks }))
}

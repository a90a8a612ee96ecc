//! Webhook deliveries: the task the webhook service gives itself per event and endpoint,
//! the delivery log, and endpoint states. The log and the states are read by ingest's
//! `/webhooks` views and by `huiying webhooks`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::events::Event;

/// The stream of delivery tasks, one message per event and endpoint.
pub const WEBHOOK_STREAM: &str = "HUIYING_WEBHOOKS";
/// The subject of delivery tasks.
pub const WEBHOOK_DELIVER: &str = "huiying.webhooks.deliver";
/// Key-value bucket of deliveries and their attempts, keyed by delivery (webhook) id.
pub const WEBHOOK_DELIVERIES_BUCKET: &str = "huiying_webhook_deliveries";
/// Key-value bucket of endpoint states (enabled, failing since), keyed by endpoint id.
pub const WEBHOOK_ENDPOINTS_BUCKET: &str = "huiying_webhook_endpoints";

/// Whose endpoint it is, which decides its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    /// `[[webhooks.endpoints]]`: signed with its own secret.
    Configured,
    /// A request's own `webhook`: signed with `[webhooks] request_secret`.
    Request,
}

/// One event to send to one endpoint. Holds no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookTask {
    #[serde(default = "super::events::version_one")]
    pub version: u32,
    /// The `webhook-id`: the same for every attempt and replay of this event to this endpoint.
    pub id: String,
    pub job_id: String,
    pub endpoint: String,
    pub kind: EndpointKind,
    pub url: String,
    /// `image.completed` or `image.failed`.
    pub event: String,
    /// The JSON body sent, exactly.
    pub body: String,
    /// The API key's name the job belongs to: its deliveries are that key's to see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A replay sends again even after a success.
    #[serde(default)]
    pub replay: bool,
}

impl Event for WebhookTask {
    const SUBJECT: &'static str = WEBHOOK_DELIVER;
    // What makes a task one message (its Nats-Msg-Id) is its delivery, not its job.
    #[allow(clippy::misnamed_getters)]
    fn job_id(&self) -> &str {
        &self.id
    }
    fn version(&self) -> u32 {
        self.version
    }
}

impl WebhookTask {
    /// The `webhook-id` of `event` for `job_id` at `endpoint`.
    pub fn delivery_id(event: &str, job_id: &str, endpoint: &str) -> String {
        const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6875_6979_696e_6700_0000_0000_0000_0005);
        let name = format!("{event}:{job_id}:{endpoint}");
        format!("msg_{}", uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).simple())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not yet answered with 2xx; more attempts are planned.
    Retrying,
    Succeeded,
    /// Given up: the retries ran out, 410 Gone, a refused address, or the endpoint disabled.
    Failed,
}

/// One attempt, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub number: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// The first 1 KB of the answer.
    pub response: String,
    pub error: Option<String>,
}

/// A delivery: the task and every attempt at it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub task: WebhookTask,
    pub state: DeliveryState,
    pub attempts: Vec<Attempt>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// An endpoint's health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointState {
    pub disabled: bool,
    /// Why it was disabled (410 Gone, failing too long).
    pub reason: Option<String>,
    /// Since when every attempt failed (cleared by a success).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub failing_since: Option<OffsetDateTime>,
}

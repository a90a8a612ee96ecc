//! The mailer's notification log (`huiying_mail` bucket, key `<job id>.<kind>`): what
//! `huiying mail` lists and what ingest shows of a job's mail.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Accepted by the SMTP server (or written to the outbox).
    Sent,
    /// A transient failure; JetStream will deliver the event again.
    Retrying,
    /// Given up: a permanent failure, or transient ones until max_attempts.
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notification {
    pub job_id: String,
    pub kind: String,
    pub state: DeliveryState,
    pub recipients: Vec<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

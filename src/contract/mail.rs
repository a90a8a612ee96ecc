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
    /// Not sent: every recipient is on the suppression list (unsubscribed, or bounced).
    Suppressed,
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

/// Key-value bucket of addresses no notification goes to, keyed by [`suppression_key`]:
/// written by ingest (one-click unsubscribe) and the mailer (permanent refusals), listed by
/// `huiying mail suppressed`.
pub const SUPPRESSED_BUCKET: &str = "huiying_suppressed";

/// Why an address gets no mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuppressionReason {
    /// Its reader asked for no more (List-Unsubscribe): until an admin undoes it.
    Unsubscribed,
    /// Its server refused it for good (user unknown): for `[smtp] suppress_days`.
    Bounced,
}

/// One address on the suppression list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Suppression {
    pub address: String,
    pub reason: SuppressionReason,
    /// The mail server's refusal, for a bounce.
    pub reply: Option<String>,
    /// The job whose mail bounced.
    pub job_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// When mail may go there again; `None`: until an admin undoes it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
}

impl Suppression {
    /// Whether it still holds at `now`.
    pub fn holds_at(&self, now: OffsetDateTime) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// The bucket key of an address: bucket keys cannot hold `@`, and an address is the same
/// in any case.
pub fn suppression_key(address: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6875_6979_696e_6700_0000_0000_0000_0005);
    uuid::Uuid::new_v5(&NAMESPACE, address.trim().to_ascii_lowercase().as_bytes()).to_string()
}

/// Key-value bucket of keys huiying made itself at first start, so that every service on
/// every host signs and checks links with the same one: [`LINK_KEY`].
pub const SECRETS_BUCKET: &str = "huiying_secrets";
/// The link key (base64, 32 random bytes), used while `[server] link_keys` is empty.
pub const LINK_KEY: &str = "link_key";

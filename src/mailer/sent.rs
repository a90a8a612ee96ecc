//! The notification log: one entry per job and kind in the `huiying_mail` bucket.
//! It is what keeps a redelivered event, or a second mailer, from mailing twice.

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::bus::{BusError, MAIL_BUCKET};

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

#[derive(Clone)]
pub struct SentLog {
    store: kv::Store,
}

fn kv_error(e: impl std::fmt::Display) -> BusError {
    BusError::KeyValue { bucket: MAIL_BUCKET, message: e.to_string() }
}

impl SentLog {
    pub fn new(store: kv::Store) -> Self {
        Self { store }
    }

    pub fn key(job_id: &str, kind: &str) -> String {
        format!("{job_id}.{kind}")
    }

    pub async fn get(&self, job_id: &str, kind: &str) -> Result<Option<Notification>, BusError> {
        self.get_key(&Self::key(job_id, kind)).await
    }

    /// The entry stored under a raw key (`<job id>.<kind>`).
    pub async fn get_key(&self, key: &str) -> Result<Option<Notification>, BusError> {
        let value = self.store.get(key).await.map_err(kv_error)?;
        Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    pub fn store(&self) -> &kv::Store {
        &self.store
    }

    pub async fn put(&self, notification: &Notification) -> Result<(), BusError> {
        let value = serde_json::to_vec(notification).expect("notifications serialize");
        self.store.put(Self::key(&notification.job_id, &notification.kind), value.into()).await.map_err(kv_error)?;
        Ok(())
    }
}

//! The notification log: one entry per job and kind in the `huiying_mail` bucket.
//! It is what keeps a redelivered event, or a second mailer, from mailing twice.

use crate::parts::JsonBucket;
use crate::parts::PartError;

pub(super) use crate::contract::mail::{DeliveryState, Notification};

/// The log, keyed `<job id>.<kind>`.
#[derive(Clone)]
pub(super) struct SentLog {
    entries: JsonBucket<Notification>,
}

impl SentLog {
    pub(super) fn new(entries: JsonBucket<Notification>) -> Self {
        Self { entries }
    }

    fn key(job_id: &str, kind: &str) -> String {
        format!("{job_id}.{kind}")
    }

    /// The entry of this job's notification; an unreadable entry is an error.
    pub(super) async fn get(&self, job_id: &str, kind: &str) -> Result<Option<Notification>, PartError> {
        self.entries.get(&Self::key(job_id, kind)).await
    }

    pub(super) async fn put(&self, notification: &Notification) -> Result<(), PartError> {
        self.entries.put(&Self::key(&notification.job_id, &notification.kind), notification).await
    }

    /// Every entry, each read on its own so that one unreadable entry is reported with its
    /// key and the rest are still listed.
    pub(super) async fn all(&self) -> Result<Vec<(String, Result<Notification, PartError>)>, PartError> {
        let mut all = Vec::new();
        for key in self.entries.keys().await? {
            match self.entries.get(&key).await {
                Ok(Some(entry)) => all.push((key, Ok(entry))),
                Ok(None) => {}
                Err(error) => all.push((key, Err(error))),
            }
        }
        Ok(all)
    }
}

//! The suppression list (`huiying_suppressed`): addresses whose reader unsubscribed, or
//! whose server refused them for good. No notification goes there while an entry holds.
//! Ingest's unsubscribe page adds to it; the mailer reads it and adds bounces.

use time::OffsetDateTime;

use crate::contract::mail::{Suppression, suppression_key};
use crate::parts::{JsonBucket, PartError};

#[derive(Clone)]
pub struct Suppressions {
    entries: JsonBucket<Suppression>,
}

impl Suppressions {
    pub fn new(entries: JsonBucket<Suppression>) -> Self {
        Self { entries }
    }

    /// The entry that keeps mail from `address` at `now`, if one does.
    pub async fn holding(&self, address: &str, now: OffsetDateTime) -> Result<Option<Suppression>, PartError> {
        Ok(self.entries.get(&suppression_key(address)).await?.filter(|entry| entry.holds_at(now)))
    }

    pub async fn add(&self, entry: &Suppression) -> Result<(), PartError> {
        self.entries.put(&suppression_key(&entry.address), entry).await
    }

    /// Takes `address` off the list; whether it was on it.
    pub async fn remove(&self, address: &str) -> Result<bool, PartError> {
        let key = suppression_key(address);
        let was = self.entries.get(&key).await?.is_some();
        self.entries.delete(&key).await?;
        Ok(was)
    }

    /// Every entry that still holds at `now`.
    pub async fn all(&self, now: OffsetDateTime) -> Result<Vec<Suppression>, PartError> {
        let mut all = Vec::new();
        for key in self.entries.keys().await? {
            if let Ok(Some(entry)) = self.entries.get(&key).await
                && entry.holds_at(now)
            {
                all.push(entry);
            }
        }
        all.sort_by_key(|entry| entry.at);
        Ok(all)
    }
}

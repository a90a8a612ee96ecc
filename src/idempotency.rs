//! `Idempotency-Key` on `POST /generate-image`: a client that retries after a timeout or a
//! dropped connection gets the job it already started, never a second (paid) generation.
//!
//! Keys live for 24 hours in the key-value bucket `huiying_idempotency`. Claiming one is a
//! single atomic create, so concurrent requests with the same key also get one job.

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};

use crate::bus::{BusError, IDEMPOTENCY_BUCKET};

/// What a key already stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimed {
    pub job_id: String,
    /// Identifies the request body, so a key reused for another request is caught.
    pub fingerprint: String,
}

pub enum Claim {
    /// The key is new and now names this job.
    New,
    /// The key was used before, for this job.
    Existing(Claimed),
}

#[derive(Clone)]
pub struct IdempotencyKeys {
    store: kv::Store,
}

fn kv_error(e: impl std::fmt::Display) -> BusError {
    BusError::KeyValue { bucket: IDEMPOTENCY_BUCKET, message: e.to_string() }
}

impl IdempotencyKeys {
    pub fn new(store: kv::Store) -> Self {
        Self { store }
    }

    /// Claims `key` for `job_id`, or returns what it was claimed for.
    pub async fn claim(&self, key: &str, claimed: &Claimed) -> Result<Claim, BusError> {
        let storage_key = storage_key(key);
        let value = serde_json::to_vec(claimed).expect("claims serialize");
        match self.store.create(&storage_key, value.into()).await {
            Ok(_) => Ok(Claim::New),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let value = self.store.get(&storage_key).await.map_err(kv_error)?;
                let existing = value
                    .and_then(|v| serde_json::from_slice(&v).ok())
                    .ok_or_else(|| kv_error("the key vanished while being read"))?;
                Ok(Claim::Existing(existing))
            }
            Err(e) => Err(kv_error(e)),
        }
    }

    /// Frees a key whose job could not be queued, so that a retry can queue it.
    pub async fn release(&self, key: &str) {
        if let Err(error) = self.store.delete(storage_key(key)).await {
            tracing::warn!(%error, "idempotency key not released");
        }
    }
}

/// Client keys may hold any characters; bucket keys may not: store a UUID v5 of them.
fn storage_key(key: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6875_6979_696e_6700_0000_0000_0000_0002);
    uuid::Uuid::new_v5(&NAMESPACE, key.as_bytes()).to_string()
}

/// A stable fingerprint of a request's meaning.
pub fn fingerprint(request: &impl Serialize) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6875_6979_696e_6700_0000_0000_0000_0003);
    let canonical = serde_json::to_vec(request).expect("requests serialize");
    uuid::Uuid::new_v5(&NAMESPACE, &canonical).to_string()
}

//! `Idempotency-Key` on `POST /generate-image`: a client that retries after a timeout or a
//! dropped connection gets the job it already started, never a second (paid) generation.
//!
//! Keys live for 24 hours in the key-value bucket `huiying_idempotency`. Claiming one is a
//! single atomic create, so concurrent requests with the same key also get one job.

use serde::{Deserialize, Serialize};

use crate::contract::values::JobId;
use crate::parts::JsonBucket;
use crate::parts::{PartError, PartErrorKind};

/// What a key already stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claimed {
    pub(crate) job_id: JobId,
    /// Identifies the request body, so a key reused for another request is caught.
    pub(crate) fingerprint: String,
}

pub(crate) enum Claim {
    /// The key is new and now names this job.
    New,
    /// The key was used before, for this job.
    Existing(Claimed),
}

#[derive(Clone)]
pub(crate) struct IdempotencyKeys {
    claims: JsonBucket<Claimed>,
}

impl IdempotencyKeys {
    pub(crate) fn new(claims: JsonBucket<Claimed>) -> Self {
        Self { claims }
    }

    /// Claims `key` for `claimed.job_id`, or returns what it was claimed for.
    pub(crate) async fn claim(&self, key: &str, claimed: &Claimed) -> Result<Claim, PartError> {
        let storage_key = storage_key(key);
        if self.claims.create(&storage_key, claimed).await? {
            return Ok(Claim::New);
        }
        match self.claims.get(&storage_key).await? {
            Some(existing) => Ok(Claim::Existing(existing)),
            // Gone between our create and our read (expired): a retry will claim it.
            None => Err(PartError::new(
                PartErrorKind::Conflict,
                format!("claiming an Idempotency-Key in {}", crate::contract::IDEMPOTENCY_BUCKET),
                "the key vanished while being read",
            )),
        }
    }
}

impl IdempotencyKeys {
    /// What `key` was claimed for, if it was (nothing is claimed).
    pub(crate) async fn claimed(&self, key: &str) -> Result<Option<Claimed>, PartError> {
        self.claims.get(&storage_key(key)).await
    }
}

/// The job a request of an SDK that retries by itself started (`x-stainless-retry-count:
/// 0`), kept so that its retries join it: an overwrite, not a claim, since two such
/// requests alike on purpose each get their own job.
#[derive(Clone)]
pub(crate) struct RetriedRequests {
    started: JsonBucket<Claimed>,
}

impl RetriedRequests {
    pub(crate) fn new(started: JsonBucket<Claimed>) -> Self {
        Self { started }
    }

    /// Remembers that the request `fingerprint` (for the caller `caller`) started `job_id`.
    pub(crate) async fn started(&self, caller: &str, fingerprint: &str, job_id: &JobId) -> Result<(), PartError> {
        let claimed = Claimed { job_id: job_id.clone(), fingerprint: fingerprint.into() };
        self.started.put(&storage_key(&format!("retried:{caller}:{fingerprint}")), &claimed).await
    }

    /// The job the latest such request started, if any.
    pub(crate) async fn job_of(&self, caller: &str, fingerprint: &str) -> Result<Option<JobId>, PartError> {
        let claimed = self.started.get(&storage_key(&format!("retried:{caller}:{fingerprint}"))).await?;
        Ok(claimed.map(|claimed| claimed.job_id))
    }
}

/// Client keys may hold any characters; bucket keys may not: store a UUID v5 of them.
fn storage_key(key: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6875_6979_696e_6700_0000_0000_0000_0002);
    uuid::Uuid::new_v5(&NAMESPACE, key.as_bytes()).to_string()
}

/// A stable fingerprint of a request's meaning.
pub(crate) fn fingerprint(request: &impl Serialize) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6875_6979_696e_6700_0000_0000_0000_0003);
    let canonical = serde_json::to_vec(request).expect("requests serialize");
    uuid::Uuid::new_v5(&NAMESPACE, &canonical).to_string()
}

//! Job states, kept in the `huiying_jobs` key-value bucket so that any ingest can
//! answer `GET /jobs/{id}` whichever process did the work.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::bus::{BusError, JOBS_BUCKET};
use crate::events::{ImageCompleted, ImageFailed};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Generating,
    Storing,
    Completed,
    Failed,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed)
    }
}

/// What `GET /jobs/{id}` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: String,
    pub status: JobState,
    pub prompt: String,
    pub model: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ImageCompleted>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ImageFailed>,
}

impl JobStatus {
    pub fn new(id: &str, status: JobState, prompt: &str, model: Option<&str>) -> Self {
        Self {
            id: id.into(),
            status,
            prompt: prompt.into(),
            model: model.map(String::from),
            updated_at: OffsetDateTime::now_utc(),
            result: None,
            error: None,
        }
    }

    pub fn completed(event: &ImageCompleted) -> Self {
        Self {
            result: Some(event.clone()),
            ..Self::new(&event.id, JobState::Completed, &event.prompt, Some(&event.model))
        }
    }

    pub fn failed(event: &ImageFailed) -> Self {
        Self { error: Some(event.clone()), ..Self::new(&event.id, JobState::Failed, &event.prompt, Some(&event.model)) }
    }
}

/// Reads and writes job states.
#[derive(Clone)]
pub struct JobBoard {
    store: kv::Store,
}

fn kv_error(e: impl std::fmt::Display) -> BusError {
    BusError::KeyValue { bucket: JOBS_BUCKET, message: e.to_string() }
}

impl JobBoard {
    pub fn new(store: kv::Store) -> Self {
        Self { store }
    }

    pub async fn set(&self, status: &JobStatus) -> Result<(), BusError> {
        let value = serde_json::to_vec(status).expect("job states serialize");
        self.store.put(&status.id, value.into()).await.map_err(kv_error)?;
        Ok(())
    }

    /// The job's state, or `None` for an unknown id.
    pub async fn get(&self, id: &str) -> Result<Option<JobStatus>, BusError> {
        if !is_valid_job_id(id) {
            return Ok(None);
        }
        let Some(value) = self.store.get(id).await.map_err(kv_error)? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&value).ok())
    }

    /// Waits until the job is completed or failed; `None` when `timeout` passes first.
    pub async fn wait_until_final(&self, id: &str, timeout: Duration) -> Result<Option<JobStatus>, BusError> {
        // The watch starts with the current value, so nothing between a check and the
        // watch can be missed.
        let mut updates = self.store.watch_with_history(id).await.map_err(kv_error)?;
        let wait = async {
            while let Some(entry) = updates.next().await {
                let entry = entry.map_err(kv_error)?;
                if let Ok(status) = serde_json::from_slice::<JobStatus>(&entry.value)
                    && status.status.is_final()
                {
                    return Ok(Some(status));
                }
            }
            Ok(None)
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => result,
            Err(_elapsed) => Ok(None),
        }
    }
}

/// Job ids are used as keys: only the characters a key-value key allows.
pub fn is_valid_job_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

//! Job states, as the `huiying_jobs` key-value bucket holds them and `GET /jobs/{id}`
//! shows them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::events::{ImageCompleted, ImageFailed, JobKind};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: String,
    pub status: JobState,
    pub prompt: String,
    pub model: Option<String>,
    /// What the job makes; absent: `generate`.
    #[serde(default, skip_serializing_if = "JobKind::is_generate")]
    pub kind: JobKind,
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
            kind: JobKind::Generate,
            updated_at: OffsetDateTime::now_utc(),
            result: None,
            error: None,
        }
    }
}

impl JobStatus {
    /// The same state of a job of `kind`.
    pub fn of_kind(self, kind: JobKind) -> Self {
        Self { kind, ..self }
    }
}

impl From<&ImageCompleted> for JobStatus {
    fn from(event: &ImageCompleted) -> Self {
        Self {
            result: Some(event.clone()),
            kind: event.kind,
            ..Self::new(&event.id, JobState::Completed, &event.prompt, Some(&event.model))
        }
    }
}

impl From<&ImageFailed> for JobStatus {
    fn from(event: &ImageFailed) -> Self {
        Self {
            error: Some(event.clone()),
            kind: event.kind,
            ..Self::new(&event.id, JobState::Failed, &event.prompt, Some(&event.model))
        }
    }
}

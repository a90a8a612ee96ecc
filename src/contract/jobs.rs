//! Job states, as the `huiying_jobs` key-value bucket holds them and `GET /jobs/{id}`
//! shows them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::events::{ImageCompleted, ImageFailed, JobKind, RequestWebhook};
use super::values::JobId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    /// The generator is translating the prompt (only when it has Chinese and a translator is set).
    Translating,
    Generating,
    /// The store is still at it after 0.1 s (an upload to S3 or R2, a slow disk) or an
    /// attempt failed; a picture stored at once goes from `Generating` to `Completed`.
    Storing,
    Completed,
    Failed,
    /// Stopped by `POST /jobs/{id}/cancel` or its `deadline` before a picture was kept.
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed | JobState::Cancelled)
    }

    /// The state's name, as JSON and the event streams spell it.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Translating => "translating",
            JobState::Generating => "generating",
            JobState::Storing => "storing",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// Someone asked to stop a job (`POST /jobs/{id}/cancel`). Kept beside the job's state
/// (key `<id>.cancel`) and read by each stage before it starts work on the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CancelRequest {
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// Send the usual failure mail for it (off: a cancelled job mails nobody).
    #[serde(default)]
    pub notify: bool,
    /// Who asked: the API key's name (`key #2` while keys have no names), or none when
    /// the server takes requests without keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// Whom a job notifies besides the configured endpoints and `[smtp] to`: kept beside its
/// state (key `<id>.notify`) rather than in its events, which every subscriber reads and
/// the stream keeps for 7 days: an address is personal, and a robot's webhook URL
/// (DingTalk, Feishu, WeCom) is its credential. The mailer and the webhook service read it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NotifyTargets {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_email: Option<String>,
    #[serde(flatten)]
    pub callback: RequestWebhook,
}

impl NotifyTargets {
    pub fn is_empty(&self) -> bool {
        self.notify_email.is_none() && self.callback.webhook.is_none()
    }
}

/// A deleted job's mark (key `<id>.deleted`, beside where its state was), so that a
/// repeated delete by its owner answers as the first did while the bucket keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletedJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub deleted_at: OffsetDateTime,
}

/// What `GET /jobs/{id}` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobStatus {
    #[schema(value_type = String)]
    pub id: JobId,
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
    /// The API key's name the job belongs to (shown to admins; absent: no key's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A cancel was asked for and the job has not ended yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    /// While the job waits: 1 + the jobs queued before it that the generator has not
    /// finished (1: none ahead). Worked out when shown, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u64>,
}

impl JobStatus {
    pub fn new(id: &JobId, status: JobState, prompt: &str, model: Option<&str>) -> Self {
        Self {
            id: id.clone(),
            status,
            prompt: prompt.into(),
            model: model.map(String::from),
            kind: JobKind::Generate,
            updated_at: OffsetDateTime::now_utc(),
            result: None,
            error: None,
            owner: None,
            cancel_requested: false,
            queue_position: None,
        }
    }
}

impl JobStatus {
    /// The same state of a job of `kind`.
    pub fn of_kind(self, kind: JobKind) -> Self {
        Self { kind, ..self }
    }

    /// The same state of a job that belongs to `owner`.
    pub fn owned_by(self, owner: Option<&str>) -> Self {
        Self { owner: owner.map(String::from), ..self }
    }
}

impl From<&ImageCompleted> for JobStatus {
    fn from(event: &ImageCompleted) -> Self {
        Self {
            result: Some(event.clone()),
            kind: event.kind,
            owner: event.owner.clone(),
            ..Self::new(&event.id, JobState::Completed, &event.prompt, Some(&event.model))
        }
    }
}

impl From<&ImageFailed> for JobStatus {
    fn from(event: &ImageFailed) -> Self {
        let state = match event.cancelled {
            Some(_) => JobState::Cancelled,
            None => JobState::Failed,
        };
        Self {
            error: Some(event.clone()),
            kind: event.kind,
            owner: event.owner.clone(),
            ..Self::new(&event.id, state, &event.prompt, Some(&event.model))
        }
    }
}

//! The events: one subject per event type, JSON bodies, version 1.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::budget::BudgetRefusal;
pub use super::cost::{Cost, CostSource};
pub use super::edits::{InputPicture, JobKind};
pub use super::groups::GroupRef;
pub use super::options::GenerationOptions;
pub use super::requested::{CheckedRequest, ImageRequested, RequestWebhook, derived_job_id};
use super::values::{JobId, ModelName, Prompt};

/// ingest (or anyone) → generator: please draw this.
pub const IMAGE_REQUESTED: &str = "image.requested";
/// generator → store: here is the picture (in the message or the object store), please keep it.
pub const IMAGE_GENERATED: &str = "image.generated";
/// store → everyone: the picture is stored and has a link.
pub const IMAGE_COMPLETED: &str = "image.completed";
/// any stage → everyone: the job ended without a picture.
pub const IMAGE_FAILED: &str = "image.failed";

/// The only version this build reads and writes. Events without `version` are version 1.
pub const EVENT_VERSION: u32 = 1;

/// An event type bound to its subject, so that a subject can never carry the wrong body.
pub trait Event: Serialize + for<'de> Deserialize<'de> {
    const SUBJECT: &'static str;
    /// The job this event belongs to.
    fn job_id(&self) -> &str;
    fn version(&self) -> u32;
}

/// A generated picture waiting for the store. A small picture travels in the message
/// (`picture_base64`); a larger one is object `object` of the object store bucket `bucket`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageGenerated {
    #[serde(default = "version_one")]
    pub version: u32,
    pub id: JobId,
    pub prompt: Prompt,
    pub english_prompt: String,
    pub model: ModelName,
    pub provider: String,
    /// Where the picture is.
    #[serde(flatten)]
    pub picture: PictureAt,
    pub content_type: String,
    pub byte_size: u64,
    /// How many deliveries of the request it took.
    pub attempts: u32,
    /// What the job cost, as far as it is known.
    #[serde(flatten)]
    pub cost: Cost,
    /// Options of the request the model could not honour, left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_options: Vec<String>,
    /// Set when a fallback drew the picture (`model`) instead of the model asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// From the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The API key's name that queued the job; absent: no key's (admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// From the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_email: Option<String>,
    /// From the request.
    #[serde(flatten)]
    pub callback: RequestWebhook,
    /// What the job makes; absent: `generate`.
    #[serde(default, skip_serializing_if = "JobKind::is_generate")]
    pub kind: JobKind,
    /// The pictures an edit starts from (none for a generation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputPicture>,
    /// The group the job belongs to (one of `n` pictures of one request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupRef>,

    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub requested_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub generated_at: OffsetDateTime,
}

/// Pictures up to this size travel inside `image.generated`; larger ones go through the
/// object store. Below it, the object store's writes, lookups and per-read consumer cost
/// more than the bytes; the price is that such a picture is kept as long as events are
/// (7 days) rather than the bucket's 24 hours. 64 KiB is 86 KiB in base64, far under
/// NATS' default 1 MB message limit.
pub const INLINE_PICTURE_LIMIT: usize = 64 * 1024;

/// Where a generated picture is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PictureAt {
    /// In the message itself, base64 (pictures up to 64 KiB).
    Inline {
        #[serde(with = "super::base64_bytes")]
        #[schemars(with = "String", extend("contentEncoding" = "base64"))]
        picture_base64: Vec<u8>,
    },
    /// In the JetStream object store (larger pictures; kept 24 hours).
    Object { bucket: String, object: String },
}

/// A stored picture, with an absolute link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct ImageCompleted {
    #[serde(default = "version_one")]
    pub version: u32,
    #[schema(value_type = String)]
    pub id: JobId,
    #[schema(value_type = String)]
    pub prompt: Prompt,
    pub english_prompt: String,
    #[schema(value_type = String)]
    pub model: ModelName,
    /// Absolute link to the picture: the R2 public URL when stored there, else ingest's.
    pub url: String,
    /// Absolute link through ingest (`/static/images/<filename>`).
    pub local_url: String,
    pub r2_url: Option<String>,
    pub filename: String,
    pub width: u32,
    pub height: u32,
    /// `jpeg`, `png` or `webp`: the format of the stored file.
    pub format: String,
    pub file_size: u64,
    /// The AI-content labels the file carries (absent in events from before labels: none).
    #[serde(default)]
    pub labels: Labels,
    /// What the job makes; absent: `generate`.
    #[serde(default, skip_serializing_if = "JobKind::is_generate")]
    pub kind: JobKind,
    /// The pictures an edit starts from (none for a generation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputPicture>,
    /// The group the job belongs to (one of `n` pictures of one request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupRef>,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub requested_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub completed_at: OffsetDateTime,
    /// From request to stored picture, in milliseconds.
    pub duration_ms: u64,
    /// What the job cost, as far as it is known.
    #[serde(flatten)]
    pub cost: Cost,
    /// The API key's name that queued the job; absent: no key's (admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Options of the request the model could not honour, left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_options: Vec<String>,
    /// Set when a fallback drew the picture (`model`) instead of the model asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// From the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_email: Option<String>,
    /// From the request.
    #[serde(flatten)]
    pub callback: RequestWebhook,
}

/// The model a request asked for, when another drew the picture (`[models."<name>"]
/// fallback`), and why the one asked for did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct Fallback {
    pub requested_model: String,
    /// The last failure of the model asked for (and of any fallback tried before).
    pub reason: String,
}

/// Which AI-content labels a stored picture carries (GB 45438-2025): `implicit`, the
/// XMP metadata (TC260 `AIGC`, IPTC digital source type); `explicit`, the visible text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct Labels {
    pub implicit: bool,
    pub explicit: bool,
}

/// The stage a job failed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The request itself was unusable (e.g. an empty prompt published straight to NATS).
    Request,
    /// The image model could not draw it.
    Generate,
    /// The picture could not be processed or stored.
    Store,
    /// Nobody wanted it any more: cancelled, or its deadline passed before it started.
    Cancelled,
    /// Over a budget: the model was never called (`budget` says which).
    Budget,
}

/// Why a job was cancelled, and whether its owner still wants the usual mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct Cancellation {
    pub by: CancelledBy,
    /// The canceller asked for the failure mail (`{"notify": true}`); otherwise a
    /// cancelled job mails nobody.
    #[serde(default)]
    pub notify: bool,
    /// Who asked (`by: request`): the API key's name, absent without keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// When it was asked (`by: request`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    #[schemars(with = "Option<String>", extend("format" = "date-time"))]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub requested_at: Option<OffsetDateTime>,
}

impl Cancellation {
    /// Cancelled because someone asked, as `asked` says.
    pub fn asked(asked: &super::jobs::CancelRequest) -> Self {
        Self {
            by: CancelledBy::Request,
            notify: asked.notify,
            key: asked.by.clone(),
            requested_at: Some(asked.requested_at),
        }
    }

    /// Cancelled because its deadline passed before it reached the model.
    pub fn deadline() -> Self {
        Self { by: CancelledBy::Deadline, notify: false, key: None, requested_at: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CancelledBy {
    /// `POST /jobs/{id}/cancel`.
    Request,
    /// The request's `deadline` passed before the job reached the model.
    Deadline,
}

/// The facts about a job that every failure event repeats.
#[derive(Debug, Clone, Copy)]
pub struct JobFacts<'a> {
    pub id: &'a JobId,
    pub prompt: &'a str,
    pub model: &'a str,
    pub notify_email: Option<&'a str>,
    pub callback: &'a RequestWebhook,
    pub kind: JobKind,
    pub owner: Option<&'a str>,
    pub group: Option<&'a GroupRef>,
}

/// A job that ended without a picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct ImageFailed {
    #[serde(default = "version_one")]
    pub version: u32,
    #[schema(value_type = String)]
    pub id: JobId,
    /// As the request said it: a job can fail because its prompt or model was unusable.
    pub prompt: String,
    pub model: String,
    pub stage: Stage,
    /// What went wrong, in words a user can act on. Never holds secrets.
    pub error: String,
    /// Whether trying again later might work (the stage gave up after `attempts`).
    pub transient: bool,
    pub attempts: u32,
    /// What the job cost: 0 when no paid call was made; a job that reached the provider
    /// and failed (or was cancelled) after it records what that call cost.
    #[serde(flatten)]
    pub cost: Cost,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub failed_at: OffsetDateTime,
    /// The API key's name that queued the job; absent: no key's (admins only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// From the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_email: Option<String>,
    /// From the request.
    #[serde(flatten)]
    pub callback: RequestWebhook,
    /// What the job was to make; absent: `generate`.
    #[serde(default, skip_serializing_if = "JobKind::is_generate")]
    pub kind: JobKind,
    /// Set when the job was cancelled (`stage` is then `cancelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<Cancellation>,
    /// Set when a budget refused the job (`stage` is then `budget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetRefusal>,
    /// The group the job belongs to (one of `n` pictures of one request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupRef>,
}

impl ImageFailed {
    /// The one way a stage ends a job without a picture.
    pub fn new(job: JobFacts<'_>, stage: Stage, error: String, transient: bool, attempts: u32) -> Self {
        Self {
            version: EVENT_VERSION,
            id: job.id.clone(),
            prompt: job.prompt.into(),
            model: job.model.into(),
            stage,
            error,
            transient,
            attempts,
            cost: Cost::nothing(),
            failed_at: OffsetDateTime::now_utc(),
            owner: job.owner.map(String::from),
            notify_email: job.notify_email.map(String::from),
            callback: job.callback.clone(),
            kind: job.kind,
            cancelled: None,
            budget: None,
            group: job.group.cloned(),
        }
    }

    /// The job refused by a budget (`refusal`), or because, with a budget set, its model has
    /// no price (`refusal` absent; `error` names the `[prices]` key to set).
    pub fn over_budget(job: JobFacts<'_>, error: String, refusal: Option<BudgetRefusal>, attempts: u32) -> Self {
        Self { budget: refusal, ..Self::new(job, Stage::Budget, error, false, attempts) }
    }

    /// The same failure, having cost `cost` (a provider call made before it failed).
    pub fn costing(self, cost: Cost) -> Self {
        Self { cost, ..self }
    }

    /// The one way a stage ends a job nobody wants any more.
    pub fn cancelled(job: JobFacts<'_>, cancellation: Cancellation, attempts: u32) -> Self {
        let error = match cancellation.by {
            CancelledBy::Request => "cancelled at the client's request",
            CancelledBy::Deadline => "cancelled: its deadline passed before it reached the model",
        };
        Self { cancelled: Some(cancellation), ..Self::new(job, Stage::Cancelled, error.into(), false, attempts) }
    }
}

impl ImageGenerated {
    pub fn facts(&self) -> JobFacts<'_> {
        JobFacts {
            id: &self.id,
            prompt: &self.prompt,
            model: &self.model,
            notify_email: self.notify_email.as_deref(),
            callback: &self.callback,
            kind: self.kind,
            owner: self.owner.as_deref(),
            group: self.group.as_ref(),
        }
    }
}

pub(crate) fn version_one() -> u32 {
    EVENT_VERSION
}

/// Binds each event type to its subject.
macro_rules! event_on_subject {
    ($($event:ty => $subject:expr),* $(,)?) => {$(
        impl Event for $event {
            const SUBJECT: &'static str = $subject;
            fn job_id(&self) -> &str {
                &self.id
            }
            fn version(&self) -> u32 {
                self.version
            }
        }
    )*};
}

event_on_subject! {
    ImageRequested => IMAGE_REQUESTED,
    ImageGenerated => IMAGE_GENERATED,
    ImageCompleted => IMAGE_COMPLETED,
    ImageFailed => IMAGE_FAILED,
}

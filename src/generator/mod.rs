//! The generator: `image.requested` → (translation) → an image model → picture in the
//! object store → `image.generated` (or `image.failed`).

mod fetch;
mod http;
mod openai;
mod openrouter;
pub mod placeholder;
mod providers;
pub mod translate;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, ConsumerSpec};
use crate::config::{Config, GeneratorConfig};
use crate::events::{self, EVENT_VERSION, Event, ImageFailed, ImageGenerated, ImageRequested, Stage};
use crate::jobs::{JobBoard, JobState, JobStatus, is_valid_job_id};
use crate::worker::{self, Outcome, Received};
pub use fetch::is_public;
pub use openrouter::find_image;
pub use providers::{ProviderKind, Providers};
pub use translate::Translator;

/// A picture as a provider returned it, before the store processes it.
#[derive(Debug)]
pub struct GeneratedImage {
    pub bytes: Vec<u8>,
    pub content_type: String,
    pub model: String,
    pub provider: &'static str,
}

/// Where a provider put the picture: a `data:` URL or an http(s) link.
#[derive(Debug)]
pub struct ImageAnswer {
    pub url: String,
}

/// What kind of failure decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// May pass (timeouts, 408, 429, 5xx): try again after a while.
    Transient,
    /// Will not pass (401, 403, 404, content policy, no picture in the answer).
    Permanent,
    /// The request asks for something this model cannot do (an option, an unknown model).
    Refused,
}

/// Why a provider gave no picture.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct GenerateError {
    /// In words a user can act on; never holds keys or base64.
    pub message: String,
    pub kind: FailureKind,
    /// The provider's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl GenerateError {
    pub fn transient(message: String) -> Self {
        Self { message, kind: FailureKind::Transient, retry_after: None }
    }
    pub fn permanent(message: String) -> Self {
        Self { message, kind: FailureKind::Permanent, retry_after: None }
    }
    pub fn refused(message: String) -> Self {
        Self { message, kind: FailureKind::Refused, retry_after: None }
    }
}

/// Everything one generator instance needs to handle a request.
#[derive(Clone)]
pub struct Generator {
    bus: Bus,
    jobs: JobBoard,
    providers: Arc<Providers>,
    translator: Option<Translator>,
    translation_required: bool,
    settings: GeneratorConfig,
}

/// Durable consumer of `image.requested` (ingest reads its backlog).
pub const CONSUMER: &str = "generator";

pub fn consumer_spec(settings: &GeneratorConfig, ack_wait: Duration) -> ConsumerSpec {
    ConsumerSpec {
        durable: CONSUMER,
        description: "huiying generator: draws requested pictures",
        subjects: &[events::IMAGE_REQUESTED],
        ack_wait,
        // Unlimited: the handler decides when a provider failure is final, and NATS
        // hiccups (object store, publish) are retried until NATS is healthy again.
        max_deliver: -1,
        max_ack_pending: (settings.concurrency * 4).max(16) as i64,
    }
}

/// Runs the generator until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let providers = Providers::from_config(&config)?;
    let translator = Translator::from_config(&config)?;
    let bus = Bus::connect(&config.nats, "huiying-generator", &shutdown).await?;
    let spec = consumer_spec(&config.generator, config.nats.ack_wait());
    let consumer = bus.durable_consumer(&spec).await?;
    tracing::info!(default_model = providers.default_model(), translation = translator.is_some(), "generator ready");
    let generator = Generator {
        jobs: JobBoard::new(bus.jobs.clone()),
        bus: bus.clone(),
        providers,
        translator,
        translation_required: config.translation.required,
        settings: config.generator.clone(),
    };
    worker::run(
        bus,
        consumer,
        config.generator.concurrency,
        worker::Patience::from_config(&config.nats),
        shutdown,
        move |received| {
            let generator = generator.clone();
            async move { generator.handle(received).await }
        },
    )
    .await
}

impl Generator {
    /// Handles one delivery of `image.requested`.
    pub async fn handle(&self, received: Received) -> Outcome {
        let mut request: ImageRequested = match serde_json::from_slice(&received.payload) {
            Ok(request) => request,
            Err(e) => return Outcome::Reject(format!("not an image.requested event: {e}")),
        };
        if request.version() > EVENT_VERSION {
            return Outcome::Reject(format!("event version {} is newer than this generator", request.version));
        }
        if request.id.is_empty() {
            request.id = events::derived_job_id(&received.stream, received.stream_sequence, received.published);
        } else if !is_valid_job_id(&request.id) {
            return Outcome::Reject(format!("job id {:?} may hold only letters, digits, - and _", request.id));
        }
        let model = request.model.clone().filter(|m| !m.trim().is_empty());
        let model = model.unwrap_or_else(|| self.providers.default_model().to_string());
        let attempt = received.attempt;
        let checked = events::check_prompt(&request.prompt)
            .and_then(|()| request.options.check())
            .and_then(|()| events::check_model(&model));
        if let Err(problem) = checked {
            return self.fail(&request, &model, Stage::Request, problem, false, attempt).await;
        }

        // A redelivery of a request that already got past this stage: nothing to do.
        match self.jobs.get(&request.id).await {
            Ok(Some(status)) if status.status != JobState::Queued && status.status != JobState::Generating => {
                return Outcome::Done;
            }
            Ok(_) => {}
            Err(error) => return self.retry_later(&request.id, &error.to_string(), attempt),
        }
        let generating = JobStatus::new(&request.id, JobState::Generating, &request.prompt, Some(&model));
        if let Err(error) = self.jobs.set(&generating).await {
            return self.retry_later(&request.id, &error.to_string(), attempt);
        }

        let english_prompt = match self.english_prompt(&request).await {
            Ok(english) => english,
            Err(error) => return self.after_failure(&request, &model, error, attempt).await,
        };
        tracing::info!(job = %request.id, %model, attempt, "generating");
        let image = match self.providers.generate(&english_prompt, &model, &request.options).await {
            Ok(image) => image,
            Err(error) => return self.after_failure(&request, &model, error, attempt).await,
        };

        let generated = ImageGenerated {
            version: EVENT_VERSION,
            id: request.id.clone(),
            prompt: request.prompt.clone(),
            english_prompt,
            model: image.model,
            provider: image.provider.to_string(),
            bucket: crate::bus::IMAGES_BUCKET.into(),
            object: request.id.clone(),
            content_type: image.content_type,
            byte_size: image.bytes.len() as u64,
            attempts: attempt,
            notify_email: request.notify_email.clone(),
            requested_at: request.requested_at,
            generated_at: OffsetDateTime::now_utc(),
        };
        let mut bytes = image.bytes.as_slice();
        if let Err(error) = self.bus.images.put(generated.object.as_str(), &mut bytes).await {
            return self.retry_later(&request.id, &format!("saving the picture to the object store: {error}"), attempt);
        }
        if let Err(error) = self.bus.publish(&generated).await {
            return self.retry_later(&request.id, &error.to_string(), attempt);
        }
        Outcome::Done
    }

    /// The prompt in English: translated when it holds Chinese and a translator is set.
    /// A failed translation falls back to the original prompt unless it is required.
    async fn english_prompt(&self, request: &ImageRequested) -> Result<String, GenerateError> {
        let Some(translator) = &self.translator else { return Ok(request.prompt.clone()) };
        if !translate::has_cjk(&request.prompt) {
            return Ok(request.prompt.clone());
        }
        match translator.translate(&request.prompt).await {
            Ok(english) => {
                tracing::info!(job = %request.id, %english, "prompt translated");
                Ok(english)
            }
            Err(error) if self.translation_required => {
                Err(GenerateError::transient(format!("translating the prompt failed: {error}")))
            }
            Err(error) => {
                tracing::warn!(job = %request.id, %error, "translation failed; using the original prompt");
                Ok(request.prompt.clone())
            }
        }
    }

    /// Retries a transient failure while attempts are left; otherwise ends the job.
    async fn after_failure(
        &self,
        request: &ImageRequested,
        model: &str,
        error: GenerateError,
        attempt: u32,
    ) -> Outcome {
        match error.kind {
            FailureKind::Transient if attempt < self.settings.max_attempts => {
                let delay = self.retry_delay(attempt).max(error.retry_after.unwrap_or_default());
                tracing::warn!(job = %request.id, %error, attempt, ?delay, "provider failed; will retry");
                Outcome::Retry(delay)
            }
            FailureKind::Refused => self.fail(request, model, Stage::Request, error.message, false, attempt).await,
            kind => {
                let transient = kind == FailureKind::Transient;
                let stage = Stage::Generate;
                self.fail(request, model, stage, error.message, transient, attempt).await
            }
        }
    }

    /// Ends the job: `image.failed`, then the failed state.
    async fn fail(
        &self,
        request: &ImageRequested,
        model: &str,
        stage: Stage,
        error: String,
        transient: bool,
        attempts: u32,
    ) -> Outcome {
        tracing::warn!(job = %request.id, %error, "generation failed");
        let failed = ImageFailed {
            version: EVENT_VERSION,
            id: request.id.clone(),
            prompt: request.prompt.clone(),
            model: model.into(),
            stage,
            error,
            transient,
            attempts,
            failed_at: OffsetDateTime::now_utc(),
            notify_email: request.notify_email.clone(),
        };
        if let Err(e) = self.bus.publish(&failed).await {
            return self.retry_later(&request.id, &e.to_string(), attempts);
        }
        if let Err(e) = self.jobs.set(&JobStatus::failed(&failed)).await {
            return self.retry_later(&request.id, &e.to_string(), attempts);
        }
        Outcome::Done
    }

    /// A NATS hiccup, not the provider's fault: try the delivery again.
    fn retry_later(&self, job: &str, problem: &str, attempt: u32) -> Outcome {
        tracing::warn!(%job, %problem, "will retry");
        Outcome::Retry(self.retry_delay(attempt))
    }

    /// Exponential backoff with ±20% jitter, so that retries of many jobs spread out.
    fn retry_delay(&self, attempt: u32) -> Duration {
        let base = worker::backoff(Duration::from_secs(self.settings.retry_delay), attempt, Duration::from_secs(600));
        base.mul_f64(0.8 + 0.4 * fastrand::f64())
    }
}

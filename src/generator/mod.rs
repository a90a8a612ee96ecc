//! The generator: `image.requested` → an image model → picture in the object store →
//! `image.generated` (or `image.failed`).

mod openrouter;
pub mod placeholder;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, ConsumerSpec};
use crate::config::{Config, GeneratorConfig};
use crate::events::{self, EVENT_VERSION, Event, ImageFailed, ImageGenerated, ImageRequested, Stage};
use crate::jobs::{JobBoard, JobState, JobStatus, is_valid_job_id};
use crate::worker::{self, Outcome, Received};
pub use openrouter::OpenRouterClient;

/// A picture as a provider returned it, before the store processes it.
#[derive(Debug)]
pub struct GeneratedImage {
    pub bytes: Vec<u8>,
    pub content_type: String,
    pub model: String,
    pub provider: &'static str,
}

/// Why a provider gave no picture; `transient` decides retry or give up.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct GenerateError {
    pub message: String,
    pub transient: bool,
}

impl GenerateError {
    pub fn transient(message: String) -> Self {
        Self { message, transient: true }
    }
    pub fn permanent(message: String) -> Self {
        Self { message, transient: false }
    }
}

/// The image models this generator can call. Which one serves a request follows from
/// the model name: the placeholder's own name, else OpenRouter when a key is set.
#[derive(Clone)]
pub struct Providers {
    openrouter: Option<OpenRouterClient>,
    default_openrouter_model: String,
}

impl Providers {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let key = &config.api_keys.openrouter_api_key;
        let openrouter = match key.is_set() {
            true => Some(OpenRouterClient::new(&config.openrouter, key.clone())?),
            false => None,
        };
        Ok(Self { openrouter, default_openrouter_model: config.models.default_openrouter_model.clone() })
    }

    /// The model a request without one gets.
    pub fn default_model(&self) -> &str {
        match self.openrouter {
            Some(_) => &self.default_openrouter_model,
            None => placeholder::MODEL,
        }
    }

    pub async fn generate(&self, prompt: &str, model: &str) -> Result<GeneratedImage, GenerateError> {
        if model == placeholder::MODEL {
            let prompt = prompt.to_string();
            let bytes = tokio::task::spawn_blocking(move || placeholder::draw(&prompt))
                .await
                .map_err(|e| GenerateError::permanent(format!("the placeholder crashed: {e}")))?;
            return Ok(GeneratedImage {
                bytes,
                content_type: "image/png".into(),
                model: model.into(),
                provider: "placeholder",
            });
        }
        match &self.openrouter {
            Some(client) => client.generate(prompt, model).await,
            None => Err(GenerateError::permanent(format!(
                "model {model} needs an image API, and none is configured: set OPENROUTER_API_KEY, \
                 or use model {} for the offline placeholder",
                placeholder::MODEL
            ))),
        }
    }
}

/// Everything one generator instance needs to handle a request.
#[derive(Clone)]
pub struct Generator {
    bus: Bus,
    jobs: JobBoard,
    providers: Arc<Providers>,
    settings: GeneratorConfig,
}

pub fn consumer_spec(settings: &GeneratorConfig, ack_wait: Duration) -> ConsumerSpec {
    ConsumerSpec {
        durable: "generator",
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
    let bus = Bus::connect(&config.nats, "huiying-generator", &shutdown).await?;
    let spec = consumer_spec(&config.generator, config.nats.ack_wait());
    let consumer = bus.durable_consumer(&spec).await?;
    tracing::info!(default_model = providers.default_model(), "generator ready");
    let generator = Generator {
        jobs: JobBoard::new(bus.jobs.clone()),
        bus,
        providers: Arc::new(providers),
        settings: config.generator.clone(),
    };
    worker::run(consumer, config.generator.concurrency, spec.ack_wait, shutdown, move |received| {
        let generator = generator.clone();
        async move { generator.handle(received).await }
    })
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
        if let Err(problem) = events::check_prompt(&request.prompt) {
            return self.fail(&request, &model, problem, false, received.attempt).await;
        }

        // A redelivery of a request that already got past this stage: nothing to do.
        match self.jobs.get(&request.id).await {
            Ok(Some(status)) if status.status != JobState::Queued && status.status != JobState::Generating => {
                return Outcome::Done;
            }
            Ok(_) => {}
            Err(error) => {
                return self.retry_later(&request.id, &error.to_string(), received.attempt);
            }
        }
        let generating = JobStatus::new(&request.id, JobState::Generating, &request.prompt, Some(&model));
        if let Err(error) = self.jobs.set(&generating).await {
            return self.retry_later(&request.id, &error.to_string(), received.attempt);
        }

        tracing::info!(job = %request.id, %model, attempt = received.attempt, "generating");
        let image = match self.providers.generate(&request.prompt, &model).await {
            Ok(image) => image,
            Err(error) if error.transient && received.attempt < self.settings.max_attempts => {
                tracing::warn!(job = %request.id, %error, attempt = received.attempt, "provider failed; will retry");
                return Outcome::Retry(self.retry_delay(received.attempt));
            }
            Err(error) => {
                return self.fail(&request, &model, error.message, error.transient, received.attempt).await;
            }
        };

        let generated = ImageGenerated {
            version: EVENT_VERSION,
            id: request.id.clone(),
            prompt: request.prompt.clone(),
            // Translation of Chinese prompts plugs in here; until then the prompt is used as is.
            english_prompt: request.prompt.clone(),
            model: image.model,
            provider: image.provider.to_string(),
            bucket: crate::bus::IMAGES_BUCKET.into(),
            object: request.id.clone(),
            content_type: image.content_type,
            byte_size: image.bytes.len() as u64,
            attempts: received.attempt,
            notify_email: request.notify_email.clone(),
            requested_at: request.requested_at,
            generated_at: OffsetDateTime::now_utc(),
        };
        let mut bytes = image.bytes.as_slice();
        if let Err(error) = self.bus.images.put(generated.object.as_str(), &mut bytes).await {
            return self.retry_later(
                &request.id,
                &format!("saving the picture to the object store: {error}"),
                received.attempt,
            );
        }
        if let Err(error) = self.bus.publish(&generated).await {
            return self.retry_later(&request.id, &error.to_string(), received.attempt);
        }
        Outcome::Done
    }

    /// Ends the job: `image.failed`, then the failed state.
    async fn fail(
        &self,
        request: &ImageRequested,
        model: &str,
        error: String,
        transient: bool,
        attempts: u32,
    ) -> Outcome {
        tracing::warn!(job = %request.id, %error, "generation failed");
        let stage = if events::check_prompt(&request.prompt).is_err() { Stage::Request } else { Stage::Generate };
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

    fn retry_delay(&self, attempt: u32) -> Duration {
        worker::backoff(Duration::from_secs(self.settings.retry_delay), attempt, Duration::from_secs(600))
    }
}

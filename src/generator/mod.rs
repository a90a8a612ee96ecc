//! The generator: `image.requested` → (translation) → an image model → picture in the
//! object store → `image.generated` (or `image.failed`).

mod automatic1111;
mod budget;
#[cfg(test)]
mod budget_tests;
mod comfyui;
mod cost;
mod drawing;
mod endings;
mod model;
mod modelscope;
mod openai;
mod openrouter;
mod placeholder;
mod providers;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, ConsumerSpec};
use crate::clock::Clock;
use crate::config::Config;
use crate::contract::cost::Cost;
use crate::contract::events::{
    self, Cancellation, CheckedRequest, EVENT_VERSION, INLINE_PICTURE_LIMIT, ImageGenerated, ImageRequested, JobFacts,
    JobKind, PictureAt, Stage as JobStage,
};
use crate::contract::jobs::{JobState, JobStatus};
use crate::contract::services::Service;
use crate::contract::spend::SPEND_BUCKET;
use crate::contract::values::JobId;
use crate::contract::{IMAGES_BUCKET, consumers};
use crate::failure::{Failure, RetryPolicy};
use crate::parts::JobBoard;
use crate::parts::{self, KeyValue, Objects, Publish};
use crate::translate::{self, Translator};
use crate::worker::{self, Received, Stage};
use budget::Spending;
use drawing::{Call, Drawn};
use providers::{Providers, unpaid};

/// The offline placeholder's model name (never passed off as AI).
pub use crate::config::PLACEHOLDER_MODEL;

/// A picture as a provider returned it, before the store processes it.
#[derive(Debug)]
struct GeneratedImage {
    bytes: Vec<u8>,
    content_type: String,
    provider: &'static str,
    /// Options of the request this model cannot honour, left out.
    ignored: Vec<String>,
    /// What the call cost, and the provider's own account of it.
    cost: Cost,
}

/// A picture an edit starts from, read back from the object store.
#[derive(Debug, Clone)]
struct EditInput {
    bytes: Vec<u8>,
    content_type: String,
    /// What the client named: `upload:<id>`, `record:<job id>` or a URL.
    source: String,
    /// A mask for the picture before it, not a picture of its own.
    mask: bool,
}

impl EditInput {
    fn data_url(&self) -> String {
        use base64::Engine;
        format!("data:{};base64,{}", self.content_type, base64::engine::general_purpose::STANDARD.encode(&self.bytes))
    }

    /// The client's link when it gave one (the provider may fetch it itself), else the
    /// picture as a `data:` URL.
    fn url_for_provider(&self) -> String {
        match self.source.starts_with("http://") || self.source.starts_with("https://") {
            true => self.source.clone(),
            false => self.data_url(),
        }
    }

    fn extension(&self) -> &'static str {
        match self.content_type.as_str() {
            "image/jpeg" => "jpg",
            "image/webp" => "webp",
            "image/gif" => "gif",
            _ => "png",
        }
    }
}

/// The generator stage: one instance's parts and settings.
#[derive(Clone)]
pub struct Generator {
    publisher: Arc<dyn Publish>,
    jobs: JobBoard,
    objects: Arc<dyn Objects>,
    providers: Arc<Providers>,
    translator: Option<Translator>,
    translation_required: bool,
    /// `[server] strict_options`: an option the model cannot honour fails the job.
    strict_options: bool,
    policy: RetryPolicy,
    spending: Spending,
}

fn consumer_spec(config: &Config) -> ConsumerSpec {
    ConsumerSpec {
        durable: consumers::GENERATOR,
        description: "huiying generator: draws requested pictures",
        subjects: &[events::IMAGE_REQUESTED],
        ack_wait: config.nats.ack_wait,
        // Unlimited: the stage decides when a provider failure is final, and NATS
        // hiccups (object store, publish) are retried until NATS is healthy again.
        max_deliver: -1,
        max_ack_pending: (config.generator.concurrency * 4).max(16) as i64,
    }
}

/// Runs the generator until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let bus = Bus::connect(&config.nats, Service::Generator.program(), &shutdown).await?;
    let consumer = bus.durable_consumer(&consumer_spec(&config)).await?;
    let pings = bus.announce(Service::Generator).await?;
    let ledger = bus.own_bucket(SPEND_BUCKET, "huiying spend ledger", Duration::ZERO, &shutdown).await?;
    bus.alerts(&shutdown).await?;
    let objects = Arc::new(bus.images.clone());
    let ledger = Arc::new(ledger);
    let generator =
        Generator::new(&config, bus.publisher(), bus.job_board(), objects, ledger, crate::clock::system_clock())?;
    let default = |kind| generator.providers.default_model(kind).map_or_else(|e| e.to_string(), String::from);
    tracing::info!(
        default_model = %default(JobKind::Generate),
        default_edit_model = %default(JobKind::Edit),
        translation = generator.translator.is_some(),
        "generator ready"
    );
    let settings = worker::Settings::new(config.generator.concurrency, &config.nats, generator.policy)
        .named(Service::Generator.name());
    worker::run(consumer, bus.publisher(), settings, shutdown, generator).await;
    let _ = pings.stop().await;
    Ok(())
}

impl Generator {
    /// A generator on these parts (events, job states, pictures), with the models and
    /// translator `config` names, keeping spend in `ledger` by `clock`.
    pub fn new(
        config: &Config,
        publisher: Arc<dyn Publish>,
        jobs: JobBoard,
        objects: Arc<dyn Objects>,
        ledger: Arc<dyn KeyValue>,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        let zone = config.server.timezone.zone().clone();
        Ok(Self {
            spending: Spending::new(ledger, config.budgets(), zone, clock),
            publisher,
            jobs,
            objects,
            providers: Providers::from_config(config)?,
            translator: Translator::from_config(config)?,
            translation_required: config.translation.required,
            strict_options: config.server.strict_options,
            policy: config.generator.retry_policy(),
        })
    }
}

impl Stage for Generator {
    /// Handles one delivery of `image.requested`.
    async fn handle(&self, received: Received) -> Result<(), Failure> {
        let request: ImageRequested = received.decode()?;
        let id = match request.id.as_str() {
            "" => JobId::parse(events::derived_job_id(&received.stream, received.stream_sequence, received.published)),
            given => JobId::parse(given),
        }
        .map_err(|invalid| Failure::permanent(invalid.problem))?;
        let attempt = received.attempt;
        // The one check of a request anyone may publish; from here on its values are typed.
        let request = match request.check(id.clone(), |kind| self.providers.default_model(kind)) {
            Ok(checked) => checked,
            Err(invalid) => {
                let model = request.model.clone().unwrap_or_default();
                let job = JobFacts {
                    id: &id,
                    prompt: &request.prompt,
                    model: &model,
                    notify_email: request.notify_email.as_deref(),
                    callback: &request.callback,
                    kind: request.kind,
                    owner: request.owner.as_deref(),
                    group: request.group.as_ref(),
                };
                return self.fail(job, JobStage::Request, invalid.problem, false, attempt).await;
            }
        };
        let model = &request.model;
        let job = JobFacts {
            id: &request.id,
            prompt: &request.prompt,
            model,
            notify_email: request.notify_email.as_deref(),
            callback: &request.callback,
            kind: request.kind,
            owner: request.owner.as_deref(),
            group: request.group.as_ref(),
        };

        // A redelivery of a request that already got past this stage: nothing to do.
        if let Some(status) = self.jobs.get(&request.id).await?
            && !matches!(status.status, JobState::Queued | JobState::Translating | JobState::Generating)
        {
            return Ok(());
        }
        // Nobody wants it any more: the model is never asked.
        if let Some(cancellation) = self.cancellation(&request).await? {
            return self.cancel(job, cancellation, attempt).await;
        }
        let translating = self.will_translate(&request);
        if translating {
            let state = JobStatus::new(&request.id, JobState::Translating, &request.prompt, Some(model))
                .of_kind(request.kind)
                .owned_by(request.owner.as_deref());
            self.jobs.set(&state).await?;
        }
        let english_prompt = match self.english_prompt(&request).await {
            Ok(english) => english,
            Err(failure) => return self.after_failure(job, unpaid(failure), attempt).await,
        };
        // A translation takes a moment: a cancel asked meanwhile still keeps the model out.
        if translating && let Some(cancellation) = self.cancellation(&request).await? {
            return self.cancel(job, cancellation, attempt).await;
        }
        let inputs = match request.kind {
            JobKind::Generate => Vec::new(),
            _ => match self.inputs(&request).await? {
                Ok(inputs) => inputs,
                Err(gone) => return self.after_failure(job, unpaid(gone), attempt).await,
            },
        };
        let drawn = match self.call(&request, model, &english_prompt, &inputs).await? {
            Call::Refused { error, refusal } => return self.refuse(job, error, refusal, attempt).await,
            Call::Made(Ok(image)) => Drawn { result: Ok(image), model: model.clone(), fallback: None },
            Call::Made(Err(unkept)) => self.fall_back(&request, unkept, attempt, &english_prompt, &inputs).await?,
        };
        // Cancelled while the model drew: the picture (or the failure) is discarded, what
        // the call cost is kept.
        if let Some(asked) = self.jobs.cancel_request(&request.id).await? {
            let cancellation = Cancellation::asked(&asked);
            let cost = drawn.result.as_ref().map_or_else(|unkept| unkept.cost.clone(), |image| image.cost.clone());
            return self.cancel_costing(job, cancellation, attempt, cost).await;
        }
        let Drawn { result, model, fallback } = drawn;
        let image = match result {
            Ok(image) => image,
            Err(unkept) => return self.after_failure(job, unkept, attempt).await,
        };
        let provider = image.provider;
        tracing::info!(job = %request.id, provider, cost = %image.cost.describe(), usage = ?image.cost.usage, "drawn");

        let byte_size = image.bytes.len() as u64;
        let picture = match image.bytes.len() <= INLINE_PICTURE_LIMIT {
            true => PictureAt::Inline { picture_base64: image.bytes },
            false => {
                // A name per attempt: a redelivery never replaces an object, so the
                // generator needs no right to purge the bucket (the first copy expires).
                let object = format!("{}.{attempt}", request.id);
                self.objects.put(&object, &image.bytes).await?;
                PictureAt::Object { bucket: IMAGES_BUCKET.into(), object }
            }
        };
        let generated = ImageGenerated {
            version: EVENT_VERSION,
            id: request.id.clone(),
            prompt: request.prompt.clone(),
            english_prompt,
            model,
            provider: image.provider.to_string(),
            byte_size,
            picture,
            content_type: image.content_type,
            attempts: attempt,
            cost: image.cost,
            ignored_options: image.ignored,
            fallback,
            user: request.user.clone(),
            owner: request.owner.clone(),
            notify_email: request.notify_email.clone(),
            callback: request.callback.clone(),
            kind: request.kind,
            inputs: request.inputs.clone(),
            group: request.group.clone(),
            requested_at: request.requested_at,
            generated_at: OffsetDateTime::now_utc(),
        };
        parts::publish(&*self.publisher, &generated).await?;
        Ok(())
    }
}

impl Generator {
    /// The input pictures from the object store. The outer error is NATS (retry); the
    /// inner one a picture that is gone (the job fails).
    async fn inputs(&self, request: &CheckedRequest) -> Result<Result<Vec<EditInput>, Failure>, Failure> {
        let mut inputs = Vec::with_capacity(request.inputs.len());
        for input in &request.inputs {
            let Some(bytes) = self.objects.get(&input.object).await? else {
                return Ok(Err(Failure::permanent(format!(
                    "the input picture {} expired (input pictures are kept for {} hours)",
                    input.source,
                    crate::bus::PICTURE_RETENTION.as_secs() / 3600
                ))));
            };
            inputs.push(EditInput {
                bytes,
                content_type: input.content_type.clone(),
                source: input.source.clone(),
                mask: input.mask,
            });
        }
        Ok(Ok(inputs))
    }

    fn will_translate(&self, request: &CheckedRequest) -> bool {
        self.translator.is_some() && translate::has_cjk(&request.prompt)
    }

    /// The prompt in English: translated when it holds Chinese and a translator is set.
    /// A failed translation falls back to the original prompt unless it is required.
    async fn english_prompt(&self, request: &CheckedRequest) -> Result<String, Failure> {
        let Some(translator) = self.translator.as_ref().filter(|_| self.will_translate(request)) else {
            return Ok(request.prompt.to_string());
        };
        match translator.translate(&request.prompt).await {
            Ok(english) => {
                tracing::info!(job = %request.id, %english, "prompt translated");
                Ok(english)
            }
            Err(error) if self.translation_required => {
                Err(Failure::transient(format!("translating the prompt failed: {error}")).caused_by(error))
            }
            Err(error) => {
                tracing::warn!(job = %request.id, %error, "translation failed; using the original prompt");
                Ok(request.prompt.to_string())
            }
        }
    }
}

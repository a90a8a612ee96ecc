//! Which image model serves a request, within which limits, and getting its picture.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::automatic1111::Automatic1111Client;
use super::comfyui::ComfyUiClient;
use super::model::{ImageAnswer, ImageModel, Picture};
use super::modelscope::ModelScopeClient;
use super::openai::OpenAiClient;
use super::openrouter::OpenRouterClient;
use super::placeholder::Placeholder;
use super::{EditInput, GeneratedImage};
use crate::config::{Config, ModelRouting, Prices, Provider};
use crate::contract::cost::Cost;
use crate::contract::events::{GenerationOptions, JobKind};
use crate::contract::values::{InvalidValue, ModelName};
use crate::failure::Failure;
use crate::fetch::Fetcher;
use crate::limit::RateLimit;

/// How many calls to one provider may run at once, and start per minute.
struct Limits {
    slots: Semaphore,
    rate: RateLimit,
}

impl Limits {
    fn new(concurrency: usize, per_minute: u32) -> Self {
        Self { slots: Semaphore::new(concurrency.max(1)), rate: RateLimit::per_minute(per_minute) }
    }

    async fn enter(&self) -> SemaphorePermit<'_> {
        let permit = self.slots.acquire().await.expect("the semaphore is never closed");
        self.rate.acquire().await;
        permit
    }
}

/// A configured provider: its client and its limits.
struct Client {
    model: Box<dyn ImageModel>,
    limits: Limits,
}

/// The configured image models.
pub(super) struct Providers {
    /// Only providers that can be called (their key is set) are here.
    clients: HashMap<Provider, Client>,
    /// Which provider serves which model (shared with ingest).
    routing: ModelRouting,
    fetcher: Fetcher,
    /// What pictures cost where providers do not say.
    prices: Prices,
}

impl Providers {
    pub(super) fn from_config(config: &Config) -> anyhow::Result<Arc<Self>> {
        let keys = &config.api_keys;
        let mut clients = HashMap::new();
        let mut add = |model: Box<dyn ImageModel>, limits| clients.insert(model.provider(), Client { model, limits });
        add(Box::new(Placeholder), Limits::new(Semaphore::MAX_PERMITS, 0));
        if keys.openrouter_api_key.is_set() {
            let limits = Limits::new(config.openrouter.max_concurrency, config.openrouter.requests_per_minute);
            add(Box::new(OpenRouterClient::new(&config.openrouter, keys.openrouter_api_key.clone())?), limits);
        }
        if keys.openai_api_key.is_set() {
            let limits = Limits::new(config.openai.max_concurrency, config.openai.requests_per_minute);
            add(Box::new(OpenAiClient::new(&config.openai, keys.openai_api_key.clone())?), limits);
        }
        if keys.model_scope_token.is_set() {
            // ModelScope's free tier is small: tasks one or two at a time.
            add(
                Box::new(ModelScopeClient::new(&config.modelscope, keys.model_scope_token.clone())?),
                Limits::new(2, 0),
            );
        }
        if config.comfyui.is_set() {
            let limits = Limits::new(config.comfyui.max_concurrency, 0);
            add(Box::new(ComfyUiClient::new(&config.comfyui)?), limits);
        }
        if config.automatic1111.is_set() {
            let limits = Limits::new(config.automatic1111.max_concurrency, 0);
            add(Box::new(Automatic1111Client::new(&config.automatic1111)?), limits);
        }
        let fetcher = Fetcher::new(&config.generator, "the provider's answer");
        Ok(Arc::new(Self { clients, routing: config.routing(), fetcher, prices: config.prices.clone() }))
    }

    /// The model a request without one gets.
    pub(super) fn default_model(&self, kind: JobKind) -> Result<ModelName, InvalidValue> {
        let name = match kind {
            JobKind::Generate => self.routing.default_model(),
            _ => self.routing.default_edit_model(),
        };
        ModelName::parse(name)
    }

    /// The models to try when `model` still fails after its retries.
    pub(super) fn fallbacks_of(&self, model: &str) -> &[String] {
        self.routing.fallbacks_of(model)
    }

    /// The client that serves `model`, or why none does.
    fn route(&self, model: &str) -> Result<&Client, Failure> {
        let provider = self.routing.provider_for(model).map_err(Failure::refused)?;
        self.clients.get(&provider).ok_or_else(|| Failure::refused(format!("{} is not configured", provider.name())))
    }

    /// What one picture of `model` with `options` is expected to cost (`[prices]`), if
    /// the table knows.
    pub(super) fn estimate(&self, model: &str, options: &GenerationOptions) -> Option<f64> {
        self.prices.per_picture(model, options.quality.as_deref())
    }

    /// The name of the provider that serves `model` (`none` when none does), for metrics.
    pub(super) fn provider_name(&self, model: &str) -> &'static str {
        self.route(model).map_or("none", |client| client.model.provider().name())
    }

    /// Draws `prompt` with `model`, honouring `options` or refusing them clearly.
    /// Options the model cannot honour are left out and named in the image's `ignored`,
    /// as the original service did; with `strict` they refuse the job instead.
    pub(super) async fn generate(
        &self,
        prompt: &str,
        model: &str,
        options: &GenerationOptions,
        strict: bool,
    ) -> Result<GeneratedImage, Unkept> {
        let client = self.route(model).map_err(unpaid)?;
        let (honours, unsupported) = unsupported(client, options);
        let (kept, ignored) = within(client, options, &unsupported);
        if strict && !ignored.is_empty() {
            let passes = client.model.passes_extra().iter().map(|name| format!("extra.{name}"));
            let supported: Vec<String> = honours.iter().map(|name| name.to_string()).chain(passes).collect();
            return Err(unpaid(Failure::refused(format!(
                "{} is not supported by {} (model {model}); it supports {}",
                ignored.join(", "),
                client.model.provider().name(),
                supported.join(", ")
            ))));
        }
        let answer = {
            let _slot = client.limits.enter().await;
            client.model.generate(prompt, model, &kept).await.map_err(unpaid)?
        };
        self.picture(client, answer, model, options, ignored).await
    }

    /// Edits `inputs` with `model`: every input goes to the model; more than it takes
    /// is refused naming the model (ingest refuses it first, with 400).
    pub(super) async fn edit(
        &self,
        prompt: &str,
        model: &str,
        inputs: &[EditInput],
        options: &GenerationOptions,
    ) -> Result<GeneratedImage, Unkept> {
        let client = self.route(model).map_err(unpaid)?;
        let most = client.model.max_edit_inputs(model);
        if inputs.iter().any(|input| input.mask) && !client.model.takes_mask() {
            let provider = client.model.provider().name();
            return Err(unpaid(Failure::refused(format!("model {model} ({provider}) takes no mask"))));
        }
        let pictures = inputs.iter().filter(|input| !input.mask).count();
        if pictures > most {
            return Err(unpaid(Failure::refused(format!(
                "model {model} takes at most {most} input picture{}, and this job has {}",
                if most == 1 { "" } else { "s" },
                pictures
            ))));
        }
        let (_, unsupported) = unsupported(client, options);
        let (kept, ignored) = within(client, options, &unsupported);
        let answer = {
            let _slot = client.limits.enter().await;
            client.model.edit(prompt, model, inputs, &kept).await.map_err(unpaid)?
        };
        self.picture(client, answer, model, options, ignored).await
    }

    /// The picture behind a provider's answer, with what the call cost (also when the
    /// picture then cannot be had: the call was paid all the same).
    async fn picture(
        &self,
        client: &Client,
        answer: ImageAnswer,
        model: &str,
        options: &GenerationOptions,
        ignored: Vec<String>,
    ) -> Result<GeneratedImage, Unkept> {
        let quality = options.quality.as_deref().filter(|_| !ignored.iter().any(|name| name == "quality"));
        let cost = super::cost::of_call(&*client.model, &self.prices, model, quality, answer.usage);
        let (bytes, content_type) = match answer.picture {
            Picture::Bytes(bytes) => {
                let format = image::guess_format(&bytes).unwrap_or(image::ImageFormat::Png);
                (bytes, format.to_mime_type().to_string())
            }
            Picture::Url(url) => match self.fetcher.fetch(&url).await {
                Ok(fetched) => (fetched.bytes, fetched.content_type),
                Err(failure) => return Err(Unkept { failure, cost }),
            },
        };
        Ok(GeneratedImage { bytes, content_type, provider: client.model.provider().name(), ignored, cost })
    }
}

/// A call that gave no picture, and what it cost.
#[derive(Debug)]
pub(super) struct Unkept {
    pub(super) failure: Failure,
    pub(super) cost: Cost,
}

/// A failure before any paid call: it cost nothing.
pub(super) fn unpaid(failure: Failure) -> Unkept {
    Unkept { failure, cost: Cost::nothing() }
}

/// The options `client` honours, and those of `options` it does not.
fn unsupported(client: &Client, options: &GenerationOptions) -> (&'static [&'static str], Vec<&'static str>) {
    let honours = client.model.honours();
    (honours, options.set().into_iter().filter(|o| !honours.contains(o)).collect())
}

/// `options` as `client` takes them: without the options it does not honour and the
/// `extra` parameters it does not pass; and the names of all those left out.
fn within(client: &Client, options: &GenerationOptions, unsupported: &[&str]) -> (GenerationOptions, Vec<String>) {
    let (kept, dropped) = options.without(unsupported).extra_within(client.model.passes_extra());
    (kept, unsupported.iter().map(|name| name.to_string()).chain(dropped).collect())
}

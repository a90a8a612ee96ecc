//! Which image model serves a request, within which limits, and getting its picture.

use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::modelscope::ModelScopeClient;
use super::openai::OpenAiClient;
use super::openrouter::OpenRouterClient;
use super::{EditInput, GeneratedImage, ImageAnswer, placeholder};
use crate::config::{Config, Provider as ProviderKind};
use crate::contract::events::{GenerationOptions, JobKind};
use crate::failure::Failure;
use crate::fetch::Fetcher;
use crate::limit::RateLimit;

/// Request options `provider` honours.
fn supports(provider: ProviderKind) -> &'static [&'static str] {
    provider.options()
}

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

/// The configured image models.
pub(super) struct Providers {
    openrouter: Option<(OpenRouterClient, Limits)>,
    openai: Option<(OpenAiClient, Limits)>,
    modelscope: Option<(ModelScopeClient, Limits)>,
    /// Routing: `[models]` and which keys are set (shared with ingest).
    config: Config,
    fetcher: Fetcher,
}

impl Providers {
    pub(super) fn from_config(config: &Config) -> anyhow::Result<Arc<Self>> {
        let keys = &config.api_keys;
        let openrouter = match keys.openrouter_api_key.is_set() {
            true => Some((
                OpenRouterClient::new(&config.openrouter, keys.openrouter_api_key.clone())?,
                Limits::new(config.openrouter.max_concurrency, config.openrouter.requests_per_minute),
            )),
            false => None,
        };
        let openai = match keys.openai_api_key.is_set() {
            true => Some((
                OpenAiClient::new(&config.openai, keys.openai_api_key.clone())?,
                Limits::new(config.openai.max_concurrency, config.openai.requests_per_minute),
            )),
            false => None,
        };
        // ModelScope's free tier is small: tasks one or two at a time.
        let modelscope = match keys.model_scope_token.is_set() {
            true => {
                Some((ModelScopeClient::new(&config.modelscope, keys.model_scope_token.clone())?, Limits::new(2, 0)))
            }
            false => None,
        };
        let fetcher = Fetcher::new(&config.generator, "the provider's answer");
        Ok(Arc::new(Self { openrouter, openai, modelscope, config: config.clone(), fetcher }))
    }

    /// The model a request without one gets.
    pub(super) fn default_model(&self, kind: JobKind) -> String {
        match kind {
            JobKind::Generate => self.config.default_model(),
            _ => self.config.default_edit_model(),
        }
    }

    /// The provider for `model`.
    pub(super) fn route(&self, model: &str) -> Result<ProviderKind, Failure> {
        self.config.provider_for(model).map_err(Failure::refused)
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
    ) -> Result<GeneratedImage, Failure> {
        let kind = self.route(model)?;
        let unsupported: Vec<&str> = options.set().into_iter().filter(|o| !supports(kind).contains(o)).collect();
        if strict && !unsupported.is_empty() {
            return Err(Failure::refused(format!(
                "{} is not supported by {} (model {model}); it supports {}",
                unsupported.join(", "),
                kind.name(),
                supports(kind).join(", ")
            )));
        }
        let mut image = self.draw(kind, prompt, model, &options.without(&unsupported)).await?;
        image.ignored = unsupported.iter().map(|o| o.to_string()).collect();
        Ok(image)
    }

    async fn draw(
        &self,
        kind: ProviderKind,
        prompt: &str,
        model: &str,
        options: &GenerationOptions,
    ) -> Result<GeneratedImage, Failure> {
        let answer = match kind {
            ProviderKind::Placeholder => {
                let (prompt, options) = (prompt.to_string(), options.clone());
                let bytes = tokio::task::spawn_blocking(move || placeholder::draw(&prompt, &options))
                    .await
                    .map_err(|e| Failure::permanent(format!("the placeholder crashed: {e}")))?;
                return Ok(GeneratedImage {
                    bytes,
                    content_type: "image/png".into(),
                    model: model.into(),
                    provider: kind.name(),
                    ignored: Vec::new(),
                });
            }
            ProviderKind::OpenRouter => {
                let (client, limits) = self.openrouter.as_ref().expect("routed only when configured");
                let _slot = limits.enter().await;
                client.generate(prompt, model, options).await?
            }
            ProviderKind::OpenAi => {
                let (client, limits) = self.openai.as_ref().expect("routed only when configured");
                let _slot = limits.enter().await;
                client.generate(prompt, model, options).await?
            }
            ProviderKind::ModelScope => {
                return Err(Failure::refused(format!(
                    "model {model} edits pictures (ModelScope's image API here); use it with /edit-image, \
                     /style-transfer, /compose-images or /fusion-images"
                )));
            }
        };
        self.fetched(answer, model, kind).await
    }

    /// Edits `inputs` with `model`: every input goes to the model; more than it takes
    /// is refused naming the model (ingest refuses it first, with 400).
    pub(super) async fn edit(
        &self,
        prompt: &str,
        model: &str,
        inputs: &[EditInput],
        options: &GenerationOptions,
    ) -> Result<GeneratedImage, Failure> {
        let kind = self.route(model)?;
        let most = kind.max_edit_inputs(model);
        if inputs.iter().any(|input| input.mask) && !kind.takes_mask() {
            return Err(Failure::refused(format!("model {model} ({}) takes no mask", kind.name())));
        }
        let pictures = inputs.iter().filter(|input| !input.mask).count();
        if pictures > most {
            return Err(Failure::refused(format!(
                "model {model} takes at most {most} input picture{}, and this job has {}",
                if most == 1 { "" } else { "s" },
                pictures
            )));
        }
        let unsupported: Vec<&str> = options.set().into_iter().filter(|o| !supports(kind).contains(o)).collect();
        let options = options.without(&unsupported);
        let answer = match kind {
            ProviderKind::Placeholder => {
                let (prompt, bytes) = (prompt.to_string(), inputs.iter().map(|i| i.bytes.clone()).collect::<Vec<_>>());
                let bytes = tokio::task::spawn_blocking(move || placeholder::edit(&prompt, &bytes))
                    .await
                    .map_err(|e| Failure::permanent(format!("the placeholder crashed: {e}")))?
                    .map_err(Failure::permanent)?;
                let mut image = GeneratedImage {
                    bytes,
                    content_type: "image/png".into(),
                    model: model.into(),
                    provider: kind.name(),
                    ignored: Vec::new(),
                };
                image.ignored = unsupported.iter().map(|o| o.to_string()).collect();
                return Ok(image);
            }
            ProviderKind::OpenRouter => {
                let (client, limits) = self.openrouter.as_ref().expect("routed only when configured");
                let _slot = limits.enter().await;
                client.edit(prompt, model, inputs, &options).await?
            }
            ProviderKind::OpenAi => {
                let (client, limits) = self.openai.as_ref().expect("routed only when configured");
                let _slot = limits.enter().await;
                client.edit(prompt, model, inputs, &options).await?
            }
            ProviderKind::ModelScope => {
                let (client, limits) = self.modelscope.as_ref().expect("routed only when configured");
                let _slot = limits.enter().await;
                client.edit(prompt, model, &inputs[0]).await?
            }
        };
        let mut image = self.fetched(answer, model, kind).await?;
        image.ignored = unsupported.iter().map(|o| o.to_string()).collect();
        Ok(image)
    }

    /// The picture behind a provider's answer.
    async fn fetched(&self, answer: ImageAnswer, model: &str, kind: ProviderKind) -> Result<GeneratedImage, Failure> {
        let fetched = self.fetcher.fetch(&answer.url).await?;
        Ok(GeneratedImage {
            bytes: fetched.bytes,
            content_type: fetched.content_type,
            model: model.into(),
            provider: kind.name(),
            ignored: Vec::new(),
        })
    }
}

//! Which image model serves a request, within which limits, and getting its picture.

use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::fetch::Fetcher;
use super::openai::OpenAiClient;
use super::openrouter::OpenRouterClient;
use super::{GeneratedImage, placeholder};
use crate::config::{Config, Provider as ProviderKind};
use crate::contract::events::GenerationOptions;
use crate::failure::Failure;
use crate::limit::RateLimit;

/// Request options `provider` honours.
fn supports(provider: ProviderKind) -> &'static [&'static str] {
    match provider {
        ProviderKind::Placeholder => &["size", "seed", "n"],
        ProviderKind::OpenRouter => OpenRouterClient::SUPPORTED,
        ProviderKind::OpenAi => OpenAiClient::SUPPORTED,
    }
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
    /// `(prefix, provider)`, longest prefix first.
    routes: Vec<(String, ProviderKind)>,
    default_model: String,
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
        let default_model = match (&openrouter, &openai) {
            (Some(_), _) => config.models.default_openrouter_model.clone(),
            (None, Some(_)) => config.openai.default_model.clone(),
            (None, None) => placeholder::MODEL.to_string(),
        };
        let mut routes: Vec<(String, ProviderKind)> =
            config.models.routes.iter().map(|route| (route.prefix.clone(), route.provider)).collect();
        routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        let fetcher = Fetcher::new(&config.generator);
        Ok(Arc::new(Self { openrouter, openai, routes, default_model, fetcher }))
    }

    /// The model a request without one gets.
    pub(super) fn default_model(&self) -> &str {
        &self.default_model
    }

    /// The provider for `model`: the longest matching route, else OpenRouter when it has
    /// a key, else the OpenAI-compatible API when it has one.
    pub(super) fn route(&self, model: &str) -> Result<ProviderKind, Failure> {
        if model == placeholder::MODEL {
            return Ok(ProviderKind::Placeholder);
        }
        let routed = self.routes.iter().find(|(prefix, _)| model.starts_with(prefix.as_str())).map(|(_, kind)| *kind);
        let kind = routed.or(if self.openrouter.is_some() {
            Some(ProviderKind::OpenRouter)
        } else if self.openai.is_some() {
            Some(ProviderKind::OpenAi)
        } else {
            None
        });
        let configured = match kind {
            Some(ProviderKind::OpenRouter) => self.openrouter.is_some(),
            Some(ProviderKind::OpenAi) => self.openai.is_some(),
            Some(ProviderKind::Placeholder) => true,
            None => false,
        };
        match kind {
            Some(kind) if configured => Ok(kind),
            Some(kind) => Err(Failure::refused(format!(
                "model {model} is served by {} ([models] routes), which has no API key: set {}",
                kind.name(),
                if kind == ProviderKind::OpenAi { "OPENAI_API_KEY" } else { "OPENROUTER_API_KEY" }
            ))),
            None => Err(Failure::refused(format!(
                "model {model} needs an image API, and none is configured: set OPENROUTER_API_KEY or \
                 OPENAI_API_KEY, or use model {} for the offline placeholder",
                placeholder::MODEL
            ))),
        }
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
        };
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

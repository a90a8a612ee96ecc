//! One trait for every image-model API. A provider is one file that implements
//! [`ImageModel`]; [`super::providers`] builds the configured ones and routes a model
//! name to one of them. Adding a provider touches its file and the list in
//! `Providers::from_config`, nothing else.

use async_trait::async_trait;
use serde_json::Value;

use super::EditInput;
use crate::config::Provider;
use crate::contract::events::GenerationOptions;
use crate::failure::Failure;

/// What a provider answered: where the picture is, and what it says the call used.
#[derive(Debug)]
pub(super) struct ImageAnswer {
    pub(super) picture: Picture,
    /// The provider's own `usage` object, as it sent it (tokens, and for OpenRouter the
    /// cost in USD), when it sent one.
    pub(super) usage: Option<Value>,
}

/// Where a provider put the picture.
#[derive(Debug)]
pub(super) enum Picture {
    /// A `data:` URL or an http(s) link, fetched through the guarded client.
    Url(String),
    /// The bytes themselves (the placeholder, ComfyUI); their type is told by the bytes.
    Bytes(Vec<u8>),
}

impl ImageAnswer {
    pub(super) fn at(url: impl Into<String>, usage: Option<&Value>) -> Self {
        Self { picture: Picture::Url(url.into()), usage: usage.cloned() }
    }
}

/// An image-model API: what it honours, its two calls, and what it reports a call cost.
#[async_trait]
pub(super) trait ImageModel: Send + Sync {
    /// Which provider this is (its name in events, metrics and config).
    fn provider(&self) -> Provider;

    /// Request options it honours; others are left out and named, or refused with
    /// `[server] strict_options`. Ingest reads the same list from the config.
    fn honours(&self) -> &'static [&'static str] {
        self.provider().options()
    }

    /// The request's `extra` parameters it passes to its API (an allow-list); others
    /// are left out and named.
    fn passes_extra(&self) -> &'static [&'static str] {
        &[]
    }

    /// Input pictures one edit call with `model` takes.
    fn max_edit_inputs(&self, model: &str) -> usize {
        self.provider().max_edit_inputs(model)
    }

    /// Whether an edit may carry a mask.
    fn takes_mask(&self) -> bool {
        self.provider().takes_mask()
    }

    /// Draws `prompt` with `model`; `options` hold only what it honours.
    async fn generate(&self, prompt: &str, model: &str, options: &GenerationOptions) -> Result<ImageAnswer, Failure>;

    /// Edits `inputs` (as many as it takes, masks only when it takes them).
    async fn edit(
        &self,
        prompt: &str,
        model: &str,
        inputs: &[EditInput],
        options: &GenerationOptions,
    ) -> Result<ImageAnswer, Failure>;

    /// The cost in USD the provider reported for a call, from its `usage`; `None` when
    /// it reports none (then only a price table can estimate it).
    fn reported_cost(&self, _usage: &Value) -> Option<f64> {
        None
    }
}

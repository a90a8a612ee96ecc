//! Which provider serves a model, from `[models]` and the keys that are set. The
//! generator routes by it; ingest checks edits against it before queuing them. Both
//! take a [`ModelRouting`] from the config once: what routing needs and no secret.

use super::{Config, ModelsConfig, Provider};

/// The offline placeholder's model name (never passed off as AI).
pub const PLACEHOLDER_MODEL: &str = "huiying/placeholder";
/// The model name of `[comfyui] workflow_file` (the default route `comfyui/`).
pub const COMFYUI_MODEL: &str = "comfyui/workflow";
/// The model name of the checkpoint the Automatic1111 / Forge UI has loaded; any other
/// `automatic1111/<checkpoint>` asks for that checkpoint.
pub const AUTOMATIC1111_MODEL: &str = "automatic1111/loaded";

/// What routing a model name needs: `[models]`, which providers have a key, and the
/// OpenAI-compatible API's default model.
#[derive(Debug, Clone)]
pub struct ModelRouting {
    models: ModelsConfig,
    /// Providers whose key is set (the placeholder needs none).
    keyed: Vec<Provider>,
    openai_default_model: String,
}

impl Config {
    /// The routing this config sets up.
    pub fn routing(&self) -> ModelRouting {
        let keys = &self.api_keys;
        let keyed = [
            (Provider::OpenRouter, keys.openrouter_api_key.is_set()),
            (Provider::OpenAi, keys.openai_api_key.is_set()),
            (Provider::ModelScope, keys.model_scope_token.is_set()),
            (Provider::Placeholder, true),
            (Provider::ComfyUi, self.comfyui.is_set()),
            (Provider::Automatic1111, self.automatic1111.is_set()),
        ];
        ModelRouting {
            models: self.models.clone(),
            keyed: keyed.into_iter().filter(|(_, set)| *set).map(|(provider, _)| provider).collect(),
            openai_default_model: self.openai.default_model.clone(),
        }
    }
}

impl ModelRouting {
    /// Whether `provider` has what it needs to be called.
    pub fn has_key_for(&self, provider: Provider) -> bool {
        self.keyed.contains(&provider)
    }

    /// The configured default model of `provider`, when it has one.
    pub fn default_of(&self, provider: Provider) -> Option<String> {
        match provider {
            Provider::OpenRouter => Some(self.models.default_openrouter_model.clone()),
            Provider::OpenAi => Some(self.openai_default_model.clone()),
            Provider::ModelScope => Some("Qwen/Qwen-Image-Edit".to_string()),
            Provider::Placeholder => Some(PLACEHOLDER_MODEL.to_string()),
            Provider::ComfyUi => Some(COMFYUI_MODEL.to_string()),
            Provider::Automatic1111 => Some(AUTOMATIC1111_MODEL.to_string()),
        }
    }

    /// The models to try, in order, when `model`'s provider still fails after its
    /// retries (`[models."<name>"] fallback`); none for most.
    pub fn fallbacks_of(&self, model: &str) -> &[String] {
        self.models.each.get(model).map_or(&[], |settings| settings.fallback.as_slice())
    }

    /// The model a generation without one gets.
    pub fn default_model(&self) -> String {
        if self.has_key_for(Provider::OpenRouter) {
            self.models.default_openrouter_model.clone()
        } else if self.has_key_for(Provider::OpenAi) {
            self.openai_default_model.clone()
        } else if self.has_key_for(Provider::ComfyUi) {
            COMFYUI_MODEL.to_string()
        } else if self.has_key_for(Provider::Automatic1111) {
            AUTOMATIC1111_MODEL.to_string()
        } else {
            PLACEHOLDER_MODEL.to_string()
        }
    }

    /// The model an edit without one gets.
    pub fn default_edit_model(&self) -> String {
        match self.models.default_edit_model.trim() {
            "" if self.has_key_for(Provider::ModelScope) => "Qwen/Qwen-Image-Edit".to_string(),
            "" => self.default_model(),
            model => model.to_string(),
        }
    }

    /// The provider for `model`: the longest matching route, else OpenRouter when it has
    /// a key, else the OpenAI-compatible API when it has one. The error says what to set.
    pub fn provider_for(&self, model: &str) -> Result<Provider, String> {
        if model == PLACEHOLDER_MODEL {
            return Ok(Provider::Placeholder);
        }
        let mut routes: Vec<_> = self.models.routes.iter().collect();
        routes.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        let routed = routes.iter().find(|route| model.starts_with(route.prefix.as_str())).map(|route| route.provider);
        let fallback = [Provider::OpenRouter, Provider::OpenAi].into_iter().find(|p| self.has_key_for(*p));
        match routed.or(fallback) {
            Some(provider) if self.has_key_for(provider) => Ok(provider),
            Some(provider) => Err(format!(
                "model {model} is served by {} ([models] routes), which is not configured: set {}",
                provider.name(),
                match provider {
                    Provider::OpenAi => "OPENAI_API_KEY",
                    Provider::ModelScope => "MODEL_SCOPE_TOKEN",
                    Provider::ComfyUi => "[comfyui] base_url and workflow_file",
                    Provider::Automatic1111 => "[automatic1111] base_url",
                    _ => "OPENROUTER_API_KEY",
                }
            )),
            None => Err(format!(
                "model {model} needs an image API, and none is configured: set OPENROUTER_API_KEY or \
                 OPENAI_API_KEY, or use model {PLACEHOLDER_MODEL} for the offline placeholder"
            )),
        }
    }
}

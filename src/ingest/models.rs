//! `GET /models`: the models this server is configured for, as the web page offers them
//! (and `/v1/models` lists them in OpenAI's shape).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use crate::config::{Config, PLACEHOLDER_MODEL, Provider};

/// One model a request may name.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ModelInfo {
    pub id: String,
    /// `openrouter`, `openai`, `modelscope` or `placeholder`.
    pub provider: &'static str,
    /// False for the offline placeholder, which draws the prompt's text: not AI.
    pub ai: bool,
    /// The request options the model honours (`size`, `seed`, `n`, `quality`, `style`).
    pub options: &'static [&'static str],
}

/// What the page needs to build its form.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct ModelList {
    pub models: Vec<ModelInfo>,
    /// The model a request without one gets.
    pub default_model: String,
    pub default_edit_model: String,
    /// Whether a request may choose who is mailed (`[smtp] allowed_recipients` is set).
    pub notify_email: bool,
}

/// The placeholder, then each configured provider's default model.
pub(super) fn configured(config: &Config) -> Vec<ModelInfo> {
    let mut models = vec![(PLACEHOLDER_MODEL.to_string(), Provider::Placeholder)];
    let defaults = [
        (Provider::OpenRouter, config.models.default_openrouter_model.clone()),
        (Provider::OpenAi, config.openai.default_model.clone()),
        (Provider::ModelScope, "Qwen/Qwen-Image-Edit".to_string()),
    ];
    models.extend(defaults.into_iter().filter(|(p, _)| config.has_key_for(*p)).map(|(p, id)| (id, p)));
    for id in [config.default_model(), config.default_edit_model()] {
        if !models.iter().any(|(known, _)| *known == id)
            && let Ok(provider) = config.provider_for(&id)
        {
            models.push((id, provider));
        }
    }
    models
        .into_iter()
        .map(|(id, provider)| ModelInfo {
            id,
            provider: provider.name(),
            ai: provider != Provider::Placeholder,
            options: provider.options(),
        })
        .collect()
}

#[utoipa::path(
    get, path = "/models", tag = "generate", summary = "The models this server is configured for",
    responses((status = 200, body = ModelList))
)]
pub(super) async fn models(State(state): State<AppState>) -> Json<ModelList> {
    let config = &state.config;
    Json(ModelList {
        models: configured(config),
        default_model: config.default_model(),
        default_edit_model: config.default_edit_model(),
        notify_email: !config.smtp.allowed_recipients.is_empty(),
    })
}

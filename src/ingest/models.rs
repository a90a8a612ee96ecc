//! `GET /models`: the models this server is configured for, as the web page offers them
//! (and `/v1/models` lists them in OpenAI's shape).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use crate::config::{ModelRouting, PLACEHOLDER_MODEL, Provider};

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
pub(super) fn configured(routing: &ModelRouting) -> Vec<ModelInfo> {
    let mut models = vec![(PLACEHOLDER_MODEL.to_string(), Provider::Placeholder)];
    let providers =
        [Provider::OpenRouter, Provider::OpenAi, Provider::ModelScope, Provider::ComfyUi, Provider::Automatic1111];
    for provider in providers {
        if routing.has_key_for(provider)
            && let Some(id) = routing.default_of(provider)
        {
            models.push((id, provider));
        }
    }
    for id in [routing.default_model(), routing.default_edit_model()] {
        if !models.iter().any(|(known, _)| *known == id)
            && let Ok(provider) = routing.provider_for(&id)
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
    let routing = &state.settings.routing;
    Json(ModelList {
        models: configured(routing),
        default_model: routing.default_model(),
        default_edit_model: routing.default_edit_model(),
        notify_email: state.settings.recipients.any(),
    })
}

//! What a job cost, carried by `image.generated`, `image.completed` and `image.failed`,
//! kept on the record and shown wherever the job is.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a cost comes from.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CostSource {
    /// The provider said what the call cost (OpenRouter's `usage.cost`).
    Reported,
    /// From the tokens the provider counted, times `[prices]` (OpenAI's gpt-image); or 0
    /// when no paid call was made.
    Computed,
    /// From `[prices]`: what one picture of the model costs.
    Estimated,
    /// Nobody knows: the provider said nothing and `[prices]` has no price for the model.
    #[default]
    Unknown,
}

impl CostSource {
    /// The source a record names (`unknown` for anything else).
    pub fn parse(name: &str) -> Self {
        match name {
            "reported" => CostSource::Reported,
            "computed" => CostSource::Computed,
            "estimated" => CostSource::Estimated,
            _ => CostSource::Unknown,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CostSource::Reported => "reported",
            CostSource::Computed => "computed",
            CostSource::Estimated => "estimated",
            CostSource::Unknown => "unknown",
        }
    }
}

/// What a job cost. `cost_usd` is `null` when unknown, never 0 for unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct Cost {
    /// In USD.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    #[serde(default)]
    pub cost_source: CostSource,
    /// The provider's own account of the call (tokens; for OpenRouter the cost), as it sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub usage: Option<Value>,
}

impl Cost {
    /// A job that made no paid call: it cost nothing, and that is known.
    pub fn nothing() -> Self {
        Self { cost_usd: Some(0.0), cost_source: CostSource::Computed, usage: None }
    }

    /// `0.0390 USD (reported)`, `unknown`: for a header or a line of text.
    pub fn describe(&self) -> String {
        match self.cost_usd {
            Some(usd) => format!("{usd:.4} USD ({})", self.cost_source.name()),
            None => "unknown".into(),
        }
    }
}

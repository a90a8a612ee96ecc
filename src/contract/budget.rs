//! What a budget refusal says (a 402 at ingest, the `budget` of a job failed at the
//! generator) and the `budget.alert` event.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::events::Event;
pub use super::spend::{Period, Scope};

/// Subject of [`BudgetAlert`], on stream [`ALERTS_STREAM`].
pub const BUDGET_ALERT: &str = "budget.alert";
/// The stream of operator alerts (its own, so that installations made before it need no
/// change to the event stream).
pub const ALERTS_STREAM: &str = "HUIYING_ALERTS";

/// Why a job is refused when a budget applies to it and its model has no price: the
/// cost cannot be reserved, so the model is not called (fail closed).
pub fn unpriced(model: &str) -> String {
    format!(
        "a budget applies and the model {model} has no price to reserve: set [prices] \"{model}\" (USD per \
         picture) in the configuration"
    )
}

/// Which budget refused a job, and how far it is spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct BudgetRefusal {
    pub scope: Scope,
    pub period: Period,
    /// Spent in the period so far, calls running now included.
    pub spent_usd: f64,
    pub limit_usd: f64,
    /// When the period ends (00:00 in `[server] timezone`).
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    #[schema(value_type = String, format = DateTime)]
    pub resets_at: OffsetDateTime,
}

impl BudgetRefusal {
    /// In words: `the key's daily budget of $0.39 is spent ($0.39 so far)`.
    pub fn describe(&self) -> String {
        let whose = match self.scope {
            Scope::Key => "this key's",
            Scope::Global => "the installation's",
        };
        let period = match self.period {
            Period::Day => "daily",
            Period::Month => "monthly",
        };
        format!(
            "over budget: {whose} {period} budget of ${:.2} would be passed (${:.4} spent or held so far; it resets at {})",
            self.limit_usd,
            self.spent_usd,
            self.resets_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
        )
    }
}

/// A budget's spend crossed `[budget] alert_percent` or 100 %: sent once per budget,
/// period and threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BudgetAlert {
    pub version: u32,
    /// `budget.key.design.day.2026-12-07.80`: the same alert always has the same id.
    pub id: String,
    pub scope: Scope,
    /// The key's name (`scope: key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub period: Period,
    /// The day (`2026-12-07`) or month (`2026-12`) in `[server] timezone`.
    pub period_name: String,
    /// The threshold crossed: `[budget] alert_percent`, or 100.
    pub percent: u32,
    pub spent_usd: f64,
    pub limit_usd: f64,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub resets_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub at: OffsetDateTime,
}

impl Event for BudgetAlert {
    const SUBJECT: &'static str = BUDGET_ALERT;

    /// Not a job's: the alert's own id, so that the stream keeps one of each.
    fn job_id(&self) -> &str {
        &self.id
    }

    fn version(&self) -> u32 {
        self.version
    }
}

//! Budgets and usage at ingest, read from the generator's spend ledger (never written
//! here). A job the ledger already shows cannot fit is refused with 402 before it is
//! queued; jobs that pass together may still be refused at the generator, which holds
//! each call's cost for real. `GET /usage` reports what was spent.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::access::Caller;
use super::error::ApiError;
use crate::clock::Clock;
use crate::clock::Today;
use crate::config::{Budgets, Config, Prices};
use crate::contract::budget::{BudgetRefusal, Scope, unpriced};
use crate::contract::spend::{MonthSpend, ledger_key, micros};
use crate::parts::{JsonBucket, KeyValue, PartError};
use crate::usage::{self, GroupBy, UsageReport};

/// The ledger, and what ingest needs to read it.
pub(super) struct Spend {
    ledger: JsonBucket<MonthSpend>,
    budgets: Budgets,
    prices: Prices,
    zone: jiff::tz::TimeZone,
    clock: Clock,
}

impl Spend {
    pub(super) fn new(config: &Config, ledger: Arc<dyn KeyValue>, clock: Clock) -> Self {
        Self {
            ledger: JsonBucket::new(ledger),
            budgets: config.budgets(),
            prices: config.prices.clone(),
            zone: config.server.timezone.zone().clone(),
            clock,
        }
    }

    fn today(&self) -> Today {
        Today::at((self.clock)(), &self.zone)
    }

    async fn month(&self, key: &str) -> Result<MonthSpend, PartError> {
        Ok(self.ledger.get(key).await?.unwrap_or_default())
    }

    /// 402 when a picture of `model` at `quality` would pass a budget of `owner` that the
    /// ledger shows spent, or a budget applies and the model has no price.
    pub(super) async fn check(&self, owner: Option<&str>, model: &str, quality: Option<&str>) -> Result<(), ApiError> {
        if !self.budgets.apply_to(owner) {
            return Ok(());
        }
        let refused = |message, refusal| {
            metrics::counter!("huiying_budget_refusals_total", "stage" => "ingest").increment(1);
            Err(ApiError::over_budget(message, refusal))
        };
        let Some(price) = self.prices.per_picture(model, quality) else { return refused(unpriced(model), None) };
        let today = self.today();
        let month = self.month(&ledger_key(&today)).await.map_err(|error| {
            tracing::warn!(%error, "cannot read the spend ledger");
            ApiError::queue_unavailable()
        })?;
        match self.budgets.refusal(&month, &today, owner, micros(price)) {
            Some(refusal) => refused(refusal.describe(), Some(refusal)),
            None => Ok(()),
        }
    }

    /// Each budget `caller` may see (its key's; an admin's: all), as spent now.
    fn budgets_seen(&self, caller: &Caller, month: &MonthSpend, today: &Today) -> Vec<BudgetNow> {
        let mut seen: Vec<BudgetNow> = self
            .budgets
            .each()
            .filter(|budget| match budget.scope {
                Scope::Global => caller.is_admin(),
                Scope::Key => caller.may_see(budget.key),
            })
            .map(|budget| {
                let spent = month.spent(budget.key, budget.period, &today.day);
                BudgetNow { key: budget.key.map(String::from), budget: budget.spent(spent, today) }
            })
            .collect();
        seen.sort_by(|a, b| a.key.cmp(&b.key));
        seen
    }
}

/// `GET /usage` query: days in `[server] timezone`, inclusive.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(super) struct UsageQuery {
    /// `YYYY-MM-DD`; absent: the 1st of this month.
    from: Option<String>,
    /// `YYYY-MM-DD`; absent: today.
    to: Option<String>,
    /// `day` (default), `model` or `key`.
    group_by: Option<String>,
    /// An admin's: one key's usage only.
    key: Option<String>,
}

/// A budget and how much of it is spent now (calls running included).
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct BudgetNow {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(flatten)]
    budget: BudgetRefusal,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct UsageAnswer {
    #[serde(flatten)]
    report: UsageReport,
    /// The budgets the caller may see, as spent now.
    budgets: Vec<BudgetNow>,
}

#[utoipa::path(
    get, path = "/usage", tag = "operations", summary = "What was spent, per day, model or key",
    description = "From the spend ledger: every paid call that ended (failed and cancelled ones too), by where \
                   its cost is known from. An ordinary key sees its own; an admin every key's.",
    params(UsageQuery),
    responses((status = 200, body = UsageAnswer), (status = 400, body = super::error::ErrorBody))
)]
pub(super) async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<UsageQuery>,
) -> Result<Json<UsageAnswer>, ApiError> {
    let spend = &state.spend;
    let today = spend.today();
    let day = |value: Option<&String>, default: jiff::civil::Date, name: &str| match value {
        None => Ok(default),
        Some(text) => text
            .parse::<jiff::civil::Date>()
            .map_err(|_| ApiError::bad_request(format!("{name} must be a date like 2026-12-07, got {text:?}"))),
    };
    let this_day: jiff::civil::Date = today.day.parse().expect("Today's day is a date");
    let from = day(query.from.as_ref(), this_day.first_of_month(), "from")?;
    let to = day(query.to.as_ref(), this_day, "to")?;
    if from > to || from.until(to).map_or(true, |span| span.get_days() > 366) {
        return Err(ApiError::bad_request("from must not be after to, nor more than 366 days before it"));
    }
    let group_by = match query.group_by.as_deref() {
        None | Some("day") => GroupBy::Day,
        Some("model") => GroupBy::Model,
        Some("key") => GroupBy::Key,
        Some(other) => return Err(ApiError::bad_request(format!("group_by is day, model or key, not {other:?}"))),
    };
    // An ordinary key sees its own; an admin all, or one key's on asking.
    let only = caller.only_owner().or(query.key.clone().filter(|_| caller.is_admin()));
    let unavailable = |error: PartError| {
        tracing::warn!(%error, "cannot read the spend ledger");
        ApiError::queue_unavailable()
    };
    let mut months = Vec::new();
    for key in usage::months(from, to) {
        months.push(spend.month(&key).await.map_err(unavailable)?);
    }
    let report = usage::report(&months, from, to, group_by, only.as_deref());
    let current = spend.month(&ledger_key(&today)).await.map_err(unavailable)?;
    let budgets = spend.budgets_seen(&caller, &current, &today);
    Ok(Json(UsageAnswer { report, budgets }))
}

//! Budgets at the generator. Right before a paid call, the call's estimated cost is
//! *held* in the spend ledger against every budget the job falls under, in one
//! compare-and-set of the month's entry: two generators can never both take the last of a
//! budget. When the call ends, the hold becomes what the call cost (or is released when
//! nothing was paid). A redelivered job finds its hold and is not counted twice.

use std::sync::Arc;

use bytes::Bytes;
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::clock::Today;
use crate::config::Budgets;
use crate::contract::budget::{BudgetAlert, BudgetRefusal, unpriced};
use crate::contract::cost::Cost;
use crate::contract::spend::{self, Hold, MonthSpend, alert_mark, ledger_key, micros};
use crate::contract::values::JobId;
use crate::parts::{KeyValue, PartError};

/// Whether a call may be made.
#[derive(Debug, PartialEq)]
pub(super) enum Admission {
    /// Its cost is held (now, or by an earlier delivery): call, then [`Spending::settle`].
    Held,
    /// A free model under no budget: nothing to count.
    Free,
    /// The model must not be called: a budget would be passed (`refusal`), or a budget
    /// applies and the model has no price (no `refusal`).
    Refused { error: String, refusal: Option<BudgetRefusal> },
}

/// The spend ledger and the budgets over it.
#[derive(Clone)]
pub(super) struct Spending {
    ledger: Arc<dyn KeyValue>,
    budgets: Arc<Budgets>,
    zone: jiff::tz::TimeZone,
    clock: Clock,
}

impl Spending {
    pub(super) fn new(ledger: Arc<dyn KeyValue>, budgets: Budgets, zone: jiff::tz::TimeZone, clock: Clock) -> Self {
        Self { ledger, budgets: Arc::new(budgets), zone, clock }
    }

    /// Holds `estimate` USD for the call of `job` against every budget over it.
    pub(super) async fn reserve(
        &self,
        job: &JobId,
        owner: Option<&str>,
        model: &str,
        estimate: Option<f64>,
    ) -> Result<Admission, PartError> {
        let limited = self.budgets.apply_to(owner);
        let micros = match estimate {
            Some(usd) if usd <= 0.0 && !limited => return Ok(Admission::Free),
            Some(usd) => micros(usd),
            None if limited => return Ok(Admission::Refused { error: unpriced(model), refusal: None }),
            // Unpriced and under no budget: held at 0, so that its cost is still counted.
            None => 0,
        };
        let today = Today::at((self.clock)(), &self.zone);
        let budgets = self.budgets.clone();
        let owner = owner.map(String::from);
        let (model, job) = (model.to_string(), job.to_string());
        self.change(&ledger_key(&today), move |month| {
            if month.held.contains_key(&job) {
                return (Admission::Held, false);
            }
            if let Some(refusal) = budgets.refusal(month, &today, owner.as_deref(), micros) {
                return (Admission::Refused { error: refusal.describe(), refusal: Some(refusal) }, false);
            }
            let owner = owner.clone().unwrap_or_default();
            month.held.insert(job.clone(), Hold { day: today.day.clone(), owner, model: model.clone(), micros });
            (Admission::Held, true)
        })
        .await
    }

    /// Ends the call of `job`: its hold becomes `cost` (`None`: released, nothing was
    /// paid). Returns the alerts it crosses, to be published. A job holding nothing
    /// (settled already, or free) changes nothing.
    pub(super) async fn settle(&self, job: &JobId, cost: Option<&Cost>) -> Result<Vec<BudgetAlert>, PartError> {
        let cost = cost.map(|cost| (cost.cost_usd.map_or(0, micros), cost.cost_source));
        let now = (self.clock)();
        let today = Today::at(now, &self.zone);
        // A call that began before midnight on the 1st holds in last month's entry.
        let last_month = Today::at(today.month_starts - time::Duration::HOUR, &self.zone);
        for month in [today, last_month] {
            let (budgets, job) = (self.budgets.clone(), job.to_string());
            let settled = self
                .change(&ledger_key(&month), |spent| match spent.settle(&job, cost) {
                    true => (Some(alerts(spent, &budgets, &month, now)), true),
                    false => (None, false),
                })
                .await?;
            if let Some(alerts) = settled {
                return Ok(alerts);
            }
        }
        Ok(Vec::new())
    }

    /// Reads the month's entry, lets `apply` change it, and writes it back if its revision
    /// is unchanged (or, for a new entry, if nobody made it meanwhile); else reads it again.
    /// `apply` says whether it changed anything.
    async fn change<R>(&self, key: &str, mut apply: impl FnMut(&mut MonthSpend) -> (R, bool)) -> Result<R, PartError> {
        loop {
            let Some((bytes, revision)) = self.ledger.entry(key).await? else {
                // A month nothing was spent in yet: its entry is made by the first change,
                // create-only (another generator's first change may come first).
                let mut month = MonthSpend::default();
                let (answer, changed) = apply(&mut month);
                if !changed || self.ledger.create(key, encode(&month)).await? {
                    return Ok(answer);
                }
                continue;
            };
            let mut month: MonthSpend = serde_json::from_slice(&bytes).map_err(|source| {
                PartError::give_up(
                    format!("key-value bucket {}: entry {key:?} is unreadable", spend::SPEND_BUCKET),
                    source,
                )
            })?;
            let (answer, changed) = apply(&mut month);
            if !changed || self.ledger.update(key, encode(&month), revision).await? {
                return Ok(answer);
            }
        }
    }
}

/// The alerts whose threshold the settled spend has reached and that were not sent yet
/// this period; each is marked sent in `month` (written with the settlement).
fn alerts(month: &mut MonthSpend, budgets: &Budgets, today: &Today, now: OffsetDateTime) -> Vec<BudgetAlert> {
    let mut thresholds = vec![budgets.alert_percent.min(100), 100];
    thresholds.dedup();
    let mut alerts = Vec::new();
    for budget in budgets.each() {
        let spent = month.settled(budget.key, budget.period, &today.day);
        for &percent in &thresholds {
            let mark = alert_mark(budget.key, budget.period, today.name(budget.period), percent);
            if u128::from(spent) * 100 < u128::from(budget.limit) * u128::from(percent) || month.alerted.contains(&mark)
            {
                continue;
            }
            month.alerted.push(mark.clone());
            let now_spent = budget.spent(spent, today);
            alerts.push(BudgetAlert {
                version: 1,
                id: mark,
                scope: budget.scope,
                key: budget.key.map(String::from),
                period: budget.period,
                period_name: today.name(budget.period).to_string(),
                percent,
                spent_usd: now_spent.spent_usd,
                limit_usd: now_spent.limit_usd,
                resets_at: now_spent.resets_at,
                at: now,
            });
        }
    }
    alerts
}

fn encode(month: &MonthSpend) -> Bytes {
    serde_json::to_vec(month).expect("the ledger serializes").into()
}

//! The spend ledger: one entry per month (`month.2026-12`, the month in `[server]
//! timezone`) in the `huiying_spend` bucket. The generator writes it, by compare-and-set
//! only: it holds each paid call's estimated cost while the call runs (so that parallel
//! jobs, on any number of generators, cannot pass a budget together) and then the call's
//! real cost. Ingest reads it to refuse jobs early and to answer `GET /usage`.
//!
//! Amounts are micro-USD integers: sums of many small prices never drift.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::cost::CostSource;
use crate::clock::Today;

/// Key-value bucket of the spend ledger, `month.<YYYY-MM>` (kept for good).
pub const SPEND_BUCKET: &str = "huiying_spend";

/// USD in micro-USD (rounded to the nearest; negative and unnumbered are 0).
pub fn micros(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 { (usd * 1e6).round() as u64 } else { 0 }
}

/// Micro-USD in USD.
pub fn usd(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// One month of spend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MonthSpend {
    /// What calls cost, settled: day (`2026-12-07`) → key name (`""`: no key) → model.
    #[serde(default)]
    pub days: BTreeMap<String, BTreeMap<String, BTreeMap<String, Tally>>>,
    /// Calls running now, by job id, each holding its estimated cost.
    #[serde(default)]
    pub held: BTreeMap<String, Hold>,
    /// Alerts already sent this month (see [`alert_mark`]): each is sent once.
    #[serde(default)]
    pub alerted: Vec<String>,
}

/// A running call's reservation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    pub day: String,
    /// The key's name; `""`: a job without a key.
    pub owner: String,
    pub model: String,
    pub micros: u64,
}

/// What one model's calls of one key cost on one day, by where each cost is known from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tally(pub BTreeMap<CostSource, Count>);

/// Calls and their cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub calls: u64,
    pub micros: u64,
}

impl Count {
    pub fn add(&mut self, other: Count) {
        self.calls += other.calls;
        self.micros += other.micros;
    }
}

impl Tally {
    /// Counts `count` under `source`.
    pub fn add(&mut self, source: CostSource, count: Count) {
        self.0.entry(source).or_default().add(count);
    }

    pub fn total(&self) -> Count {
        let mut total = Count::default();
        self.0.values().for_each(|count| total.add(*count));
        total
    }
}

/// Whose spend: the whole installation's, or one key's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Key,
    Global,
}

/// A budget's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Month,
}

impl MonthSpend {
    /// What `owner` (`None`: everyone) spent in `period` up to and including `day`, held
    /// calls included.
    pub fn spent(&self, owner: Option<&str>, period: Period, day: &str) -> u64 {
        let of = |key: &str| owner.is_none_or(|owner| owner == key);
        let on = |date: &str| period == Period::Month || date == day;
        let held: u64 =
            self.held.values().filter(|hold| of(&hold.owner) && on(&hold.day)).map(|hold| hold.micros).sum();
        self.settled(owner, period, day) + held
    }

    /// What `owner` (`None`: everyone) spent in `period` up to and including `day`, calls
    /// that ended only.
    pub fn settled(&self, owner: Option<&str>, period: Period, day: &str) -> u64 {
        let of = |key: &str| owner.is_none_or(|owner| owner == key);
        let on = |date: &str| period == Period::Month || date == day;
        self.days
            .iter()
            .filter(|(date, _)| on(date))
            .flat_map(|(_, keys)| keys.iter().filter(|(key, _)| of(key)))
            .flat_map(|(_, models)| models.values())
            .map(|tally| tally.total().micros)
            .sum()
    }

    /// Ends the call of `job`: its hold becomes what it cost (`None`: nothing was paid,
    /// the hold is simply released). False when the job holds nothing here.
    pub fn settle(&mut self, job: &str, cost: Option<(u64, CostSource)>) -> bool {
        let Some(hold) = self.held.remove(job) else { return false };
        if let Some((micros, source)) = cost {
            let models = self.days.entry(hold.day).or_default().entry(hold.owner).or_default();
            models.entry(hold.model).or_default().add(source, Count { calls: 1, micros });
        }
        true
    }
}

/// The ledger key of the month `today` falls in.
pub fn ledger_key(today: &Today) -> String {
    month_key(&today.month)
}

/// The ledger key of `month` (`2026-12`).
pub fn month_key(month: &str) -> String {
    format!("month.{month}")
}

/// An alert's id: `budget.key.design.day.2026-12-07.80`, `budget.global.month.2026-12.100`
/// (also a key-value key: the mailer logs its mail under it).
pub fn alert_mark(owner: Option<&str>, period: Period, name: &str, percent: u32) -> String {
    let whose = match owner {
        Some(owner) => format!("key.{owner}"),
        None => "global".to_string(),
    };
    let period = match period {
        Period::Day => "day",
        Period::Month => "month",
    };
    format!("budget.{whose}.{period}.{name}.{percent}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_counts_settled_and_held_calls_of_the_owner_and_period() {
        let mut month = MonthSpend::default();
        let hold =
            |day: &str, owner: &str, micros| Hold { day: day.into(), owner: owner.into(), model: "m".into(), micros };
        month.held.insert("a".into(), hold("2026-12-06", "design", 100));
        month.held.insert("b".into(), hold("2026-12-07", "design", 200));
        month.held.insert("c".into(), hold("2026-12-07", "ops", 400));
        assert!(month.settle("a", Some((150, CostSource::Reported))));
        assert!(!month.settle("a", Some((150, CostSource::Reported))), "a call is settled once");
        assert_eq!(month.spent(Some("design"), Period::Day, "2026-12-07"), 200);
        assert_eq!(month.spent(Some("design"), Period::Month, "2026-12-07"), 350);
        assert_eq!(month.spent(None, Period::Day, "2026-12-07"), 600);
        assert!(month.settle("c", None), "a call that paid nothing releases its hold");
        assert_eq!(month.spent(None, Period::Month, "2026-12-07"), 350);
    }

    #[test]
    fn dollars_become_micros_without_drift() {
        let sum: u64 = (0..1000).map(|_| micros(0.039)).sum();
        assert_eq!(usd(sum), 39.0);
        assert_eq!(micros(-1.0), 0);
    }
}

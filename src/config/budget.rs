//! `[budget]` and each key's `daily_budget_usd` / `monthly_budget_usd`: how much may be
//! spent on paid models, per day and per month (from 00:00 in `[server] timezone`).
//! Read into [`Budgets`] once, in micro-USD, so that sums never drift.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::Config;
use crate::clock::Today;
use crate::contract::budget::{BudgetRefusal, Scope};
use crate::contract::spend::{MonthSpend, Period, usd};

/// `[budget]` as the file writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// USD the whole installation may spend per day; 0: no daily budget.
    pub daily_usd: f64,
    /// USD the whole installation may spend per month; 0: no monthly budget.
    pub monthly_usd: f64,
    /// An alert (mail to `[smtp] to`, a `budget.alert` event) when a budget's spend
    /// crosses this percentage, and another at 100.
    pub alert_percent: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self { daily_usd: 0.0, monthly_usd: 0.0, alert_percent: 80 }
    }
}

/// A budget's limits in micro-USD; `None`: no limit for that period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub day: Option<u64>,
    pub month: Option<u64>,
}

impl Limits {
    fn new(daily_usd: f64, monthly_usd: f64) -> Self {
        let limit = |usd: f64| (usd > 0.0).then(|| crate::contract::spend::micros(usd));
        Self { day: limit(daily_usd), month: limit(monthly_usd) }
    }

    /// The limit of `period`, if any.
    pub fn of(&self, period: Period) -> Option<u64> {
        match period {
            Period::Day => self.day,
            Period::Month => self.month,
        }
    }

    pub fn is_set(&self) -> bool {
        self.day.is_some() || self.month.is_some()
    }
}

/// One budget's limit for one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget<'a> {
    pub scope: Scope,
    /// The key's name (`scope: key`).
    pub key: Option<&'a str>,
    pub period: Period,
    /// Micro-USD.
    pub limit: u64,
}

impl Budget<'_> {
    /// This budget with `spent` micro-USD spent (or held) so far today.
    pub fn spent(&self, spent: u64, today: &Today) -> BudgetRefusal {
        BudgetRefusal {
            scope: self.scope,
            period: self.period,
            spent_usd: usd(spent),
            limit_usd: usd(self.limit),
            resets_at: today.ends(self.period),
        }
    }
}

/// Every budget: the installation's and each key's, by key name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budgets {
    pub global: Limits,
    pub keys: HashMap<String, Limits>,
    pub alert_percent: u32,
}

impl Budgets {
    /// The limits of key `owner` (none for a job without a key, or a key without budgets).
    pub fn of_key(&self, owner: Option<&str>) -> Limits {
        owner.and_then(|name| self.keys.get(name)).copied().unwrap_or_default()
    }

    /// Why a call of `owner` costing `micros` may not be made: the first budget over it
    /// (the key's, then the installation's; the day's, then the month's) that it would
    /// pass, given what `month` shows spent and held.
    pub fn refusal(
        &self,
        month: &MonthSpend,
        today: &Today,
        owner: Option<&str>,
        micros: u64,
    ) -> Option<BudgetRefusal> {
        self.each().filter(|budget| budget.scope == Scope::Global || budget.key == owner).find_map(|budget| {
            let spent = month.spent(budget.key, budget.period, &today.day);
            (spent + micros > budget.limit).then(|| budget.spent(spent, today))
        })
    }

    /// Every limit: each key's, then the installation's; a day's before its month's.
    pub fn each(&self) -> impl Iterator<Item = Budget<'_>> {
        let keys = self.keys.iter().map(|(name, limits)| (Scope::Key, Some(name.as_str()), *limits));
        keys.chain(std::iter::once((Scope::Global, None, self.global))).flat_map(|(scope, key, limits)| {
            [Period::Day, Period::Month]
                .into_iter()
                .filter_map(move |period| Some(Budget { scope, key, period, limit: limits.of(period)? }))
        })
    }

    /// Whether a job of `owner` falls under any budget.
    pub fn apply_to(&self, owner: Option<&str>) -> bool {
        self.global.is_set() || self.of_key(owner).is_set()
    }
}

impl Config {
    /// The budgets `[budget]` and `[[server.keys]]` set.
    pub fn budgets(&self) -> Budgets {
        let keys = self
            .server
            .keys
            .iter()
            .map(|key| (key.name.clone(), Limits::new(key.daily_budget_usd, key.monthly_budget_usd)))
            .filter(|(_, limits)| limits.is_set())
            .collect();
        Budgets {
            global: Limits::new(self.budget.daily_usd, self.budget.monthly_usd),
            keys,
            alert_percent: self.budget.alert_percent,
        }
    }

    /// The first budget that is negative or not a number: its key and value.
    pub(super) fn budget_problem(&self) -> Option<(String, String)> {
        let bad = |usd: f64| !usd.is_finite() || usd < 0.0;
        let mut budgets = vec![
            ("budget.daily_usd".to_string(), self.budget.daily_usd),
            ("budget.monthly_usd".to_string(), self.budget.monthly_usd),
        ];
        for (index, key) in self.server.keys.iter().enumerate() {
            budgets.push((format!("server.keys[{index}].daily_budget_usd"), key.daily_budget_usd));
            budgets.push((format!("server.keys[{index}].monthly_budget_usd"), key.monthly_budget_usd));
        }
        if let Some((key, usd)) = budgets.into_iter().find(|(_, usd)| bad(*usd)) {
            return Some((key, format!("expected 0 (no budget) or more USD, got {usd}")));
        }
        let percent = self.budget.alert_percent;
        (!(1..=100).contains(&percent))
            .then(|| ("budget.alert_percent".to_string(), format!("expected 1 to 100, got {percent}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeyConfig, Secret};

    #[test]
    fn budgets_are_micro_usd_and_zero_means_none() {
        let mut config = Config::default();
        config.budget.daily_usd = 1.5;
        config.server.keys = vec![
            KeyConfig { name: "design".into(), key: Secret::new("k1"), monthly_budget_usd: 0.39, ..Default::default() },
            KeyConfig { name: "free".into(), key: Secret::new("k2"), ..Default::default() },
        ];
        let budgets = config.budgets();
        assert_eq!(budgets.global, Limits { day: Some(1_500_000), month: None });
        assert_eq!(budgets.of_key(Some("design")), Limits { day: None, month: Some(390_000) });
        assert!(!budgets.of_key(Some("free")).is_set());
        assert!(budgets.apply_to(None), "the installation's budget covers jobs without a key");
        assert_eq!(config.budget_problem(), None);
    }

    #[test]
    fn a_negative_budget_is_named_with_its_key() {
        let mut config = Config::default();
        config.server.keys = vec![KeyConfig { name: "a".into(), daily_budget_usd: -1.0, ..Default::default() }];
        let (key, problem) = config.budget_problem().unwrap();
        assert_eq!(key, "server.keys[0].daily_budget_usd");
        assert!(problem.contains("-1"), "{problem}");
    }
}

//! What was spent, read from the spend ledger: totals and calls per day, model or key,
//! by where each cost is known from. `GET /usage` and `huiying usage` answer with it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::contract::cost::CostSource;
use crate::contract::spend::{MonthSpend, Tally, month_key, usd};

/// How a report is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    #[default]
    Day,
    Model,
    Key,
}

/// Spend and calls, in all and by cost source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Spent {
    pub cost_usd: f64,
    /// Paid calls (and calls of unknown cost) that ended.
    pub calls: u64,
    /// `reported`, `computed`, `estimated`, `unknown`: each one's cost and calls.
    #[schema(value_type = Object)]
    pub by_source: BTreeMap<CostSource, SourceSpent>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SourceSpent {
    pub cost_usd: f64,
    pub calls: u64,
}

/// One group of a report: a day, a model or a key (`null`: jobs without a key).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Group {
    pub name: Option<String>,
    #[serde(flatten)]
    pub spent: Spent,
}

/// What was spent from `from` to `to` (days, inclusive).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    pub from: String,
    pub to: String,
    pub group_by: GroupBy,
    pub total: Spent,
    pub groups: Vec<Group>,
    /// Held by calls running now (not in the totals until they end).
    pub held_usd: f64,
}

/// The ledger keys of the months from `from` to `to`.
pub fn months(from: jiff::civil::Date, to: jiff::civil::Date) -> Vec<String> {
    let mut month = from.first_of_month();
    let mut keys = Vec::new();
    while month <= to {
        keys.push(month_key(&month.strftime("%Y-%m").to_string()));
        month = month.checked_add(jiff::Span::new().months(1)).expect("not the end of time");
    }
    keys
}

/// The report of `ledger` (the months' entries) from `from` to `to`, of key `only`
/// (`None`: every key's).
pub fn report(
    ledger: &[MonthSpend],
    from: jiff::civil::Date,
    to: jiff::civil::Date,
    group_by: GroupBy,
    only: Option<&str>,
) -> UsageReport {
    let (first, last) = (from.to_string(), to.to_string());
    let mut total = Tally::default();
    let mut groups: BTreeMap<String, Tally> = BTreeMap::new();
    let mut held = 0;
    for month in ledger {
        for (day, keys) in month.days.range(first.clone()..=last.clone()) {
            for (key, models) in keys.iter().filter(|(key, _)| only.is_none_or(|only| only == key.as_str())) {
                for (model, tally) in models {
                    let name = match group_by {
                        GroupBy::Day => day,
                        GroupBy::Model => model,
                        GroupBy::Key => key,
                    };
                    for (source, count) in &tally.0 {
                        total.add(*source, *count);
                        groups.entry(name.clone()).or_default().add(*source, *count);
                    }
                }
            }
        }
        held += month
            .held
            .values()
            .filter(|hold| only.is_none_or(|only| only == hold.owner))
            .map(|h| h.micros)
            .sum::<u64>();
    }
    UsageReport {
        from: first,
        to: last,
        group_by,
        total: spent(&total),
        groups: groups
            .into_iter()
            .map(|(name, tally)| Group { name: Some(name).filter(|name| !name.is_empty()), spent: spent(&tally) })
            .collect(),
        held_usd: usd(held),
    }
}

/// A tally in dollars (micro-USD are summed, and turned into dollars once, at the end).
fn spent(tally: &Tally) -> Spent {
    let total = tally.total();
    let by_source =
        tally.0.iter().map(|(source, c)| (*source, SourceSpent { cost_usd: usd(c.micros), calls: c.calls })).collect();
    Spent { cost_usd: usd(total.micros), calls: total.calls, by_source }
}

/// `huiying usage`: what was spent, from the ledger on NATS.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// First day, `YYYY-MM-DD` in [server] timezone (default: the 1st of this month).
    #[arg(long)]
    from: Option<jiff::civil::Date>,
    /// Last day (default: today).
    #[arg(long)]
    to: Option<jiff::civil::Date>,
    /// `day`, `model` or `key`.
    #[arg(long = "by", value_enum, default_value = "day")]
    by: GroupByArg,
    /// One key's usage only.
    #[arg(long)]
    key: Option<String>,
    /// The report as JSON (the shape of GET /usage).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum GroupByArg {
    Day,
    Model,
    Key,
}

/// The report's lines: one per group, then the total.
pub async fn run(config: &crate::config::Config, args: &UsageArgs) -> anyhow::Result<Vec<String>> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let bus = crate::bus::Bus::connect(&config.nats, "huiying-usage", &shutdown).await?;
    let zone = config.server.timezone.zone();
    let today = jiff::Timestamp::now().to_zoned(zone.clone()).date();
    let (from, to) = (args.from.unwrap_or(today.first_of_month()), args.to.unwrap_or(today));
    anyhow::ensure!(from <= to, "--from must not be after --to");
    let ledger = bus.jetstream.get_key_value(crate::contract::spend::SPEND_BUCKET).await.ok();
    let mut spent = Vec::new();
    for key in months(from, to) {
        let entry = match &ledger {
            Some(ledger) => ledger.get(&key).await?,
            None => None, // no generator ran yet: nothing spent
        };
        spent.push(entry.map(|bytes| serde_json::from_slice(&bytes)).transpose()?.unwrap_or_default());
    }
    let group_by = match args.by {
        GroupByArg::Day => GroupBy::Day,
        GroupByArg::Model => GroupBy::Model,
        GroupByArg::Key => GroupBy::Key,
    };
    let report = report(&spent, from, to, group_by, args.key.as_deref());
    if args.json {
        return Ok(vec![serde_json::to_string_pretty(&report)?]);
    }
    let line = |name: &str, spent: &Spent| format!("{name:<40} {:>12.4} USD {:>7} calls", spent.cost_usd, spent.calls);
    let mut lines = vec![format!("{from} to {to} ({})", zone.iana_name().unwrap_or("UTC"))];
    lines.extend(report.groups.iter().map(|group| line(group.name.as_deref().unwrap_or("(no key)"), &group.spent)));
    lines.push(line("total", &report.total));
    if report.held_usd > 0.0 {
        lines.push(format!("{:<40} {:>12.4} USD held by calls running now", "", report.held_usd));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;
    use crate::contract::spend::Hold;

    fn ledger() -> MonthSpend {
        let mut month = MonthSpend::default();
        for (n, (day, key, model, usd_micros)) in [
            ("2026-12-06", "design", "gpt-image-1", 167_000),
            ("2026-12-07", "design", "google/gemini-2.5-flash-image", 39_000),
            ("2026-12-07", "ops", "google/gemini-2.5-flash-image", 39_000),
        ]
        .into_iter()
        .enumerate()
        {
            let job = format!("job-{n}");
            let hold = Hold { day: day.into(), owner: key.into(), model: model.into(), micros: 50_000 };
            month.held.insert(job.clone(), hold);
            month.settle(&job, Some((usd_micros, CostSource::Reported)));
        }
        month
    }

    #[test]
    fn a_report_sums_the_range_by_day_model_or_key_and_a_key_sees_its_own() {
        let ledgers = [ledger()];
        let by_day = report(&ledgers, date(2026, 12, 1), date(2026, 12, 7), GroupBy::Day, None);
        assert_eq!((by_day.total.cost_usd, by_day.total.calls), (0.245, 3));
        let days: Vec<_> = by_day.groups.iter().map(|g| (g.name.clone().unwrap(), g.spent.cost_usd)).collect();
        assert_eq!(days, [("2026-12-06".to_string(), 0.167), ("2026-12-07".to_string(), 0.078)]);
        let by_model = report(&ledgers, date(2026, 12, 7), date(2026, 12, 7), GroupBy::Model, None);
        assert_eq!(by_model.groups.len(), 1, "the 6th is outside the range");
        let design = report(&ledgers, date(2026, 12, 1), date(2026, 12, 31), GroupBy::Key, Some("design"));
        assert_eq!(design.groups.iter().map(|g| g.name.clone().unwrap()).collect::<Vec<_>>(), ["design"]);
        assert_eq!(design.total.by_source[&CostSource::Reported].calls, 2);
        assert_eq!(months(date(2026, 11, 30), date(2027, 1, 1)), ["month.2026-11", "month.2026-12", "month.2027-01"]);
    }
}

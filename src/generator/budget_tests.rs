//! Budgets held in the spend ledger: parallel calls on several generators never pass a
//! budget together, a call that paid nothing gives its hold back, periods turn at
//! midnight in the zone, and each alert is sent once.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;
use time::macros::datetime;

use super::budget::{Admission, Spending};
use crate::clock::Clock;
use crate::config::{Budgets, Limits};
use crate::contract::budget::{Period, Scope};
use crate::contract::cost::{Cost, CostSource};
use crate::contract::spend::SPEND_BUCKET;
use crate::contract::values::JobId;
use crate::parts::KeyValue;
use crate::parts::memory::MemoryKv;

const GEMINI: &str = "google/gemini-2.5-flash-image";

/// Key `design` may spend `daily` USD a day; a clock the test moves, starting at `now`.
struct Ledger {
    kv: Arc<MemoryKv>,
    clock: Arc<AtomicI64>,
    budgets: Budgets,
}

impl Ledger {
    fn new(daily: f64, now: OffsetDateTime) -> Self {
        let mut budgets = Budgets { alert_percent: 80, ..Budgets::default() };
        budgets.keys.insert("design".into(), Limits { day: Some(crate::contract::spend::micros(daily)), month: None });
        Self {
            kv: Arc::new(MemoryKv::new(SPEND_BUCKET)),
            clock: Arc::new(AtomicI64::new(now.unix_timestamp())),
            budgets,
        }
    }

    /// One generator's view of the ledger (several may share it), in Shanghai.
    fn generator(&self) -> Spending {
        let at = self.clock.clone();
        let clock: Clock = Arc::new(move || OffsetDateTime::from_unix_timestamp(at.load(Ordering::SeqCst)).unwrap());
        let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
        Spending::new(self.kv.clone() as Arc<dyn KeyValue>, self.budgets.clone(), zone, clock)
    }

    fn set_time(&self, now: OffsetDateTime) {
        self.clock.store(now.unix_timestamp(), Ordering::SeqCst);
    }
}

fn job(n: usize) -> JobId {
    JobId::parse(format!("job-{n}")).unwrap()
}

fn reported(usd: f64) -> Cost {
    Cost { cost_usd: Some(usd), cost_source: CostSource::Reported, usage: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_calls_at_once_on_two_generators_under_a_budget_for_ten_hold_exactly_ten() {
    let ledger = Ledger::new(0.39, datetime!(2026-12-07 04:00 UTC));
    let generators = [ledger.generator(), ledger.generator()];
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let spending = generators[n % 2].clone();
            tokio::spawn(async move { spending.reserve(&job(n), Some("design"), GEMINI, Some(0.039)).await.unwrap() })
        })
        .collect();
    let mut refusals = Vec::new();
    let mut held = 0;
    for task in tasks {
        match task.await.unwrap() {
            Admission::Held => held += 1,
            Admission::Refused { refusal, .. } => refusals.push(refusal.expect("a budget refused it")),
            Admission::Free => panic!("a priced model under a budget is counted"),
        }
    }
    assert_eq!((held, refusals.len()), (10, 40));
    let refusal = &refusals[0];
    assert_eq!((refusal.scope, refusal.period, refusal.limit_usd), (Scope::Key, Period::Day, 0.39));
    assert_eq!(refusal.spent_usd, 0.39);
    // Midnight in Shanghai is 16:00 UTC.
    assert_eq!(refusal.resets_at, datetime!(2026-12-07 16:00 UTC));
}

#[tokio::test]
async fn a_call_that_paid_nothing_gives_its_hold_back_and_a_redelivery_is_not_counted_twice() {
    let ledger = Ledger::new(0.078, datetime!(2026-12-07 04:00 UTC));
    let spending = ledger.generator();
    assert_eq!(spending.reserve(&job(1), Some("design"), GEMINI, Some(0.039)).await.unwrap(), Admission::Held);
    // The same job delivered again holds nothing more.
    assert_eq!(spending.reserve(&job(1), Some("design"), GEMINI, Some(0.039)).await.unwrap(), Admission::Held);
    assert_eq!(spending.reserve(&job(2), Some("design"), GEMINI, Some(0.039)).await.unwrap(), Admission::Held);
    assert!(matches!(
        spending.reserve(&job(3), Some("design"), GEMINI, Some(0.039)).await.unwrap(),
        Admission::Refused { .. }
    ));
    // Job 2's provider answered 500: nothing paid, its hold is released.
    spending.settle(&job(2), None).await.unwrap();
    assert_eq!(spending.reserve(&job(3), Some("design"), GEMINI, Some(0.039)).await.unwrap(), Admission::Held);
    // Another key, and a job without a key, are under no budget of design's.
    assert_eq!(spending.reserve(&job(4), Some("ops"), GEMINI, Some(0.039)).await.unwrap(), Admission::Held);
    assert_eq!(spending.reserve(&job(5), None, "huiying/placeholder", Some(0.0)).await.unwrap(), Admission::Free);
}

#[tokio::test]
async fn the_day_turns_at_midnight_in_the_configured_zone() {
    // 23:59 on 7 December in Shanghai.
    let ledger = Ledger::new(0.039, datetime!(2026-12-07 15:59 UTC));
    let spending = ledger.generator();
    assert_eq!(spending.reserve(&job(1), Some("design"), GEMINI, Some(0.039)).await.unwrap(), Admission::Held);
    spending.settle(&job(1), Some(&reported(0.039))).await.unwrap();
    assert!(matches!(
        spending.reserve(&job(2), Some("design"), GEMINI, Some(0.039)).await.unwrap(),
        Admission::Refused { .. }
    ));
    ledger.set_time(datetime!(2026-12-07 16:00 UTC));
    assert_eq!(spending.reserve(&job(2), Some("design"), GEMINI, Some(0.039)).await.unwrap(), Admission::Held);
}

#[tokio::test]
async fn with_a_budget_an_unpriced_model_is_refused_naming_the_price_to_set() {
    let ledger = Ledger::new(1.0, datetime!(2026-12-07 04:00 UTC));
    let Admission::Refused { error, refusal: None } =
        ledger.generator().reserve(&job(1), Some("design"), "some/unpriced", None).await.unwrap()
    else {
        panic!("fail closed");
    };
    assert!(error.contains(r#"[prices] "some/unpriced""#), "{error}");
}

#[tokio::test]
async fn alerts_come_once_at_the_alert_percentage_and_once_at_the_limit() {
    let ledger = Ledger::new(0.39, datetime!(2026-12-07 04:00 UTC));
    let spending = ledger.generator();
    let mut alerts = Vec::new();
    for n in 0..10 {
        assert_eq!(spending.reserve(&job(n), Some("design"), GEMINI, Some(0.039)).await.unwrap(), Admission::Held);
        let crossed = spending.settle(&job(n), Some(&reported(0.039))).await.unwrap();
        alerts.extend(crossed.into_iter().map(|alert| (n, alert.percent, alert.key, alert.period)));
    }
    // 8 × 0.039 = 0.312 is 80 % of 0.39; 10 × 0.039 is all of it.
    let design = Some("design".to_string());
    assert_eq!(alerts, [(7, 80, design.clone(), Period::Day), (9, 100, design, Period::Day)]);
    // Settling again (a redelivery) changes nothing and sends nothing.
    assert!(spending.settle(&job(9), Some(&reported(0.039))).await.unwrap().is_empty());
}

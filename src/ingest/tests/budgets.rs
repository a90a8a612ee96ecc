//! Budgets at ingest: a job the spend ledger shows cannot fit is refused with 402 before
//! anything is published; a model without a price under a budget is refused naming the
//! price to set; `GET /usage` shows a key its own spend and budgets, an admin all.

use axum::http::header;
use time::macros::datetime;

use super::*;
use crate::config::{KeyConfig, Secret};
use crate::contract::cost::CostSource;
use crate::contract::spend::{Hold, MonthSpend};
use crate::parts::KeyValue;

const GEMINI: &str = "google/gemini-2.5-flash-image";

/// `design` may spend $0.10 a day; `ops` has no budget of its own; `root` is an admin.
/// Days start at midnight in Shanghai; it is 12:00 there on 7 December.
fn ingest_with_budgets() -> TestIngest {
    let ingest = ingest_with(
        |config| {
            let key = |name: &str, admin, daily| KeyConfig {
                name: name.into(),
                key: Secret::new(format!("{name}-key")),
                admin,
                daily_budget_usd: daily,
                ..Default::default()
            };
            config.server.keys = vec![key("design", false, 0.10), key("ops", false, 0.0), key("root", true, 0.0)];
            config.server.timezone = "Asia/Shanghai".parse().unwrap();
        },
        None,
    );
    *ingest.now.lock().unwrap() = datetime!(2026-12-07 04:00 UTC);
    ingest
}

/// The generator settled `calls` calls of `key` at `micros` each today.
async fn spent(ingest: &TestIngest, key: &str, calls: usize, micros: u64) {
    let mut month: MonthSpend = match ingest.spend_ledger.get("month.2026-12").await.unwrap() {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap(),
        None => MonthSpend::default(),
    };
    for n in 0..calls {
        let job = format!("{key}-{n}");
        let hold = Hold { day: "2026-12-07".into(), owner: key.into(), model: GEMINI.into(), micros };
        month.held.insert(job.clone(), hold);
        month.settle(&job, Some((micros, CostSource::Reported)));
    }
    ingest.spend_ledger.put("month.2026-12", serde_json::to_vec(&month).unwrap().into()).await.unwrap();
}

fn generate_as(key: &str, model: &str) -> Request<Body> {
    let mut request = generate(&format!(r#"{{"prompt": "a fox", "model": "{model}"}}"#));
    request.headers_mut().insert(header::AUTHORIZATION, format!("Bearer {key}").parse().unwrap());
    request
}

fn get_as(key: &str, path: &str) -> Request<Body> {
    Request::get(path).header(header::AUTHORIZATION, format!("Bearer {key}")).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_job_the_ledger_shows_over_budget_gets_402_with_the_budget_and_is_never_queued() {
    let ingest = ingest_with_budgets();
    spent(&ingest, "design", 2, 39_000).await;
    // 0.078 spent: one more at 0.039 would pass 0.10.
    let (status, answer, _) = ingest.send(generate_as("design-key", GEMINI)).await;
    assert_eq!(status, 402, "{answer}");
    assert_eq!(answer["type"], "budget_exceeded");
    assert_eq!((answer["scope"].as_str(), answer["period"].as_str()), (Some("key"), Some("day")));
    assert_eq!((answer["spent_usd"].as_f64(), answer["limit_usd"].as_f64()), (Some(0.078), Some(0.1)));
    assert_eq!(answer["resets_at"], "2026-12-07T16:00:00Z");
    assert!(ingest.queued().is_empty(), "nothing reached the queue");
    // A cheaper model still fits; another key is not held back.
    assert_eq!(ingest.send(generate_as("design-key", "dall-e-2")).await.0, 202);
    assert_eq!(ingest.send(generate_as("ops-key", GEMINI)).await.0, 202);
}

#[tokio::test]
async fn under_a_budget_a_model_without_a_price_is_refused_naming_the_price_to_set() {
    let ingest = ingest_with_budgets();
    let (status, answer, _) = ingest.send(generate_as("design-key", "some/unpriced")).await;
    assert_eq!((status, answer["type"].as_str()), (402, Some("budget_unpriced")));
    assert!(answer["error"].as_str().unwrap().contains(r#"[prices] "some/unpriced""#), "{answer}");
    // Without a budget over it, an unpriced model is queued (its cost is then unknown).
    assert_eq!(ingest.send(generate_as("ops-key", "some/unpriced")).await.0, 202);
}

#[tokio::test]
async fn usage_shows_a_key_its_own_spend_and_budget_and_an_admin_everyones() {
    let ingest = ingest_with_budgets();
    spent(&ingest, "design", 2, 39_000).await;
    spent(&ingest, "ops", 1, 167_000).await;
    let (status, own, _) = ingest.send(get_as("design-key", "/usage?group_by=key")).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!((own["total"]["cost_usd"].as_f64(), own["total"]["calls"].as_u64()), (Some(0.078), Some(2)));
    assert_eq!(own["groups"].as_array().unwrap().len(), 1, "only its own: {own}");
    assert_eq!(own["budgets"][0]["limit_usd"], 0.1);
    let (_, all, _) = ingest.send(get_as("root-key", "/usage?group_by=key")).await;
    assert_eq!(all["total"]["cost_usd"], 0.245);
    let names: Vec<&str> = all["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["design", "ops"]);
    let (status, bad, _) = ingest.send(get_as("root-key", "/usage?group_by=colour")).await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("day, model or key"));
    let (status, _, _) = ingest.send(get_as("root-key", "/usage?from=2026-12-09&to=2026-12-01")).await;
    assert_eq!(status, 400);
}

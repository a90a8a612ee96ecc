//! `jobs_per_day`: a key over its quota is refused before anything is published, until
//! midnight in `[server] timezone` (the clock is the test's).

use axum::http::header;
use time::macros::datetime;

use super::*;
use crate::config::{KeyConfig, Secret};

/// `design` may queue two jobs a day; days start at midnight in Shanghai.
fn ingest_with_quota() -> TestIngest {
    ingest_with(
        |config| {
            config.server.keys = vec![
                KeyConfig {
                    name: "design".into(),
                    key: Secret::new("design-key"),
                    jobs_per_day: 2,
                    ..Default::default()
                },
                KeyConfig { name: "ops".into(), key: Secret::new("ops-key"), ..Default::default() },
            ];
            config.server.timezone = "Asia/Shanghai".parse().unwrap();
        },
        None,
    )
}

fn generate_as(key: &str) -> Request<Body> {
    let mut request = generate(r#"{"prompt": "a fox"}"#);
    request.headers_mut().insert(header::AUTHORIZATION, format!("Bearer {key}").parse().unwrap());
    request
}

#[tokio::test]
async fn a_key_past_its_jobs_per_day_gets_429_until_midnight_in_its_zone_and_nothing_is_queued() {
    let ingest = ingest_with_quota();
    // 23:00 on 7 December in Shanghai.
    *ingest.now.lock().unwrap() = datetime!(2026-12-07 15:00 UTC);
    for _ in 0..2 {
        assert_eq!(ingest.send(generate_as("design-key")).await.0, 202);
    }
    let (status, answer, response) = ingest.send(generate_as("design-key")).await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["type"], "quota_exceeded");
    assert_eq!(answer["resets_at"], "2026-12-07T16:00:00Z");
    assert_eq!(response.headers()[header::RETRY_AFTER], "3600");
    assert_eq!(ingest.queued().len(), 2, "the refused job never reached the queue");
    // Another key, without a quota, is not held back.
    assert_eq!(ingest.send(generate_as("ops-key")).await.0, 202);
    // Midnight in Shanghai (16:00 UTC): a new day.
    *ingest.now.lock().unwrap() = datetime!(2026-12-07 16:00 UTC);
    assert_eq!(ingest.send(generate_as("design-key")).await.0, 202);
}

#[tokio::test]
async fn a_request_repeated_with_its_idempotency_key_costs_no_second_job() {
    let ingest = ingest_with_quota();
    for _ in 0..3 {
        let mut request = generate_as("design-key");
        request.headers_mut().insert("idempotency-key", "the-same-fox".parse().unwrap());
        assert_eq!(ingest.send(request).await.0, 202);
    }
    assert_eq!(ingest.send(generate_as("design-key")).await.0, 202, "one of two taken, one left");
    assert_eq!(ingest.send(generate_as("design-key")).await.0, 429);
}

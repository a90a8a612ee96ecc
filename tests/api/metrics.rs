//! Prometheus metrics: an operator scrapes ingest's `/metrics` (and a service's own
//! listener) and sees the counters move with a job. Tests share one process, and so one
//! recorder: each check is "moved by at least", never an exact total.

use serde_json::json;

use crate::helpers::{TestApp, free_port, wait_for};

/// The sum of the series named `name` whose labels include every `key="value"` of `labels`.
fn value(scrape: &str, name: &str, labels: &[&str]) -> f64 {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (series_name, rest) = series.split_once('{').unwrap_or((series, ""));
            series_name == name && labels.iter().all(|label| rest.contains(label))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

async fn scrape(app: &TestApp, url: &str) -> String {
    let response = app.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_counters_move_with_a_job_on_ingest_and_on_a_services_listener() {
    let app = TestApp::spawn().await;
    let metrics = format!("{}/metrics", app.address);
    let before = scrape(&app, &metrics).await;

    let id = app.submit(json!({"prompt": "a counted lighthouse"})).await;
    assert_eq!(app.wait_for_job(&id).await["status"], "completed");
    app.smtp.wait_for_mails(1).await;

    let moved = |after: &str, name: &str, labels: &[&str]| value(after, name, labels) - value(&before, name, labels);
    // A stage is counted once the loop has its answer, a moment after its side effect
    // (the next event, the mail): wait until every stage's delivery is counted.
    let stages_done = |after: &str| {
        ["generator", "store", "mailer"].iter().all(|stage| {
            let labels = [format!(r#"stage="{stage}""#), r#"outcome="done""#.to_string()];
            moved(after, "huiying_stage_deliveries_total", &[&labels[0], &labels[1]]) >= 1.0
        })
    };
    let after = wait_for("the mail and every stage to be counted", std::time::Duration::from_secs(20), || async {
        let after = scrape(&app, &metrics).await;
        let counted = moved(&after, "huiying_mails_total", &[r#"result="sent""#]) >= 1.0 && stages_done(&after);
        counted.then_some(after)
    })
    .await;
    assert!(moved(&after, "huiying_jobs_accepted_total", &[r#"kind="generate""#]) >= 1.0);
    assert!(moved(&after, "huiying_jobs_finished_total", &[r#"kind="generate""#, r#"status="completed""#]) >= 1.0);
    let placeholder = [r#"provider="placeholder""#, r#"result="ok""#];
    assert!(moved(&after, "huiying_provider_calls_total", &placeholder) >= 1.0);
    for stage in ["generator", "store", "mailer"] {
        let label = format!(r#"stage="{stage}""#);
        assert!(moved(&after, "huiying_stage_duration_seconds_count", &[&label]) >= 1.0, "{stage}");
    }
    if std::env::var_os("HUIYING_PRINT_METRICS").is_some() {
        println!("{after}");
    }
    assert!(after.contains("# TYPE huiying_stage_duration_seconds histogram"), "a histogram with buckets");
    assert!(after.lines().any(|l| l.starts_with("huiying_queue_waiting{")), "the generator's backlog");
    assert_eq!(value(&after, "huiying_build_info", &[&format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"))]), 1.0);

    // The other services' listener ([metrics] listen) serves the same registry.
    let listen = format!("127.0.0.1:{}", free_port());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(huiying::telemetry::serve(listen.clone(), stop.clone()));
    let served = wait_for("the metrics listener", std::time::Duration::from_secs(10), || async {
        app.http.get(format!("http://{listen}/metrics")).send().await.ok()?.text().await.ok()
    })
    .await;
    assert!(value(&served, "huiying_mails_total", &[r#"result="sent""#]) >= 1.0);
    stop.cancel();
}

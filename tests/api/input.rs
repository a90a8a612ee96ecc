//! What a user gets for bad input, unknown jobs and health checks.

use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_a_400_that_names_the_problem() {
    let app = TestApp::spawn().await;
    let long_prompt = "画".repeat(4001);
    let cases: Vec<(String, &str)> = vec![
        ("this is not json".into(), "not valid JSON"),
        ("{}".into(), "missing field `prompt`"),
        (r#"{"prompt": ""}"#.into(), "prompt must not be empty"),
        (r#"{"prompt": "   "}"#.into(), "prompt must not be empty"),
        (json!({"prompt": long_prompt}).to_string(), "4001 characters"),
        (r#"{"prompt": 42}"#.into(), "prompt"),
        (r#"{"prompt": "cat", "model": 7}"#.into(), "model"),
        (r#"{"prompt": "cat", "style": "anime"}"#.into(), "unknown field `style`"),
        (r#"{"prompt": "cat", "n": 4}"#.into(), "n must be 1"),
        (r#"{"prompt": "cat", "size": "huge"}"#.into(), "WIDTHxHEIGHT"),
        (r#"{"prompt": "cat", "seed": -1}"#.into(), "seed"),
        (r#"{"prompt": "cat", "model": "my model"}"#.into(), "not a model name"),
        (r#"["prompt"]"#.into(), "invalid"),
    ];
    for (body, expected) in cases {
        let response = app.post_generate_raw(&body).await;
        assert_eq!(response.status(), 400, "for {body}");
        let answer: serde_json::Value = response.json().await.unwrap();
        let error = answer["error"].as_str().unwrap_or_else(|| panic!("no error field for {body}"));
        assert!(error.contains(expected), "for {body}: {error}");
    }
    // Nothing reached the pipeline.
    assert!(app.records().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_job_is_a_404_with_an_error() {
    let app = TestApp::spawn().await;
    for id in ["00000000-0000-4000-8000-000000000000", "not*a*valid*key", "..%2F.."] {
        let response = app.get_job(id).await;
        assert_eq!(response.status(), 404, "for {id}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("no job"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_reports_ok_with_a_timestamp_and_version_and_503_when_nats_is_gone() {
    let mut app = TestApp::spawn().await;
    let response = app.http.get(format!("{}/health", app.address)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));

    app.kill_nats();
    let degraded = crate::helpers::wait_for("health to notice", std::time::Duration::from_secs(20), || async {
        let response = app.http.get(format!("{}/health", app.address)).send().await.ok()?;
        (response.status() == 503).then_some(response)
    })
    .await;
    let body: serde_json::Value = degraded.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_page_is_served_at_the_root() {
    let app = TestApp::spawn().await;
    let response = app.http.get(format!("{}/", app.address)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("绘影") && page.contains("generate-image"));
}

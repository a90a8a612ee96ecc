//! Live progress: a client follows a job as Server-Sent Events instead of polling.

use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{FakeApi, FakeResponse, OPENAI_PATH, TestApp, tiny_png};

/// The `(id, data)` of each event of `GET {url}` until the stream ends.
async fn events(app: &TestApp, url: &str, last_event_id: Option<&str>) -> Vec<(String, Value)> {
    let mut request = app.http.get(url).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("the stream ends with the final state");
    text.split("\n\n")
        .filter(|block| block.contains("data:"))
        .map(|block| {
            let field = |name: &str| {
                block.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).unwrap_or("").trim().to_string()
            };
            (field("id"), serde_json::from_str(&field("data")).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_followed_from_its_state_now_to_the_end_and_a_reconnect_misses_nothing() {
    let fake = FakeApi::start().await;
    let app = TestApp::spawn_with(|config, _| fake.configure(config)).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(tiny_png());
    fake.respond(OPENAI_PATH, vec![FakeResponse::ok(json!({"created": 1, "data": [{"b64_json": b64}]}))]);
    fake.set_delay(Duration::from_secs(1));

    let id = app.submit(json!({"prompt": "followed live", "model": "dall-e-3"})).await;
    let url = format!("{}/jobs/{id}/events", app.address);
    let seen = events(&app, &url, None).await;

    let states: Vec<&str> = seen.iter().map(|(state, _)| state.as_str()).collect();
    assert_eq!(states.last(), Some(&"completed"), "{states:?}");
    assert!(states.contains(&"generating") && states.contains(&"storing"), "{states:?}");
    let order = ["queued", "generating", "storing", "completed"];
    let positions: Vec<usize> = states.iter().map(|s| order.iter().position(|o| o == s).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "forward, once each: {states:?}");
    assert!(seen.last().unwrap().1["result"]["url"].is_string(), "the final event holds the job with its link");

    // Reconnecting with the last id it saw: nothing again, and the stream ends.
    assert!(events(&app, &url, Some("completed")).await.is_empty());
    // Reconnecting from an earlier state: only what came after.
    let rest = events(&app, &url, Some("storing")).await;
    assert_eq!(rest.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["completed"]);

    let missing = app.http.get(format!("{}/jobs/no-such-job/events", app.address)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

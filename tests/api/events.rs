//! Live progress: a client follows a job as Server-Sent Events instead of polling.

use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{FakeApi, FakeResponse, OPENAI_PATH, TestApp, tiny_png};

/// The `(event, id, data)` of each event of `GET {url}` until the stream ends.
async fn named_events(app: &TestApp, url: &str, last_event_id: Option<&str>) -> Vec<(String, String, Value)> {
    let mut request = app.http.get(url).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = tokio::time::timeout(Duration::from_secs(90), response.text()).await.expect("the stream ends").unwrap();
    text.split("\n\n")
        .filter(|block| block.contains("data:"))
        .map(|block| {
            let field = |name: &str| {
                block.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).unwrap_or("").trim().to_string()
            };
            (field("event"), field("id"), serde_json::from_str(&field("data")).unwrap())
        })
        .collect()
}

/// The `(id, data)` of each event of `GET {url}` until the stream ends.
async fn events(app: &TestApp, url: &str, last_event_id: Option<&str>) -> Vec<(String, Value)> {
    named_events(app, url, last_event_id).await.into_iter().map(|(_, id, data)| (id, data)).collect()
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
    // A picture kept on local disk is stored in milliseconds: no `storing` to see.
    assert!(states.contains(&"generating") && !states.contains(&"storing"), "{states:?}");
    let order = ["queued", "generating", "completed"];
    let positions: Vec<usize> = states.iter().map(|s| order.iter().position(|o| o == s).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "forward, once each: {states:?}");
    assert!(seen.last().unwrap().1["result"]["url"].is_string(), "the final event holds the job with its link");

    // Reconnecting with the last id it saw: nothing again, and the stream ends.
    assert!(events(&app, &url, Some("completed")).await.is_empty());
    // Reconnecting from an earlier state: only what came after.
    let rest = events(&app, &url, Some("generating")).await;
    assert_eq!(rest.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["completed"]);

    let missing = app.http.get(format!("{}/jobs/no-such-job/events", app.address)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

/// Reads the events of an endless stream into a list shared with the test.
async fn follow(
    app: &TestApp,
    url: &str,
    last_event_id: Option<&str>,
) -> std::sync::Arc<std::sync::Mutex<Vec<(u64, Value)>>> {
    let mut request = app.http.get(url);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    // The answer's headers come once the server watches: nothing after this is missed.
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = seen.clone();
    tokio::spawn(async move {
        let (mut body, mut text) = (response.bytes_stream(), String::new());
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).map(str::trim);
                if let (Some(id), Some(data)) = (field("id"), field("data")) {
                    into.lock().unwrap().push((id.parse().unwrap(), serde_json::from_str(data).unwrap()));
                }
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn every_jobs_changes_stream_at_events_and_a_reconnect_resumes_after_its_last_id() {
    let app = TestApp::spawn().await;
    let url = format!("{}/events", app.address);
    let live = follow(&app, &url, None).await;

    let ids = [app.submit(json!({"prompt": "first"})).await, app.submit(json!({"prompt": "second"})).await];
    let done = |seen: &[(u64, Value)], id: &str| seen.iter().any(|(_, s)| s["id"] == id && s["status"] == "completed");
    crate::helpers::wait_for("both jobs to complete on the stream", Duration::from_secs(30), || async {
        let seen = live.lock().unwrap().clone();
        ids.iter().all(|id| done(&seen, id)).then_some(())
    })
    .await;
    let seen = live.lock().unwrap().clone();
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "revisions grow");
    assert!(seen.iter().any(|(_, s)| s["id"] == ids[0].as_str() && s["status"] == "queued"));

    // Reconnecting after the first event: everything later that the bucket keeps, which
    // is at least each job's latest state.
    let first = seen[0].0;
    let resumed = follow(&app, &url, Some(&first.to_string())).await;
    crate::helpers::wait_for("the resumed stream to catch up", Duration::from_secs(30), || async {
        let seen = resumed.lock().unwrap().clone();
        ids.iter().all(|id| done(&seen, id)).then_some(())
    })
    .await;
    assert!(resumed.lock().unwrap().iter().all(|(revision, _)| *revision > first), "nothing at or before it");

    let bad = app.http.get(&url).header("last-event-id", "yesterday").send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_job_shows_its_place_in_the_queue_and_its_stream_counts_it_down() {
    let fake = FakeApi::start().await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(tiny_png());
    fake.respond(OPENAI_PATH, vec![FakeResponse::ok(json!({"created": 1, "data": [{"b64_json": b64}]}))]);
    fake.set_delay(Duration::from_millis(1500));
    let app = TestApp::spawn_with(|config, _| {
        fake.configure(config);
        config.openai.max_concurrency = 1;
        config.generator.concurrency = 1;
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(app.submit(json!({"prompt": format!("queued lighthouse {n}"), "model": "dall-e-3"})).await);
    }
    let last = ids.last().unwrap();

    let now: Value = app.http.get(format!("{}/jobs/{last}", app.address)).send().await.unwrap().json().await.unwrap();
    let seen: Vec<(String, Value)> = (named_events(&app, &format!("{}/jobs/{last}/events", app.address), None).await)
        .into_iter()
        .map(|(event, _, data)| (event, data))
        .collect();

    assert_eq!(now["status"], "queued", "{now}");
    let first_place = now["queue_position"].as_u64().expect("a waiting job's place");
    assert!((4..=5).contains(&first_place), "four jobs ahead, one perhaps finished: {now}");
    let places: Vec<u64> = seen.iter().filter_map(|(_, data)| data["queue_position"].as_u64()).collect();
    assert!(places.len() >= 2, "the place moves while it waits: {seen:?}");
    assert!(places.windows(2).all(|pair| pair[0] > pair[1]), "counting down: {places:?}");
    assert!(seen.iter().any(|(event, _)| event == "position"), "{seen:?}");
    assert_eq!(seen.last().unwrap().1["status"], "completed");
    let done: Value = app.http.get(format!("{}/jobs/{last}", app.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(done["queue_position"], Value::Null, "no place once drawn");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_list_pages_through_a_keys_own_jobs_newest_first_and_filters_by_state() {
    let app = TestApp::spawn_with(|config, _| {
        let key = |name: &str| huiying::config::KeyConfig {
            name: name.into(),
            key: huiying::config::Secret::new(format!("{name}-key")),
            ..Default::default()
        };
        config.server.keys = vec![key("design"), key("ops")];
    })
    .await;
    let ask = |key: &'static str, prompt: String| {
        app.http
            .post(format!("{}/generate-image", app.address))
            .bearer_auth(key)
            .json(&json!({"prompt": prompt}))
            .send()
    };
    for n in 0..5 {
        eprintln!("asking {n}");
        assert_eq!(ask("design-key", format!("design's fox {n}")).await.unwrap().status(), 200);
    }
    eprintln!("asked");
    assert_eq!(ask("ops-key", "ops' wolf".into()).await.unwrap().status(), 200);
    let list = |query: String| {
        let request = app.http.get(format!("{}/jobs?{query}", app.address)).bearer_auth("design-key");
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };

    let first = list("limit=3".into()).await;
    let second = list(format!("limit=3&cursor={}", first["next_cursor"].as_str().unwrap())).await;

    let prompts: Vec<String> = (first["jobs"].as_array().unwrap().iter())
        .chain(second["jobs"].as_array().unwrap())
        .map(|job| job["prompt"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        prompts,
        (0..5).rev().map(|n| format!("design's fox {n}")).collect::<Vec<_>>(),
        "newest first, own only"
    );
    assert_eq!(second["next_cursor"], Value::Null);
    assert_eq!(list("state=queued".into()).await["jobs"], json!([]));
    assert_eq!(list("state=completed".into()).await["jobs"].as_array().unwrap().len(), 5);
    let refused =
        app.http.get(format!("{}/jobs?state=waiting", app.address)).bearer_auth("design-key").send().await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("waiting"));
}

//! What a user gets for bad input, unknown jobs and health checks.

use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_a_400_that_names_the_problem() {
    let app = TestApp::spawn().await;
    // The same table as the router's unit test (src/ingest/tests.rs), here end to end.
    let cases: Vec<(String, String)> =
        serde_json::from_str(include_str!("../fixtures/bad_generate_requests.json")).unwrap();
    for (body, expected) in cases {
        let response = app.post_generate_raw(&body).await;
        assert_eq!(response.status(), 400, "for {body}");
        let answer: serde_json::Value = response.json().await.unwrap();
        let error = answer["error"].as_str().unwrap_or_else(|| panic!("no error field for {body}"));
        assert!(error.contains(&expected), "for {body}: {error}");
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
async fn health_names_a_missing_service_and_is_503_when_nats_is_gone() {
    let mut app = TestApp::spawn().await;
    let health = async |app: &TestApp| -> (u16, serde_json::Value) {
        let response = app.http.get(format!("{}/health", app.address)).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    };
    let wait = std::time::Duration::from_secs(20);
    let body = crate::helpers::wait_for("every service to answer", wait, || async {
        let (status, body) = health(&app).await;
        (status == 200 && body["status"] == "ok").then_some(body)
    })
    .await;
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    let up = serde_json::json!({"generator": "up", "store": "up", "mailer": "up", "webhook": "up"});
    assert_eq!(body["services"], up);

    // The generator stops: ingest still queues (200), and says who is missing.
    app.stop_service("generator").await;
    let (status, body) = health(&app).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("degraded")), "{body}");
    assert_eq!(body["missing"], serde_json::json!(["generator"]));
    assert_eq!(body["services"]["generator"], "down");
    app.start_service("generator");
    crate::helpers::wait_for("the generator to answer again", wait, || async {
        (health(&app).await.1["status"] == "ok").then_some(())
    })
    .await;

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

#[tokio::test(flavor = "multi_thread")]
async fn hostile_http_input_gets_the_right_4xx_with_an_error_and_queues_nothing() {
    let app = TestApp::spawn().await;
    let url = format!("{}/generate-image", app.address);
    let send = |body: Vec<u8>, content_type: &'static str| {
        app.http.post(&url).header("Content-Type", content_type).body(body).send()
    };

    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        // Read as JSON whatever the Content-Type says, as the original did.
        (b"prompt=cat".to_vec(), "application/x-www-form-urlencoded", 400, "not valid JSON"),
        (json!({"prompt": "x".repeat(100_000)}).to_string().into_bytes(), "application/json", 413, "larger than"),
        (
            json!({"prompt": "a cat\u{0000}\u{001b}[31m"}).to_string().into_bytes(),
            "application/json",
            400,
            "control character",
        ),
        (b"{\"prompt\": \"\xff\xfe\"}".to_vec(), "application/json", 400, "not valid JSON"),
        (b"{\"prompt\": \"cat\"".to_vec(), "application/json", 400, "not valid JSON"),
    ];
    for (body, content_type, status, expected) in cases {
        let response = send(body, content_type).await.unwrap();
        assert_eq!(response.status(), status, "{content_type} → {expected}");
        let answer: serde_json::Value = response.json().await.unwrap();
        assert!(answer["error"].as_str().unwrap().contains(expected), "{answer}");
    }
    // A 10 MB body is refused once 64 KiB of it are read, and the rest never is: speak HTTP by hand,
    // since a client still writing the body would only see the closed connection.
    let answer = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
        let head = "POST /generate-image HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(&[b'a'; 128 * 1024]).await.unwrap();
        // The server keeps the connection open: read until the JSON answer is complete.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        let read_all = async {
            while !String::from_utf8_lossy(&answer).ends_with('}') {
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), read_all).await.expect("an answer in time");
        String::from_utf8_lossy(&answer).to_string()
    };
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#"{"error":"the body is larger than"#), "{answer}");

    let charset =
        send(json!({"prompt": "fine"}).to_string().into_bytes(), "application/json; charset=utf-8").await.unwrap();
    assert_eq!(charset.status(), 200);

    let unknown = app.http.get(format!("{}/no/such/thing", app.address)).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<serde_json::Value>().await.unwrap()["error"], "no such endpoint");
    let wrong_method = app.http.get(&url).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert!(wrong_method.json::<serde_json::Value>().await.unwrap()["error"].is_string());

    app.wait_until_consumer_idle("generator").await;
    assert_eq!(app.records().len(), 1, "only the one good request became a job");
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_on_every_subject_is_set_aside_with_its_reason_and_good_jobs_go_on() {
    let app = TestApp::spawn().await;
    let poison = [
        ("image.requested", "this is not JSON"),
        ("image.requested", r#"{"prompt": "from the future", "version": 99}"#),
        ("image.generated", "{}"),
        ("image.completed", "[1, 2, 3]"),
        ("image.failed", r#"{"id": "x"}"#),
    ];
    for (subject, payload) in poison {
        app.publish(subject, payload).await;
    }
    let good = app.post_generate(json!({"prompt": "life goes on"})).await;
    assert_eq!(good.status(), 200);

    let js = async_nats::jetstream::new(app.nats.clone());
    let dead = js.get_stream(huiying::contract::DEAD_LETTER_STREAM).await.unwrap();
    // Seven: the poison on image.completed and image.failed is set aside by each of their
    // two consumers, the mailer and the webhook service.
    crate::helpers::wait_for("seven dead letters", std::time::Duration::from_secs(30), || {
        let mut stream = dead.clone();
        async move { (stream.info().await.ok()?.state.messages == 7).then_some(()) }
    })
    .await;
    let mut reasons = Vec::new();
    for sequence in 1..=7 {
        let message = dead.get_raw_message(sequence).await.unwrap();
        let headers = message.headers;
        reasons.push(format!(
            "{} | {}",
            headers.get("Huiying-Subject").unwrap().as_str(),
            headers.get("Huiying-Reason").unwrap().as_str()
        ));
    }
    reasons.sort();
    assert!(reasons.iter().any(|r| r.starts_with("image.requested | not an image.requested event")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("version 99 is newer")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("image.generated | not an image.generated event")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("image.completed | not an image.completed event")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.starts_with("image.failed | not an image.failed event")), "{reasons:?}");
    for consumer in ["generator", "store", "mailer", "webhook"] {
        app.wait_until_consumer_idle(consumer).await;
    }
    let mut generator: async_nats::jetstream::consumer::PullConsumer =
        js.get_stream(huiying::contract::STREAM).await.unwrap().get_consumer("generator").await.unwrap();
    assert_eq!(generator.info().await.unwrap().num_redelivered, 0, "terminated on first delivery");
    assert_eq!(app.smtp.wait_for_mails(1).await.len(), 1);
}

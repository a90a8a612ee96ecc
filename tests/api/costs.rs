//! What each picture cost: as OpenRouter reports it, as OpenAI's tokens come to at the
//! price table, as the table estimates it, or unknown (never 0); on the job, the record,
//! the events, the mail, the answer's `usage` and its `Huiying-Cost` header.

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{FakeApi, FakeResponse, OPENAI_PATH, OPENROUTER_PATH, TestApp, openrouter_image, tiny_png};

/// OpenRouter's answer with the cost it reports for the call.
fn openrouter_costing(usd: f64) -> Value {
    let mut answer = openrouter_image(&tiny_png());
    answer["usage"] = json!({"prompt_tokens": 9, "completion_tokens": 1299, "total_tokens": 1308, "cost": usd});
    answer
}

/// OpenAI's gpt-image answer, with the tokens it counted.
fn openai_with_tokens(output_tokens: u64) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD.encode(tiny_png());
    json!({"created": 1, "data": [{"b64_json": b64}], "usage": {"total_tokens": output_tokens + 12,
        "input_tokens": 12, "output_tokens": output_tokens,
        "input_tokens_details": {"text_tokens": 12, "image_tokens": 0}}})
}

/// Draws `body` and returns the answer, its `Huiying-Cost` header and the job's record.
async fn drawn(app: &TestApp, body: Value) -> (Value, String, Value) {
    let response = app.post_generate(body).await;
    assert_eq!(response.status(), 200);
    let header = response.headers()["huiying-cost"].to_str().unwrap().to_string();
    let answer: Value = response.json().await.unwrap();
    let id = answer["id"].as_str().unwrap();
    let record = app.http.get(format!("{}/records/{id}", app.address)).send().await.unwrap().json().await.unwrap();
    (answer, header, record)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_picture_records_what_it_cost_and_where_that_came_from() {
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_costing(0.0387))]);
    let app = TestApp::spawn_with(|config, _| {
        api.configure(config);
    })
    .await;
    // The process's metrics recorder starts with the first scrape (tests share a process).
    app.http.get(format!("{}/metrics", app.address)).send().await.unwrap();

    // Reported: exactly what OpenRouter said, with its usage beside it.
    let (answer, header, record) =
        drawn(&app, json!({"prompt": "a fox", "model": "google/gemini-2.5-flash-image"})).await;
    assert_eq!((record["cost_usd"].as_f64(), record["cost_source"].as_str()), (Some(0.0387), Some("reported")));
    assert_eq!(record["usage"]["completion_tokens"], 1299);
    assert_eq!(header, "0.0387 USD (reported)");
    assert_eq!(answer["usage"]["cost_usd"], 0.0387);
    let id = answer["id"].as_str().unwrap();
    let job: Value = app.get_job(id).await.json().await.unwrap();
    assert_eq!(job["result"]["cost_usd"], 0.0387);
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.text.contains("费用：0.0387 美元（服务商报告）"), "{}", mail.text);

    // Computed: OpenAI's tokens at the table's token prices, the quality's price to the cent.
    for (quality, tokens, listed) in [("low", 272, 0.011), ("medium", 1056, 0.042), ("high", 4160, 0.167)] {
        api.respond(OPENAI_PATH, vec![FakeResponse::ok(openai_with_tokens(tokens))]);
        let body = json!({"prompt": "a fox", "model": "gpt-image-1", "quality": quality});
        let (_, _, record) = drawn(&app, body).await;
        assert_eq!(record["cost_source"], "computed", "{quality}");
        let usd = record["cost_usd"].as_f64().unwrap();
        assert!((usd - listed).abs() < 0.005, "{quality}: {usd} against the table's {listed}");
    }

    // Unknown: an unpriced model whose provider says nothing is null, never 0.
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    let (answer, header, record) = drawn(&app, json!({"prompt": "a fox", "model": "some/unpriced"})).await;
    assert_eq!((record["cost_usd"].clone(), record["cost_source"].as_str()), (Value::Null, Some("unknown")));
    assert_eq!(header, "unknown");
    assert_eq!(answer["usage"]["cost_usd"], Value::Null);

    // The events carry it too (subscribers and webhooks read them).
    let js = async_nats::jetstream::new(app.nats.clone());
    let mut stream = js.get_stream(huiying::contract::STREAM).await.unwrap();
    let mut completed = 0;
    for sequence in 1..=stream.info().await.unwrap().state.last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        if message.subject.as_str() == "image.completed" {
            let event: Value = serde_json::from_slice(&message.payload).unwrap();
            assert!(event.get("cost_source").is_some(), "{event}");
            completed += 1;
        }
    }
    assert_eq!(completed, 5);
    let metrics = app.http.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    let spent = metrics.lines().find(|line| {
        line.starts_with("huiying_cost_usd_total{") && line.contains(r#"model="google/gemini-2.5-flash-image""#)
    });
    assert!(spent.is_some(), "the spend is a metric: {metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_picture_the_store_refuses_still_records_what_the_call_cost() {
    let api = FakeApi::start().await;
    let mut answer = openrouter_costing(0.039);
    // Not a picture: the model was paid, the store cannot keep it.
    let junk = base64::engine::general_purpose::STANDARD.encode(b"not a picture at all");
    answer["choices"][0]["message"]["images"][0]["image_url"]["url"] = json!(format!("data:image/png;base64,{junk}"));
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(answer)]);
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;
    let id = app.submit(json!({"prompt": "a fox", "model": "google/gemini-2.5-flash-image"})).await;
    let job = app.wait_for_job(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(
        (job["error"]["cost_usd"].as_f64(), job["error"]["cost_source"].as_str()),
        (Some(0.039), Some("reported"))
    );
}

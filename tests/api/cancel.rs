//! Stopping a job: `POST /jobs/{id}/cancel` and the request's `deadline`. Nobody pays for
//! a picture they stopped waiting for, and nobody is mailed about it unless they ask.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::helpers::{FakeApi, FakeResponse, OPENAI_PATH, TestApp, tiny_png, wait_for};

fn picture_answer() -> FakeResponse {
    let b64 = base64::engine::general_purpose::STANDARD.encode(tiny_png());
    FakeResponse::ok(json!({"created": 1, "data": [{"b64_json": b64}]}))
}

async fn cancel(app: &TestApp, id: &str, body: Value, wait: u64) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}/jobs/{id}/cancel", app.address))
        .header("prefer", format!("wait={wait}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_cancelled_during_its_model_call_is_discarded_and_mails_nobody() {
    let fake = FakeApi::start().await;
    let app = TestApp::spawn_with(|config, _| fake.configure(config)).await;
    fake.respond(OPENAI_PATH, vec![picture_answer(), picture_answer()]);
    fake.set_delay(Duration::from_secs(2));

    let id = app.submit(json!({"prompt": "a picture nobody wants", "model": "dall-e-3"})).await;
    wait_for("the model to be asked", Duration::from_secs(30), || async {
        (fake.calls(OPENAI_PATH).len() == 1).then_some(())
    })
    .await;
    let (status, job) = cancel(&app, &id, json!({}), 30).await;
    assert_eq!((status, job["status"].as_str()), (200, Some("cancelled")), "{job}");
    assert_eq!(job["error"]["stage"], "cancelled");

    // A job after it completes and is mailed: the mailer was there, and said nothing of the first.
    fake.set_delay(Duration::ZERO);
    let wanted = app.submit(json!({"prompt": "a picture somebody wants", "model": "dall-e-3"})).await;
    assert_eq!(app.wait_for_job(&wanted).await["status"], "completed");
    app.wait_until_consumer_idle("mailer").await;
    let mails = app.smtp.mails();
    assert_eq!(mails.len(), 1, "only the wanted job is mailed");
    assert!(!mails[0].text.contains(&id), "nothing about the cancelled job");
    assert_eq!(app.records().len(), 1, "the cancelled job's picture was not kept");
    assert_eq!(app.image_files().len(), 1);
    assert_eq!(app.get_job(&id).await.json::<Value>().await.unwrap()["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_jobs_cancelled_or_past_their_deadline_never_reach_the_model() {
    let fake = FakeApi::start().await;
    let mut app = TestApp::spawn_with(|config, _| fake.configure(config)).await;
    fake.respond(OPENAI_PATH, vec![picture_answer()]);
    app.stop_service("generator").await;

    let cancelled = app.submit(json!({"prompt": "changed my mind", "model": "dall-e-3"})).await;
    let late = app.submit(json!({"prompt": "only if quick", "model": "dall-e-3", "deadline": 1})).await;
    let (status, job) = cancel(&app, &cancelled, json!({"notify": true}), 0).await;
    assert_eq!((status, job["status"].as_str(), job["cancel_requested"].as_bool()), (202, Some("queued"), Some(true)));
    let deadline = OffsetDateTime::now_utc() + Duration::from_secs(1);
    wait_for("the deadline to pass", Duration::from_secs(5), || async {
        (OffsetDateTime::now_utc() > deadline).then_some(())
    })
    .await;

    app.start_service("generator");
    for id in [&cancelled, &late] {
        assert_eq!(app.wait_for_job(id).await["status"], "cancelled", "{id}");
    }
    let late_job: Value = app.get_job(&late).await.json().await.unwrap();
    assert!(late_job["error"]["error"].as_str().unwrap().contains("deadline"), "{late_job}");
    assert!(fake.calls(OPENAI_PATH).is_empty(), "nobody paid for either picture");

    // The canceller asked for a mail; the deadline's job mails nobody.
    app.wait_until_consumer_idle("mailer").await;
    let mails = app.smtp.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].text.contains("changed my mind"), "{}", mails[0].text);
    // Its own outcome: cancelled, at whose request and when; not a failure "at reading the request".
    assert!(mails[0].subject.starts_with("绘影：任务已取消"), "{}", mails[0].subject);
    assert!(mails[0].text.contains("客户端请求取消") && mails[0].text.contains("请求时间："), "{}", mails[0].text);
    assert!(!mails[0].text.contains("请求内容"), "{}", mails[0].text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_cancelled_while_its_prompt_is_translated_never_reaches_the_model() {
    let fake = FakeApi::start().await;
    let app = TestApp::spawn_with(|config, _| fake.configure(config)).await;
    fake.respond(crate::helpers::MODELSCOPE_PATH, vec![FakeResponse::ok(crate::helpers::chat_text("a slow fox"))]);
    fake.respond(OPENAI_PATH, vec![picture_answer()]);
    fake.set_delay(Duration::from_secs(2));

    let id = app.submit(json!({"prompt": "一只慢吞吞的狐狸", "model": "dall-e-3"})).await;
    wait_for("the prompt to be translated", Duration::from_secs(30), || async {
        let job: Value = app.get_job(&id).await.json().await.ok()?;
        (job["status"] == "translating").then_some(())
    })
    .await;
    let (status, job) = cancel(&app, &id, json!({}), 30).await;
    assert_eq!((status, job["status"].as_str()), (200, Some("cancelled")), "{job}");
    assert!(fake.calls(OPENAI_PATH).is_empty(), "the model was never asked");
}

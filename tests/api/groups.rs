//! Several pictures from one request (`n`): each its own job, stored and recorded, one
//! mail listing them all, each counted by quotas.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// What `GET path` answers, as JSON.
async fn view(app: &TestApp, path: &str) -> Value {
    app.http.get(format!("{}{path}", app.address)).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn n_four_gives_four_distinct_pictures_four_records_and_one_mail_naming_all_four() {
    let app = TestApp::spawn().await;

    let response = app.post_generate(json!({"prompt": "four red foxes", "n": 4})).await;

    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let urls: Vec<&str> = answer["data"].as_array().unwrap().iter().map(|p| p["url"].as_str().unwrap()).collect();
    assert_eq!(urls.len(), 4, "{answer}");
    let records = app.records();
    assert_eq!(records.len(), 4);
    let folder = &app.config.server.images_dir;
    let files: HashSet<Vec<u8>> =
        app.image_files().iter().map(|name| std::fs::read(folder.join(name)).unwrap()).collect();
    assert_eq!(files.len(), 4, "four different pictures (a seed each)");

    let mail = &app.smtp.wait_for_mails(1).await[0];
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), 1, "one mail for the four");
    for url in &urls {
        assert!(mail.text.contains(url), "the mail names {url}: {}", mail.text);
    }
    assert!(mail.subject.contains("4 张图片已生成"), "{}", mail.subject);

    let group = view(&app, &format!("/groups/{}", answer["id"].as_str().unwrap())).await;
    assert_eq!((group["status"].as_str(), group["counts"]["completed"].as_u64()), (Some("ended"), Some(4)), "{group}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_picture_of_n_counts_against_the_keys_quota_and_the_answer_says_why_there_are_fewer() {
    let app = TestApp::spawn_with(|config, _| {
        config.server.keys = vec![huiying::config::KeyConfig {
            name: "design".into(),
            key: huiying::config::Secret::new("design-key"),
            jobs_per_day: 3,
            ..Default::default()
        }];
    })
    .await;
    let ask = |n: u32| {
        app.http
            .post(format!("{}/generate-image", app.address))
            .bearer_auth("design-key")
            .json(&json!({"prompt": "a fox", "n": n}))
            .send()
    };

    let answer: Value = ask(4).await.unwrap().json().await.unwrap();

    assert_eq!(answer["data"].as_array().unwrap().len(), 3, "{answer}");
    assert!(answer["cut_short"].as_str().unwrap().starts_with("3 of 4 pictures were queued"), "{answer}");
    assert_eq!(ask(2).await.unwrap().status(), 429, "the day's three are used");
    assert_eq!(ask(11).await.unwrap().status(), 400, "n above [server] max_n");
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.subject.contains("3 张图片已生成"), "{}", mail.subject);
}

#[tokio::test(flavor = "multi_thread")]
async fn compare_draws_one_prompt_on_each_model_and_one_mail_shows_them_side_by_side() {
    use crate::helpers::{FakeApi, FakeResponse, OPENAI_PATH, OPENROUTER_PATH, openrouter_image, tiny_png};
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    api.respond(OPENAI_PATH, vec![FakeResponse::error(400, "Your request was rejected by the safety system.")]);
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;
    let models = ["google/gemini-2.5-flash-image", "gpt-image-1", "huiying/placeholder"];

    let response = app
        .http
        .post(format!("{}/compare", app.address))
        .json(&json!({"prompt": "a lighthouse at dawn", "models": models, "seed": 42}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let drawn: Vec<&str> = answer["data"].as_array().unwrap().iter().map(|p| p["model"].as_str().unwrap()).collect();
    assert_eq!(drawn, ["google/gemini-2.5-flash-image", "huiying/placeholder"], "{answer}");
    assert_eq!(answer["errors"][0]["model"], "gpt-image-1", "{answer}");
    assert_eq!(api.calls(OPENROUTER_PATH)[0].body["seed"], 42, "the same seed for every model");

    let mail = &app.smtp.wait_for_mails(1).await[0];
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), 1, "one mail for the comparison");
    for model in models {
        assert!(mail.text.contains(model), "the mail names {model}: {}", mail.text);
    }
    assert!(mail.text.contains("safety system"), "{}", mail.text);
    let group = view(&app, &format!("/groups/{}", answer["id"].as_str().unwrap())).await;
    assert_eq!((group["counts"]["completed"].as_u64(), group["counts"]["failed"].as_u64()), (Some(2), Some(1)));
    assert!(group["jobs"][0]["duration_ms"].as_u64().is_some(), "each model's time: {group}");

    // One model, or one named twice, is no comparison.
    let refused = |models: Value| {
        app.http.post(format!("{}/compare", app.address)).json(&json!({"prompt": "x", "models": models})).send()
    };
    assert_eq!(refused(json!(["huiying/placeholder"])).await.unwrap().status(), 400);
    assert_eq!(refused(json!(["huiying/placeholder", "huiying/placeholder"])).await.unwrap().status(), 400);
}

/// Waits until the batch `id` has ended, and returns its view.
async fn batch_ended(app: &TestApp, id: &str) -> Value {
    crate::helpers::wait_for(&format!("batch {id} to end"), std::time::Duration::from_secs(120), || async {
        let batch = view(app, &format!("/batches/{id}")).await;
        (batch["status"] == "ended").then_some(batch)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_two_hundred_prompts_completes_with_one_summary_mail_and_the_counts_right() {
    let app = TestApp::spawn().await;
    let prompts: Vec<String> = (0..200).map(|n| format!("lighthouse number {n}")).collect();

    let response =
        app.http.post(format!("{}/batches", app.address)).json(&json!({"prompts": prompts})).send().await.unwrap();

    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["count"], 200);
    let batch = batch_ended(&app, answer["id"].as_str().unwrap()).await;
    assert_eq!(batch["counts"], json!({"completed": 200}), "{batch}");
    assert_eq!(app.records().len(), 200);
    let mail = &app.smtp.wait_for_mails(1).await[0];
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), 1, "one summary mail instead of 200");
    assert!(mail.subject.contains("200 张图片已生成"), "{}", mail.subject);
    assert!(mail.text.contains("lighthouse number 199") || mail.text.contains("第 200 张"), "{}", mail.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_batch_cancels_what_has_not_reached_the_model() {
    use crate::helpers::{FakeApi, FakeResponse, OPENROUTER_PATH, openrouter_image, tiny_png};
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    api.set_delay(std::time::Duration::from_millis(500));
    let app = TestApp::spawn_with(|config, _| {
        api.configure(config);
        config.openrouter.max_concurrency = 1;
        config.generator.concurrency = 1;
    })
    .await;
    let prompts: Vec<String> = (0..10).map(|n| format!("a slow lighthouse {n}")).collect();
    let answer: Value = app
        .http
        .post(format!("{}/batches", app.address))
        .json(&json!({"prompts": prompts, "model": "google/gemini-2.5-flash-image"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["id"].as_str().unwrap();

    let cancel = app.http.post(format!("{}/batches/{id}/cancel", app.address)).send().await.unwrap();

    assert_eq!(cancel.status(), 202);
    let batch = batch_ended(&app, id).await;
    let (completed, cancelled) =
        (batch["counts"]["completed"].as_u64().unwrap_or(0), batch["counts"]["cancelled"].as_u64().unwrap_or(0));
    assert_eq!(completed + cancelled, 10, "{batch}");
    assert!(cancelled >= 5, "what had not started was cancelled: {batch}");
    // One call at a time: at most the one in hand when the cancel came was paid for besides.
    let calls = api.calls(OPENROUTER_PATH).len() as u64;
    assert!(calls <= completed + 1, "no job still waiting reached the model: {calls} calls, {batch}");
    app.smtp.wait_for_mails(1).await;
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), 1, "one summary mail");
}

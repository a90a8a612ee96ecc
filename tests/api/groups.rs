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

#[tokio::test(flavor = "multi_thread")]
async fn picking_a_comparisons_best_marks_its_record_and_counts_for_its_model() {
    use crate::helpers::{FakeApi, FakeResponse, OPENAI_PATH, OPENROUTER_PATH, openrouter_image, tiny_png};
    let api = FakeApi::start().await;
    let mut drawn = openrouter_image(&tiny_png());
    drawn["usage"] = json!({"cost": 0.039});
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(drawn)]);
    api.respond(OPENAI_PATH, vec![FakeResponse::error(400, "Your request was rejected by the safety system.")]);
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;
    let compare = |prompt: &str| {
        let models = ["google/gemini-2.5-flash-image", "huiying/placeholder", "dall-e-3"];
        app.http.post(format!("{}/compare", app.address)).json(&json!({"prompt": prompt, "models": models})).send()
    };
    let answer: Value = compare("a lighthouse at dawn").await.unwrap().json().await.unwrap();
    let id = answer["id"].as_str().unwrap().to_string();
    let group = view(&app, &format!("/groups/{id}")).await;
    let job_of = |model: &str| {
        group["jobs"].as_array().unwrap().iter().find(|job| job["model"] == model).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (gemini, placeholder, refused) =
        (job_of("google/gemini-2.5-flash-image"), job_of("huiying/placeholder"), job_of("dall-e-3"));
    let pick = |job: &str| app.http.post(format!("{}/groups/{id}/pick", app.address)).json(&json!({"job": job})).send();

    assert_eq!(pick(&placeholder).await.unwrap().status(), 200);
    let picked = pick(&gemini).await.unwrap();

    assert_eq!(picked.status(), 200, "a later pick replaces the first");
    assert_eq!(view(&app, &format!("/groups/{id}")).await["picked"], gemini.as_str());
    assert_eq!(view(&app, &format!("/records/{gemini}")).await["picked"], true);
    assert_eq!(view(&app, &format!("/records/{placeholder}")).await["picked"], Value::Null, "no longer picked");
    let failed = pick(&refused).await.unwrap();
    assert_eq!(failed.status(), 409, "a failed job has no picture to pick");
    assert!(failed.text().await.unwrap().contains("failed"));
    assert_eq!(pick("not-a-member").await.unwrap().status(), 422);

    // A second comparison, without a pick: two more jobs for each model.
    compare("a lighthouse at dusk").await.unwrap();
    let stats = view(&app, "/models/stats").await;
    let of = |model: &str| stats["models"].as_array().unwrap().iter().find(|m| m["model"] == model).unwrap().clone();
    let gemini_stats = of("google/gemini-2.5-flash-image");
    assert_eq!((gemini_stats["jobs"].as_u64(), gemini_stats["failures"].as_u64()), (Some(2), Some(0)), "{stats}");
    assert_eq!((gemini_stats["picks"].as_u64(), gemini_stats["median_cost_usd"].as_f64()), (Some(1), Some(0.039)));
    assert!(gemini_stats["median_duration_ms"].as_u64().is_some(), "{stats}");
    assert_eq!((of("dall-e-3")["jobs"].as_u64(), of("dall-e-3")["failures"].as_u64()), (Some(2), Some(2)));
    assert_eq!(of("huiying/placeholder")["picks"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batchs_progress_streams_its_counts_until_every_job_has_ended() {
    use crate::helpers::{FakeApi, FakeResponse, OPENROUTER_PATH, openrouter_image, tiny_png};
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    api.set_delay(std::time::Duration::from_millis(300));
    let app = TestApp::spawn_with(|config, _| {
        api.configure(config);
        config.openrouter.max_concurrency = 1;
        config.generator.concurrency = 1;
    })
    .await;
    let prompts: Vec<String> = (0..6).map(|n| format!("a lighthouse in the fog {n}")).collect();
    let body = json!({"prompts": prompts, "model": "google/gemini-2.5-flash-image", "notify": "none"});
    let answer: Value =
        app.http.post(format!("{}/batches", app.address)).json(&body).send().await.unwrap().json().await.unwrap();

    let url = format!("{}/batches/{}/events", app.address, answer["id"].as_str().unwrap());
    let response = app.http.get(url).send().await.unwrap();
    let text = tokio::time::timeout(std::time::Duration::from_secs(90), response.text()).await.unwrap().unwrap();

    let progress: Vec<Value> = (text.split("\n\n"))
        .filter_map(|block| block.lines().find_map(|line| line.strip_prefix("data:")))
        .map(|data| serde_json::from_str(data.trim()).unwrap())
        .collect();
    let completed: Vec<u64> = progress.iter().map(|p| p["counts"]["completed"].as_u64().unwrap_or(0)).collect();
    assert!(progress.len() >= 3, "a count as each picture is made: {progress:?}");
    assert!(completed.windows(2).all(|pair| pair[0] <= pair[1]), "{completed:?}");
    let last = progress.last().unwrap();
    assert_eq!((last["status"].as_str(), last["total"].as_u64(), completed.last()), (Some("ended"), Some(6), Some(&6)));
    assert!(text.contains("event: progress"), "{text}");
}

//! Real image models, through fakes that speak their wire format: every call counted,
//! every failure explained.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    FakeApi, FakeResponse, MODELSCOPE_PATH, OPENAI_PATH, OPENROUTER_PATH, TestApp, chat_text, openrouter_image,
    openrouter_image_url, tiny_png,
};

async fn body(response: reqwest::Response) -> serde_json::Value {
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_with_retry_after_is_waited_out_and_then_one_image_one_record_one_email() {
    let api = FakeApi::start().await;
    api.respond(
        OPENROUTER_PATH,
        vec![
            FakeResponse::error(429, "Rate limit exceeded: free-models-per-min").with_header("Retry-After", "1"),
            FakeResponse::ok(openrouter_image(&tiny_png())),
        ],
    );
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;

    let started = std::time::Instant::now();
    let response = app.post_generate(json!({"prompt": "after the rush"})).await;

    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After was honoured");
    assert_eq!(api.calls(OPENROUTER_PATH).len(), 2);
    assert_eq!(app.records().len(), 1);
    app.smtp.wait_for_mails(1).await;
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_500_every_time_fails_after_the_configured_attempts_with_no_extra_call() {
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::error(500, "upstream model crashed")]);
    let app = TestApp::spawn_with(|config, _| {
        api.configure(config);
        config.generator.max_attempts = 3;
    })
    .await;

    let response = app.post_generate(json!({"prompt": "doomed"})).await;

    assert_eq!(response.status(), 502);
    let answer = body(response).await;
    assert!(answer["error"].as_str().unwrap().contains("500 Internal Server Error: upstream model crashed"));
    let job = app.wait_for_job(answer["id"].as_str().unwrap()).await;
    assert_eq!((job["error"]["attempts"].as_u64(), job["error"]["transient"].as_bool()), (Some(3), Some(true)));
    app.wait_until_consumer_idle("generator").await;
    assert_eq!(api.calls(OPENROUTER_PATH).len(), 3, "no more calls than configured");
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.text.contains("upstream model crashed") && mail.text.contains("尝试次数：3"), "{}", mail.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_fails_at_once_without_a_retry_and_without_showing_the_key() {
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::error(401, "No auth credentials found")]);
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;

    let response = app.post_generate(json!({"prompt": "locked out"})).await;

    assert_eq!(response.status(), 502);
    let answer = body(response).await;
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("401") && error.contains("No auth credentials found"), "{error}");
    assert!(!error.contains("sk-or-test-key"));
    let job = app.wait_for_job(answer["id"].as_str().unwrap()).await;
    assert_eq!((job["error"]["attempts"].as_u64(), job["error"]["transient"].as_bool()), (Some(1), Some(false)));
    app.wait_until_consumer_idle("generator").await;
    assert_eq!(api.calls(OPENROUTER_PATH).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chinese_prompt_is_translated_first_and_the_record_and_file_name_show_both_languages() {
    let api = FakeApi::start().await;
    api.respond(MODELSCOPE_PATH, vec![FakeResponse::ok(chat_text("A cute cat sitting on the moon"))]);
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;

    // An ideograph outside the basic block (Extension B) counts as Chinese too.
    let response = app.post_generate(json!({"prompt": "一只坐在月球上的可爱𠀀猫"})).await;

    assert_eq!(response.status(), 200);
    let url = body(response).await["data"][0]["url"].as_str().unwrap().to_string();
    assert!(url.ends_with("_cute_cat_sitting_moon.jpg"), "{url}");
    let translation = &api.calls(MODELSCOPE_PATH)[0];
    assert_eq!(translation.headers["authorization"], "Bearer ms-test-token");
    assert_eq!(translation.body["model"], "deepseek-ai/DeepSeek-V3.1");
    assert_eq!(translation.body["messages"][1]["content"], "一只坐在月球上的可爱𠀀猫");
    let drawing = &api.calls(OPENROUTER_PATH)[0];
    assert_eq!(drawing.body["messages"][0]["content"][0]["text"], "A cute cat sitting on the moon");
    let record = &app.records()[0];
    assert_eq!(record["original_prompt"], "一只坐在月球上的可爱𠀀猫");
    assert_eq!(record["english_prompt"], "A cute cat sitting on the moon");
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.text.contains("英文提示词：A cute cat sitting on the moon"), "{}", mail.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn when_translation_fails_the_original_prompt_is_used() {
    let api = FakeApi::start().await;
    api.respond(MODELSCOPE_PATH, vec![FakeResponse::error(503, "busy")]);
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;

    assert_eq!(app.post_generate(json!({"prompt": "一只猫"})).await.status(), 200);

    assert_eq!(api.calls(OPENROUTER_PATH)[0].body["messages"][0]["content"][0]["text"], "一只猫");
    assert_eq!(app.records()[0]["english_prompt"], "一只猫");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_that_answers_only_text_is_a_clear_failure_quoting_it() {
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(chat_text("I cannot draw, but I can describe a lighthouse."))]);
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;

    let response = app.post_generate(json!({"prompt": "a lighthouse", "model": "some/text-model"})).await;

    assert_eq!(response.status(), 502);
    let error = body(response).await["error"].as_str().unwrap().to_string();
    assert_eq!(
        error,
        r#"model some/text-model answered without an image: "I cannot draw, but I can describe a lighthouse.""#
    );
    assert_eq!(api.calls(OPENROUTER_PATH).len(), 1, "not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_picture_link_is_downloaded_and_checked_to_be_a_picture() {
    let api = FakeApi::start().await;
    let link = api.serve_file("lighthouse.png", tiny_png());
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image_url(&link))]);
    let app = TestApp::spawn_with(|config, _| {
        api.configure(config);
        config.generator.allow_private_urls = true; // the fake lives on loopback
    })
    .await;

    let response = app.post_generate(json!({"prompt": "a linked lighthouse"})).await;

    assert_eq!(response.status(), 200);
    let record = &app.records()[0];
    assert_eq!((record["width"].as_str(), record["height"].as_str()), ("64", "48"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_picture_link_to_a_private_address_is_refused_while_the_guard_is_on() {
    let api = FakeApi::start().await;
    let link = api.serve_file("inside.png", tiny_png());
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image_url(&link))]);
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;

    let response = app.post_generate(json!({"prompt": "reach inside"})).await;

    assert_eq!(response.status(), 502);
    let error = body(response).await["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("refused to download") && error.contains("127.0.0.1") && error.contains("private"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_compatible_models_get_their_wire_format_with_size() {
    use base64::Engine;
    let api = FakeApi::start().await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(tiny_png());
    api.respond(OPENAI_PATH, vec![FakeResponse::ok(json!({"created": 1, "data": [{"b64_json": b64}]}))]);
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;

    let response = app.post_generate(json!({"prompt": "a red fox", "model": "dall-e-3", "size": "1024x1792"})).await;

    assert_eq!(response.status(), 200);
    let call = &api.calls(OPENAI_PATH)[0];
    assert_eq!(call.headers["authorization"], "Bearer sk-openai-test-key");
    assert_eq!(
        call.body,
        json!({"model": "dall-e-3", "prompt": "a red fox", "n": 1, "size": "1024x1792", "response_format": "b64_json"})
    );
    assert!(api.calls(OPENROUTER_PATH).is_empty(), "routed by the dall-e- prefix");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_content_policy_refusal_fails_at_once_with_the_providers_words() {
    let api = FakeApi::start().await;
    api.respond(
        OPENAI_PATH,
        vec![FakeResponse::error(400, "Your request was rejected as a result of our safety system.")],
    );
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;

    let response = app.post_generate(json!({"prompt": "something forbidden", "model": "gpt-image-1"})).await;

    assert_eq!(response.status(), 502);
    let error = body(response).await["error"].as_str().unwrap().to_string();
    assert!(error.contains("400 Bad Request: Your request was rejected as a result of our safety system."), "{error}");
    assert_eq!(api.calls(OPENAI_PATH).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_strict_mode_an_option_the_model_cannot_honour_is_refused_with_a_400_before_any_call() {
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    let app = TestApp::spawn_with(|config, _| {
        api.configure(config);
        config.server.strict_options = true;
    })
    .await;

    let response = app.post_generate(json!({"prompt": "a cat", "negative_prompt": "dogs"})).await;

    assert_eq!(response.status(), 400);
    let error = body(response).await["error"].as_str().unwrap().to_string();
    assert!(error.contains("negative_prompt is not supported by openrouter"), "{error}");
    assert!(api.calls(OPENROUTER_PATH).is_empty());

    // A supported one is passed through.
    assert_eq!(app.post_generate(json!({"prompt": "a cat", "seed": 42})).await.status(), 200);
    assert_eq!(api.calls(OPENROUTER_PATH)[0].body["seed"], 42);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_routed_to_a_provider_without_a_key_is_refused_clearly() {
    let app = TestApp::spawn().await;

    let response = app.post_generate(json!({"prompt": "a cat", "model": "dall-e-3"})).await;

    assert_eq!(response.status(), 400);
    let error = body(response).await["error"].as_str().unwrap().to_string();
    assert!(error.contains("served by openai") && error.contains("OPENAI_API_KEY"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_to_one_provider_stay_within_its_concurrency_limit() {
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    api.set_delay(Duration::from_millis(300));
    let app = TestApp::spawn_with(|config, _| {
        api.configure(config);
        config.openrouter.max_concurrency = 2;
        config.generator.concurrency = 6;
        config.smtp.enable = false;
    })
    .await;

    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(app.submit(json!({"prompt": format!("picture {n}")})).await);
    }
    for id in &ids {
        assert_eq!(app.wait_for_job(id).await["status"], "completed");
    }
    assert_eq!(api.calls(OPENROUTER_PATH).len(), 6);
    assert_eq!(api.max_in_flight(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_model_is_not_called_twice_while_the_first_call_still_runs() {
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    api.set_delay(Duration::from_secs(4));
    let app = TestApp::spawn_with(|config, _| {
        api.configure(config);
        // Far shorter than the call: only progress acks keep the message from redelivery.
        config.nats.ack_wait = Duration::from_secs(1);
    })
    .await;

    assert_eq!(app.post_generate(json!({"prompt": "take your time"})).await.status(), 200);

    app.wait_until_consumer_idle("generator").await;
    assert_eq!(api.calls(OPENROUTER_PATH).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn translate_answers_in_the_original_shape() {
    let api = FakeApi::start().await;
    api.respond(MODELSCOPE_PATH, vec![FakeResponse::ok(chat_text("a cat on the moon"))]);
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;
    let unconfigured = TestApp::spawn().await;

    for path in ["/translate", "/api/translate"] {
        let response =
            app.http.post(format!("{}{path}", app.address)).json(&json!({"text": "月球上的猫"})).send().await.unwrap();
        assert_eq!(body(response).await, json!({"translated_text": "a cat on the moon", "success": true}));
    }
    let response = unconfigured
        .http
        .post(format!("{}/translate", unconfigured.address))
        .json(&json!({"text": "猫"}))
        .send()
        .await
        .unwrap();
    let answer = body(response).await;
    assert_eq!((answer["translated_text"].as_str(), answer["success"].as_bool()), (Some("猫"), Some(false)));
    let bad = app.http.post(format!("{}/translate", app.address)).json(&json!({"words": "x"})).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    // Text without Chinese comes back as it is, and the model is not asked (as the original).
    let english =
        app.http.post(format!("{}/translate", app.address)).json(&json!({"text": "a cat"})).send().await.unwrap();
    assert_eq!(body(english).await, json!({"translated_text": "a cat", "success": true}));
    assert_eq!(api.calls(MODELSCOPE_PATH).len(), 2, "one call for each Chinese text only");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_whose_provider_answers_503_every_time_falls_back_and_the_record_says_which_drew_it() {
    use base64::Engine;
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::error(503, "no capacity")]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(tiny_png());
    api.respond(OPENAI_PATH, vec![FakeResponse::ok(json!({"created": 1, "data": [{"b64_json": b64}]}))]);
    let app = TestApp::spawn_with(|config, _| {
        api.configure(config);
        config.generator.max_attempts = 2;
        let fallback = huiying::config::ModelSettings { fallback: vec!["gpt-image-1".into()] };
        config.models.each.insert("google/gemini-2.5-flash-image".into(), fallback);
    })
    .await;

    let response = app.post_generate(json!({"prompt": "a lighthouse", "model": "google/gemini-2.5-flash-image"})).await;

    assert_eq!(response.status(), 200);
    let answer = body(response).await;
    assert_eq!(api.calls(OPENROUTER_PATH).len(), 2, "the model's own retries first");
    assert_eq!(api.calls(OPENAI_PATH).len(), 1);
    let id = answer["id"].as_str().unwrap();
    let record: serde_json::Value =
        app.http.get(format!("{}/records/{id}", app.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(record["model"], "gpt-image-1", "{record}");
    assert_eq!(record["fallback"]["requested_model"], "google/gemini-2.5-flash-image");
    let reason = record["fallback"]["reason"].as_str().unwrap();
    assert!(reason.contains("503") && reason.contains("no capacity"), "{reason}");
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.text.contains("gpt-image-1"), "the mail names the model that drew it: {}", mail.text);

    // A content refusal is the model's answer, not an outage: no fallback.
    api.respond(OPENROUTER_PATH, vec![FakeResponse::error(400, "Request blocked by the safety filter")]);
    let refused = app.post_generate(json!({"prompt": "forbidden", "model": "google/gemini-2.5-flash-image"})).await;
    assert_eq!(refused.status(), 502);
    assert_eq!(api.calls(OPENAI_PATH).len(), 1, "the fallback was not asked");
}

#[tokio::test(flavor = "multi_thread")]
async fn extra_parameters_reach_the_model_where_its_provider_allows_them_and_others_are_named() {
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;

    let response = app
        .post_generate(json!({"prompt": "a wide valley", "model": "google/gemini-2.5-flash-image",
            "extra": {"image_config": {"aspect_ratio": "16:9"}, "guidance": 7}}))
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["huiying-ignored"], "extra.guidance");
    let sent = &api.calls(OPENROUTER_PATH)[0].body;
    assert_eq!(sent["image_config"], json!({"aspect_ratio": "16:9"}), "{sent}");
    assert!(sent.get("guidance").is_none(), "{sent}");

    // More than twenty is refused at the door.
    let too_many: serde_json::Map<String, serde_json::Value> = (0..21).map(|i| (format!("p{i}"), json!(i))).collect();
    let refused = app.post_generate(json!({"prompt": "a valley", "extra": too_many})).await;
    assert_eq!(refused.status(), 400);
    assert!(body(refused).await["error"].as_str().unwrap().contains("extra holds at most 20"));
}

//! Asking for a picture over HTTP or straight over NATS, and getting it.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{FakeApi, FakeResponse, MAIL_TO, OPENROUTER_PATH, TestApp, openrouter_image, tiny_png, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_posted_to_ingest_comes_back_with_a_url_an_image_a_record_and_one_email() {
    let app = TestApp::spawn().await;

    let response = app.post_generate(json!({"prompt": "a lighthouse at dawn, watercolor"})).await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_string();
    let url = body["data"][0]["url"].as_str().unwrap().to_string();
    assert!(body["created"].as_i64().unwrap() > 1_700_000_000);
    assert!(url.starts_with(&format!("{}/static/images/huiying_image_", app.address)), "{url}");
    assert!(url.ends_with("_lighthouse_dawn_watercolor.jpg"), "{url}");

    let picture = app.http.get(&url).send().await.unwrap();
    assert_eq!(picture.status(), 200);
    assert_eq!(picture.headers()["content-type"], "image/jpeg");
    let decoded = image::load_from_memory(&picture.bytes().await.unwrap()).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (512, 512));

    let records = app.records();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record["job_id"], id);
    assert_eq!(record["original_prompt"], "a lighthouse at dawn, watercolor");
    assert_eq!(record["model"], "huiying/placeholder");
    assert_eq!(
        (record["width"].as_str(), record["height"].as_str(), record["format"].as_str()),
        ("512", "512", "jpeg")
    );
    assert!(record["local_path"].ends_with(url.rsplit('/').next().unwrap()));

    let mails = app.smtp.wait_for_mails(1).await;
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), 1, "exactly one mail");
    let mail = &mails[0];
    assert!(mail.session.starts_with("mode=starttls; auth=sender@example.com"), "{}", mail.session);
    assert_eq!(mail.to, vec![MAIL_TO.to_string()]);
    assert_eq!(mail.from, crate::helpers::SMTP_USER);
    assert_eq!(mail.from_name, "绘影", "a Chinese display name survives RFC 2047 encoding");
    assert!(mail.subject.starts_with("绘影：图片已生成"), "{}", mail.subject);
    assert!(mail.html.contains("a lighthouse at dawn, watercolor"));
    assert!(mail.html.contains(&format!("href=\"{url}\"")), "the mail links the same absolute URL");
    assert!(mail.text.contains(&url));
    assert!(mail.text.contains("512 × 512") && mail.text.contains("JPEG"));
    assert!(mail.content_types.contains(&"text/plain".to_string()));
    assert!(mail.content_types.contains(&"text/html".to_string()));
    assert!(mail.message_id.contains(&id));

    let job: serde_json::Value = app.get_job(&id).await.json().await.unwrap();
    assert_eq!(job["status"], "completed");
    assert_eq!(job["result"]["url"], url.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_cannot_be_reached_ends_as_failed_with_the_error_and_one_failure_email() {
    let closed_port = crate::helpers::free_port();
    let app = TestApp::spawn_with(|config, _| {
        config.api_keys.openrouter_api_key = huiying::config::Secret::new("sk-or-test-key");
        config.openrouter.base_url = format!("http://127.0.0.1:{closed_port}/api/v1");
        config.generator.max_attempts = 2;
    })
    .await;

    let response = app.post_generate(json!({"prompt": "一只在月球上的猫"})).await;

    assert_eq!(response.status(), 502);
    let body: serde_json::Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("could not be reached"), "{error}");
    assert!(!error.contains("sk-or-test-key"));
    let id = body["id"].as_str().unwrap();

    let job = app.wait_for_job(id).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"]["stage"], "generate");
    assert_eq!(job["error"]["attempts"], 2);

    let mails = app.smtp.wait_for_mails(1).await;
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), 1, "exactly one failure mail");
    assert!(mails[0].subject.starts_with("绘影：图片生成失败"), "{}", mails[0].subject);
    assert!(mails[0].html.contains("一只在月球上的猫"));
    assert!(mails[0].text.contains("could not be reached"));
    assert!(mails[0].text.contains("生成图片"));
    assert!(app.records().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_published_straight_to_nats_gets_an_id_and_ends_in_an_email() {
    let app = TestApp::spawn().await;

    app.publish("image.requested", r#"{"prompt": "straight from NATS"}"#).await;

    let mails = app.smtp.wait_for_mails(1).await;
    assert!(mails[0].html.contains("straight from NATS"));
    let records = wait_for("the record", Duration::from_secs(10), || async {
        let records = app.records();
        (!records.is_empty()).then_some(records)
    })
    .await;
    let id = &records[0]["job_id"];
    assert_eq!(id.len(), 36, "an id is assigned: {id}");
    let job: serde_json::Value = app.get_job(id).await.json().await.unwrap();
    assert_eq!(job["status"], "completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn prefer_respond_async_answers_202_at_once_and_the_status_url_follows_the_job() {
    let app = TestApp::spawn().await;

    let response = app.request_async(json!({"prompt": "a paper boat"})).send().await.unwrap();

    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert_eq!(body["status_url"], format!("{}/jobs/{id}", app.address));
    let job = app.wait_for_job(id).await;
    assert_eq!(job["status"], "completed");
    assert!(job["result"]["url"].as_str().unwrap().starts_with("http://127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_wait_times_out_ingest_answers_202_with_a_status_url() {
    let mut app = TestApp::spawn_with(|config, _| config.server.timeout = Duration::from_secs(1)).await;
    app.stop_service("generator").await;

    let response = app.post_generate(json!({"prompt": "nobody is drawing"})).await;

    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    let job: serde_json::Value = app.get_job(id).await.json().await.unwrap();
    assert_eq!(job["status"], "queued");

    // The job was not lost: a generator that comes back finishes it.
    app.start_service("generator");
    assert_eq!(app.wait_for_job(id).await["status"], "completed");
}

#[tokio::test(flavor = "multi_thread")]
async fn openrouter_is_called_with_its_wire_format_and_a_5_mb_picture_passes_through() {
    // Noise does not compress: a PNG of over 5 MB.
    let mut noise = image::RgbImage::new(1400, 1300);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for pixel in noise.pixels_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *pixel = image::Rgb([seed as u8, (seed >> 8) as u8, (seed >> 16) as u8]);
    }
    let mut png = std::io::Cursor::new(Vec::new());
    noise.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let png = png.into_inner();
    assert!(png.len() > 5_000_000, "{} bytes", png.len());
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&png))]);
    let app = TestApp::spawn_with(|config, _| {
        api.configure(config);
        config.openrouter.http_referer = "https://huiying.example".into();
    })
    .await;

    let response = app.post_generate(json!({"prompt": "static noise"})).await;

    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let picture = app.http.get(body["data"][0]["url"].as_str().unwrap()).send().await.unwrap();
    let decoded = image::load_from_memory(&picture.bytes().await.unwrap()).unwrap();
    // Shrunk to fit 1920x1080 with the aspect ratio kept.
    assert_eq!((decoded.width(), decoded.height()), (1163, 1080));

    let requests = api.calls(OPENROUTER_PATH);
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.headers["authorization"], "Bearer sk-or-test-key");
    assert_eq!(request.headers["http-referer"], "https://huiying.example");
    assert_eq!(request.headers["x-title"], "huiying");
    assert_eq!(request.body["model"], "google/gemini-2.5-flash-image-preview:free");
    assert_eq!(request.body["modalities"], json!(["image", "text"]));
    assert_eq!(request.body["messages"][0]["content"], json!([{"type": "text", "text": "static noise"}]));
    assert_eq!(app.records()[0]["model"], "google/gemini-2.5-flash-image-preview:free");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_generators_share_the_work_and_no_job_is_drawn_twice() {
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    let mut app = TestApp::spawn_with(|config, _| {
        api.configure(config);
        config.smtp.enable = false;
    })
    .await;
    app.start_service("generator");
    app.start_service("store");

    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(app.submit(json!({"prompt": format!("picture number {n}")})).await);
    }
    for id in &ids {
        assert_eq!(app.wait_for_job(id).await["status"], "completed");
    }
    app.wait_until_consumer_idle("generator").await;

    assert_eq!(api.calls(OPENROUTER_PATH).len(), 20, "each job drawn once");
    assert_eq!(app.records().len(), 20, "one record per job");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_idempotency_key_even_sent_eight_times_at_once_makes_one_job() {
    let app = TestApp::spawn().await;
    let post = |key: String, prompt: &'static str| {
        app.http
            .post(format!("{}/generate-image", app.address))
            .header("Idempotency-Key", key)
            .json(&json!({"prompt": prompt}))
            .send()
    };

    let answers = futures::future::join_all((0..8).map(|_| post("retry-me-1".into(), "only once, please"))).await;

    let mut ids = Vec::new();
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 200);
        ids.push(answer.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one job for one key");
    let again = post("retry-me-1".into(), "only once, please").await.unwrap();
    assert_eq!(again.json::<serde_json::Value>().await.unwrap()["id"], ids[0].as_str());
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.records().len(), 1);
    assert_eq!(app.smtp.mails().len(), 1);

    let reused = post("retry-me-1".into(), "something else").await.unwrap();
    assert_eq!(reused.status(), 422);
    assert!(reused.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().contains("different request"));
    let too_long = post("k".repeat(300), "x").await.unwrap();
    assert_eq!(too_long.status(), 400);
    assert_eq!(app.records().len(), 1, "no job from refused requests");
}

//! Secrets never leave the configuration: not in logs, events, job states, records, mails
//! or answers, even when a provider echoes a key back in its error.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use crate::helpers::{
    FakeApi, FakeResponse, MODELSCOPE_PATH, OPENAI_PATH, OPENROUTER_PATH, S3Server, SMTP_PASSWORD, TestApp,
    WebhookReceiver, free_port, openrouter_image, tiny_png, wait_for,
};

const OPENROUTER_KEY: &str = "sk-or-canary-41d2e8";
const OPENAI_KEY: &str = "sk-oa-canary-19bc77";
const MODELSCOPE_TOKEN: &str = "ms-canary-88aa31";
const R2_SECRET: &str = "r2-canary-5e6f02";
const WRONG_SMTP_PASSWORD: &str = "smtp-canary-wrong-0c9d";
const API_KEY: &str = "hy-api-canary-7f3e21";
const WRONG_API_KEY: &str = "hy-api-canary-wrong-2b8d";
/// Webhook signing secrets: base64 of "canary-webhook-endpoint-3d1" and "canary-webhook-request-9e4".
const ENDPOINT_SECRET: &str = "whsec_Y2FuYXJ5LXdlYmhvb2stZW5kcG9pbnQtM2Qx";
const REQUEST_SECRET: &str = "whsec_Y2FuYXJ5LXdlYmhvb2stcmVxdWVzdC05ZTQ=";

#[tokio::test(flavor = "multi_thread")]
async fn canary_secrets_appear_nowhere_even_when_providers_echo_them() {
    let api = FakeApi::start().await;
    // Providers that echo the key in their errors, as OpenAI's 401 does.
    api.respond(
        OPENROUTER_PATH,
        vec![
            FakeResponse::error(401, &format!("Incorrect API key provided: {OPENROUTER_KEY}")),
            FakeResponse::ok(openrouter_image(&tiny_png())),
        ],
    );
    api.respond(OPENAI_PATH, vec![FakeResponse::error(401, &format!("Incorrect API key provided: {OPENAI_KEY}"))]);
    api.respond(MODELSCOPE_PATH, vec![FakeResponse::error(401, &format!("token {MODELSCOPE_TOKEN} is invalid"))]);
    let s3 = S3Server::start().await;
    let receiver = WebhookReceiver::start(&[]).await;
    let (hook, allowed) = (receiver.url("/canary"), receiver.base.clone());
    let mut app = TestApp::spawn_with(|config, _| {
        config.webhooks.allow_private = true;
        config.webhooks.allowed_urls = vec![allowed];
        config.webhooks.request_secret = vec![huiying::config::Secret::new(REQUEST_SECRET)];
        config.webhooks.endpoints = vec![huiying::config::EndpointConfig {
            name: "canary".into(),
            url: hook,
            secret: Vec::new(),
            // The secret comes from the environment, as the README recommends.
            secret_env: "HUIYING_WEBHOOK_CANARY".into(),
            events: vec!["image.completed".into(), "image.failed".into()],
            headers: Default::default(),
            enabled: true,
        }];
        api.configure(config);
        s3.configure(config);
        config.api_keys.openrouter_api_key = huiying::config::Secret::new(OPENROUTER_KEY);
        config.api_keys.openai_api_key = huiying::config::Secret::new(OPENAI_KEY);
        config.api_keys.model_scope_token = huiying::config::Secret::new(MODELSCOPE_TOKEN);
        config.cloudflare_r2.access_key_secret = huiying::config::Secret::new(R2_SECRET);
        config.server.api_keys = vec![huiying::config::Secret::new(API_KEY)];
        config.logging.level = "debug".into();
    })
    .await;
    for service in ["ingest", "generator", "store", "mailer", "webhook"] {
        app.stop_service(service).await;
    }

    // The real program, logging at debug level into a file.
    let port = free_port();
    app.config.server.port = port;
    app.config.server.public_url = format!("http://127.0.0.1:{port}");
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut up = Command::new(env!("CARGO_BIN_EXE_huiying"))
        .arg("--config")
        .arg(app.config_file())
        .arg("up")
        .env_remove("HUIYING_CONFIG")
        .env_remove("RUST_LOG")
        .env("HUIYING_WEBHOOK_CANARY", ENDPOINT_SECRET)
        .stdout(Stdio::from(log.reopen().unwrap()))
        .stderr(Stdio::from(log.reopen().unwrap()))
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_for("huiying up", Duration::from_secs(30), || async {
        app.http.get(format!("{base}/health")).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;

    let mut answers = String::new();
    for body in [
        json!({"prompt": "一只猫"}),           // translation echoes, then OpenRouter echoes: fails
        json!({"prompt": "a cat that works"}), // drawn and uploaded to R2
        json!({"prompt": "a fox", "model": "dall-e-3"}), // OpenAI echoes: fails
        json!({"prompt": "a hooked cat", "webhook": receiver.url("/own")}), // its own webhook
    ] {
        let request = app.http.post(format!("{base}/generate-image")).bearer_auth(API_KEY).json(&body);
        answers.push_str(&request.send().await.unwrap().text().await.unwrap());
    }
    let refused = app.http.get(format!("{base}/records")).bearer_auth(WRONG_API_KEY).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    answers.push_str(&refused.text().await.unwrap());
    let translated = app
        .http
        .post(format!("{base}/translate"))
        .bearer_auth(API_KEY)
        .json(&json!({"text": "猫"}))
        .send()
        .await
        .unwrap();
    answers.push_str(&translated.text().await.unwrap());
    app.smtp.wait_for_mails(4).await;
    receiver.wait_for_hooks("/canary", 4).await;
    receiver.wait_for_hooks("/own", 1).await;
    let webhook_login = [
        ("NATS_USER", "webhook".to_string()),
        ("NATS_PASSWORD", crate::helpers::nats_password("webhook")),
        ("HUIYING_WEBHOOK_CANARY", ENDPOINT_SECRET.to_string()),
    ];
    let webhook_login: Vec<(&str, &str)> = webhook_login.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for command in [&["webhooks", "list"][..], &["webhooks", "deliveries"], &["webhooks", "test", "canary"]] {
        let output = app.huiying(command, &webhook_login);
        assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
        answers.push_str(&String::from_utf8_lossy(&output.stdout));
        answers.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    for path in ["/webhooks", "/webhooks/deliveries"] {
        let view = app.http.get(format!("{base}{path}")).bearer_auth(API_KEY).send().await.unwrap();
        answers.push_str(&view.text().await.unwrap());
    }
    let mail_test = app.huiying(&["mail", "test"], &[("SMTP_PASSWORD", WRONG_SMTP_PASSWORD)]);
    answers.push_str(&String::from_utf8_lossy(&mail_test.stdout));
    answers.push_str(&String::from_utf8_lossy(&mail_test.stderr));
    Command::new("kill").args(["-TERM", &up.id().to_string()]).status().unwrap();
    up.wait().unwrap();

    // Everything a user, an operator or a subscriber could ever see.
    let mut haystack = std::fs::read_to_string(log.path()).unwrap();
    assert!(haystack.contains("DEBUG"), "the log ran at debug level");
    haystack.push_str(&answers);
    let js = async_nats::jetstream::new(app.nats.clone());
    for stream_name in
        [huiying::contract::STREAM, huiying::contract::DEAD_LETTER_STREAM, huiying::contract::webhooks::WEBHOOK_STREAM]
    {
        let mut stream = js.get_stream(stream_name).await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        for sequence in 1..=last {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                haystack.push_str(&String::from_utf8_lossy(&message.payload));
                haystack.push_str(&format!("{:?}", message.headers));
            }
        }
    }
    for bucket in [
        huiying::contract::JOBS_BUCKET,
        huiying::contract::MAIL_BUCKET,
        huiying::contract::IDEMPOTENCY_BUCKET,
        huiying::contract::webhooks::WEBHOOK_DELIVERIES_BUCKET,
        huiying::contract::webhooks::WEBHOOK_ENDPOINTS_BUCKET,
    ] {
        let store = js.get_key_value(bucket).await.unwrap();
        let keys: Vec<String> = store.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
        for key in keys {
            haystack.push_str(&String::from_utf8_lossy(&store.get(&key).await.unwrap().unwrap_or_default()));
        }
    }
    haystack.push_str(&format!("{:?}", app.records()));
    for mail in app.smtp.raw_mails() {
        haystack.push_str(&mail);
    }

    // The echoes did happen (so the check below means something) and were redacted.
    assert!(haystack.contains("Incorrect API key provided: ***"), "the providers' echoes are in the events, redacted");
    assert!(haystack.contains("pics.example.com"), "the R2 upload happened");
    assert!(haystack.contains("webhook-id") || haystack.contains("msg_"), "the webhook deliveries are in the haystack");
    for hook in receiver.hooks() {
        haystack.push_str(&format!("{:?}", hook));
    }
    let nats_password = crate::helpers::nats_password("admin");
    for canary in [
        OPENROUTER_KEY,
        OPENAI_KEY,
        MODELSCOPE_TOKEN,
        R2_SECRET,
        WRONG_SMTP_PASSWORD,
        SMTP_PASSWORD,
        API_KEY,
        WRONG_API_KEY,
        &nats_password,
        ENDPOINT_SECRET,
        REQUEST_SECRET,
        "Y2FuYXJ5LXdlYmhvb2st",
        "canary-webhook",
    ] {
        assert!(!haystack.contains(canary), "{canary} leaked");
    }
}

//! `huiying config check`: against the real servers of a test (NATS with logins, SMTP with
//! STARTTLS and AUTH, S3, the records database, fake model providers) every line is ok;
//! then each broken dependency is named on a line of its own, and no secret is printed.

use huiying::config::Language;
use serde_json::json;

use crate::helpers::{FakeApi, FakeResponse, S3Server, SMTP_PASSWORD, TestApp, free_port, nats_password};

/// `huiying config check` with `env` over the test's configuration: exit status and lines.
fn check(app: &TestApp, env: &[(&str, &str)]) -> (bool, Vec<String>) {
    let output = app.huiying(&["config", "check"], env);
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    for secret in [SMTP_PASSWORD, "sk-or-test-key", "sk-openai-test-key", "ms-test-token", "test-secret-key"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "a secret was printed:\n{stdout}{stderr}");
    }
    (output.status.success(), stdout.lines().map(String::from).collect())
}

fn line<'a>(lines: &'a [String], item: &str) -> &'a str {
    lines.iter().find(|l| l.contains(item)).unwrap_or_else(|| panic!("no line for {item}: {lines:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dependency_is_tried_and_each_broken_one_is_named_on_its_own_line() {
    let api = FakeApi::start().await;
    for path in ["/api/v1/key", "/v1/models", "/modelscope/v1/models"] {
        api.respond(path, vec![FakeResponse::ok(json!({"data": []}))]);
    }
    let s3 = S3Server::start().await;
    let app = TestApp::spawn_with(|config, _| {
        api.configure(config);
        s3.configure(config);
        config.smtp.language = Language::En;
    })
    .await;
    let admin = nats_password("admin");
    let as_admin = [("NATS_USER", "admin"), ("NATS_PASSWORD", admin.as_str())];

    let (passed, lines) = check(&app, &as_admin);
    assert!(passed, "{lines:#?}");
    for item in ["NATS", "SMTP", "database", "R2 / S3", "OpenRouter", "OpenAI", "ModelScope"] {
        assert!(line(&lines, item).starts_with("ok"), "{item}: {lines:#?}");
    }
    assert!(line(&lines, "NATS").contains("stream HUIYING there"), "{lines:#?}");

    // Four things broken at once: each named, with its cause; the rest still ok.
    api.respond("/api/v1/key", vec![FakeResponse::error(401, "No auth credentials found")]);
    let dead = format!("nats://127.0.0.1:{}", free_port());
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let broken = [
        ("NATS_USER", "admin"),
        ("NATS_PASSWORD", admin.as_str()),
        ("NATS_URL", dead.as_str()),
        ("SMTP_PASSWORD", "not-the-password"),
        ("CLOUDFLARE_R2_ENDPOINT", nowhere.as_str()),
    ];
    let (passed, lines) = check(&app, &broken);
    assert!(!passed, "{lines:#?}");
    assert!(line(&lines, "NATS").starts_with("FAILED"), "{lines:#?}");
    let smtp = line(&lines, "SMTP");
    assert!(smtp.starts_with("FAILED") && smtp.contains("username and password"), "{smtp}");
    assert!(line(&lines, "R2 / S3").starts_with("FAILED"), "{lines:#?}");
    let openrouter = line(&lines, "OpenRouter");
    assert!(openrouter.starts_with("FAILED") && openrouter.contains("401"), "{openrouter}");
    assert!(line(&lines, "database").starts_with("ok"), "{lines:#?}");
    assert!(line(&lines, "OpenAI").starts_with("ok"), "{lines:#?}");
}

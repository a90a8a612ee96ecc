//! The web page in a real browser: tests/browser/page_test.py drives Debian's chromium
//! (through playwright) against the pipeline started here. Screenshots of each view,
//! desktop and phone, go to `target/screenshots/` on every run.

use std::path::Path;
use std::process::Command;

use crate::helpers::{FakeApi, FakeResponse, MODELSCOPE_PATH, OPENAI_PATH, REPO, TestApp, chat_text};

fn run_page_test(scenario: &str, address: &str) {
    let screenshots = Path::new(REPO).join("target/screenshots");
    let output = Command::new("python3")
        .arg(Path::new(REPO).join("tests/browser/page_test.py"))
        .args([scenario, address, screenshots.to_str().unwrap()])
        .output()
        .expect("python3 with playwright (scripts/install-test-deps.sh)");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser story {scenario} failed:\n{stdout}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_creates_watches_finds_and_opens_a_picture_in_the_browser() {
    let fake = FakeApi::start().await;
    let app = TestApp::spawn_with(|config, _| fake.configure(config)).await;
    fake.respond(MODELSCOPE_PATH, vec![FakeResponse::ok(chat_text("a red fox in the snow"))]);
    fake.respond(
        OPENAI_PATH,
        vec![FakeResponse::error(400, "Your request was rejected as a result of our safety system.")],
    );
    let address = app.address.clone();
    tokio::task::spawn_blocking(move || run_page_test("main", &address)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_api_keys_the_page_asks_for_one_and_then_works() {
    let app = TestApp::spawn_with(|config, _| {
        config.server.api_keys = vec![huiying::config::Secret::new("hy-browser-key")];
    })
    .await;
    let address = app.address.clone();
    tokio::task::spawn_blocking(move || run_page_test("keys", &address)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn each_key_sees_its_own_gallery_an_admin_all_and_an_owner_deletes_a_picture() {
    let app = TestApp::spawn_with(|config, _| {
        let key = |name: &str, admin| huiying::config::KeyConfig {
            name: name.into(),
            key: huiying::config::Secret::new(format!("{name}-key")),
            admin,
            ..Default::default()
        };
        config.server.keys = vec![key("design", false), key("ops", false), key("root", true)];
    })
    .await;
    let ops = app
        .http
        .post(format!("{}/generate-image", app.address))
        .bearer_auth("ops-key")
        .json(&serde_json::json!({"prompt": "a grey wolf"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ops.status(), 200);
    let address = app.address.clone();
    tokio::task::spawn_blocking(move || run_page_test("owners", &address)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_sees_its_spend_per_day_under_its_budget_line() {
    let fake = FakeApi::start().await;
    let mut answer = crate::helpers::openrouter_image(&crate::helpers::tiny_png());
    answer["usage"] = serde_json::json!({"cost": 0.039});
    fake.respond(crate::helpers::OPENROUTER_PATH, vec![FakeResponse::ok(answer)]);
    let app = TestApp::spawn_with(|config, _| {
        fake.configure(config);
        config.server.keys = vec![huiying::config::KeyConfig {
            name: "design".into(),
            key: huiying::config::Secret::new("design-key"),
            daily_budget_usd: 0.39,
            ..Default::default()
        }];
    })
    .await;
    for _ in 0..2 {
        let drawn = app
            .http
            .post(format!("{}/generate-image", app.address))
            .bearer_auth("design-key")
            .json(&serde_json::json!({"prompt": "a fox", "model": "google/gemini-2.5-flash-image"}))
            .send()
            .await
            .unwrap();
        assert_eq!(drawn.status(), 200);
    }
    let address = app.address.clone();
    tokio::task::spawn_blocking(move || run_page_test("spend", &address)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_uploads_a_picture_runs_a_style_transfer_and_finds_it_in_the_edit_records() {
    let app = TestApp::spawn().await;
    let address = app.address.clone();
    tokio::task::spawn_blocking(move || run_page_test("edit", &address)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_compares_three_models_side_by_side_and_picks_one_which_the_gallery_marks() {
    let fake = FakeApi::start().await;
    let mut answer = crate::helpers::openrouter_image(&crate::helpers::tiny_png());
    answer["usage"] = serde_json::json!({"cost": 0.039});
    fake.respond(crate::helpers::OPENROUTER_PATH, vec![FakeResponse::ok(answer)]);
    fake.respond(OPENAI_PATH, vec![FakeResponse::error(400, "Your request was rejected by the safety system.")]);
    let app = TestApp::spawn_with(|config, _| fake.configure(config)).await;
    let address = app.address.clone();
    tokio::task::spawn_blocking(move || run_page_test("compare", &address)).await.unwrap();
}

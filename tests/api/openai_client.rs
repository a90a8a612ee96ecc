//! Programs that speak OpenAI's Images API use huiying by changing their base URL: the
//! official `openai` Python package (from PyPI) is the client here.

use crate::helpers::TestApp;

const CLIENT: &str = r#"
import base64, json, sys
import openai

client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="any key: this server has none", max_retries=0)
linked = client.images.generate(model="huiying/placeholder", prompt="a lighthouse at dawn", response_format="url")
inline = client.images.generate(
    model="huiying/placeholder", prompt="a lighthouse at dusk", response_format="b64_json", size="256x256"
)
picture = base64.b64decode(inline.data[0].b64_json)
two = client.images.generate(model="huiying/placeholder", prompt="two lighthouses", n=2)
try:
    client.images.generate(model="huiying/placeholder", prompt="   ")
    refused = None
except openai.BadRequestError as error:
    refused = {"status": error.status_code, "message": error.message}
print(json.dumps({
    "url": linked.data[0].url,
    "revised_prompt": linked.data[0].revised_prompt,
    "picture_head": picture[:3].hex(),
    "refused": refused,
    "models": [model.id for model in client.models.list()],
    "two": sorted({picture.url for picture in two.data}),
}))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_official_openai_client_generates_pictures_and_gets_its_own_error_class() {
    let app = TestApp::spawn().await;
    let address = app.address.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args(["-c", CLIENT, &address]).output().expect("python3 runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the openai client failed: {stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    let url = seen["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/static/images/huiying_image_", app.address)), "{url}");
    assert_eq!(seen["revised_prompt"], "a lighthouse at dawn");
    assert_eq!(seen["picture_head"], "ffd8ff", "a JPEG in the answer itself");
    assert_eq!(seen["refused"]["status"], 400, "{seen}");
    assert!(seen["refused"]["message"].as_str().unwrap().contains("prompt"), "{seen}");
    assert!(seen["models"].as_array().unwrap().contains(&serde_json::json!("huiying/placeholder")));
    assert_eq!(seen["two"].as_array().unwrap().len(), 2, "n=2: two different pictures: {seen}");
}

/// The official client at its defaults (two retries, 600 s timeout), or with `timeout`.
const SLOW_MODEL_CLIENT: &str = r#"
import json, sys
import openai

options = {} if sys.argv[2] == "default" else {"timeout": float(sys.argv[2])}
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="any key: this server has none", **options)
picture = client.images.generate(model="dall-e-3", prompt="a slow lighthouse", response_format="url")
print(json.dumps({"url": picture.data[0].url}))
"#;

/// A pipeline whose `[server] timeout` is 1 s, on a model that takes `delay` per picture.
async fn slow_model(delay: std::time::Duration) -> (TestApp, crate::helpers::FakeApi) {
    let fake = crate::helpers::FakeApi::start().await;
    let app = TestApp::spawn_with(|config, _| {
        fake.configure(config);
        config.server.timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, crate::helpers::tiny_png());
    let answer = || crate::helpers::FakeResponse::ok(serde_json::json!({"created": 1, "data": [{"b64_json": b64}]}));
    fake.respond(crate::helpers::OPENAI_PATH, vec![answer(), answer(), answer()]);
    fake.set_delay(delay);
    (app, fake)
}

async fn run_client(app: &TestApp, timeout: &str) -> serde_json::Value {
    let (address, timeout) = (app.address.clone(), timeout.to_string());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args(["-c", SLOW_MODEL_CLIENT, &address, &timeout]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(output.status.success(), "the openai client failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_slower_than_the_server_timeout_is_paid_for_once_by_the_official_client_at_its_defaults() {
    let (app, fake) = slow_model(std::time::Duration::from_secs(4)).await;
    let seen = run_client(&app, "default").await;
    assert!(seen["url"].as_str().unwrap().contains("/static/images/"), "{seen}");
    assert_eq!(fake.calls(crate::helpers::OPENAI_PATH).len(), 1, "one picture drawn, one paid for");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_times_out_and_calls_again_joins_the_job_its_first_call_started() {
    // The client gives up after 2 s and calls again (twice); the model takes 5 s.
    let (app, fake) = slow_model(std::time::Duration::from_secs(5)).await;
    let seen = run_client(&app, "2").await;
    assert!(seen["url"].as_str().unwrap().contains("/static/images/"), "{seen}");
    assert_eq!(fake.calls(crate::helpers::OPENAI_PATH).len(), 1, "the retries joined the first job");
}

const BUDGET_CLIENT: &str = r#"
import json, sys
import openai

client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="any key: this server has none", max_retries=0)
client.images.generate(model="huiying/placeholder", prompt="a lighthouse at dawn")
try:
    client.images.generate(model="huiying/placeholder", prompt="a lighthouse at dusk")
    refused = None
except openai.APIStatusError as error:
    refused = {"status": error.status_code, "code": error.code, "type": error.type, "message": error.message}
print(json.dumps({"refused": refused}))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn over_its_budget_the_official_client_gets_a_402_saying_so() {
    let app = TestApp::spawn_with(|config, _| {
        // The placeholder priced, so that a budget of $0.30 holds one picture.
        config.prices = toml::from_str(r#""huiying/placeholder" = 0.25"#).unwrap();
        config.budget.daily_usd = 0.30;
    })
    .await;
    let address = app.address.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args(["-c", BUDGET_CLIENT, &address]).output().expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "the openai client failed: {}", String::from_utf8_lossy(&output.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let refused = &seen["refused"];
    assert_eq!((refused["status"].as_u64(), refused["code"].as_str()), (Some(402), Some("budget_exceeded")), "{seen}");
    assert_eq!(refused["type"], "insufficient_quota");
    assert!(refused["message"].as_str().unwrap().contains("daily budget of $0.30"), "{seen}");
}

const GPT_IMAGE_CLIENT: &str = r#"
import json, sys
import openai

client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="any key: this server has none", max_retries=0)
drawn = client.images.with_raw_response.generate(
    model="gpt-image-1", prompt="a lighthouse", background="transparent", output_format="webp",
    output_compression=80, moderation="low",
)
placeholder = client.images.with_raw_response.generate(
    model="huiying/placeholder", prompt="a lighthouse", background="transparent",
)
print(json.dumps({"drawn": drawn.parse().data[0].url, "ignored": placeholder.headers.get("huiying-ignored")}))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn gpt_image_fields_from_the_official_client_reach_the_model_or_are_named_as_ignored() {
    let fake = crate::helpers::FakeApi::start().await;
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, crate::helpers::tiny_png());
    let answer = crate::helpers::FakeResponse::ok(serde_json::json!({"created": 1, "data": [{"b64_json": b64}]}));
    fake.respond(crate::helpers::OPENAI_PATH, vec![answer]);
    let app = TestApp::spawn_with(|config, _| fake.configure(config)).await;
    let address = app.address.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args(["-c", GPT_IMAGE_CLIENT, &address]).output().expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "the openai client failed: {}", String::from_utf8_lossy(&output.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    assert!(seen["drawn"].as_str().unwrap().contains("/static/images/"), "{seen}");
    let sent = &fake.calls(crate::helpers::OPENAI_PATH)[0].body;
    assert_eq!(
        (&sent["background"], &sent["output_format"], &sent["output_compression"], &sent["moderation"]),
        (
            &serde_json::json!("transparent"),
            &serde_json::json!("webp"),
            &serde_json::json!(80),
            &serde_json::json!("low")
        ),
        "{sent}"
    );
    assert!(sent.get("response_format").is_none(), "gpt-image refuses response_format: {sent}");
    assert_eq!(seen["ignored"], "extra.background", "the placeholder has no background option: {seen}");
}

const EDIT_CLIENT: &str = r#"
import io, json, sys
import openai

client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="any key: this server has none", max_retries=0)
with open(sys.argv[2], "rb") as picture:
    one = client.images.edit(model="gpt-image-1", image=picture, prompt="give the cat a red scarf", output_format="webp")
with open(sys.argv[2], "rb") as first, open(sys.argv[2], "rb") as second:
    two = client.images.edit(model="gpt-image-1", image=[first, second], prompt="one scene", response_format="b64_json")
try:
    client.images.edit(model="gpt-image-1", image=io.BytesIO(b"not a picture"), prompt="nothing")
    refused = None
except openai.BadRequestError as error:
    refused = {"status": error.status_code, "message": error.message}
print(json.dumps({"one": one.data[0].url, "two": bool(two.data[0].b64_json), "refused": refused}))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_official_clients_edit_call_goes_through_the_edit_pipeline_with_one_picture_or_several() {
    let fake = crate::helpers::FakeApi::start().await;
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, crate::helpers::tiny_png());
    let answer = crate::helpers::FakeResponse::ok(serde_json::json!({"created": 1, "data": [{"b64_json": b64}]}));
    fake.respond(crate::helpers::OPENAI_EDITS_PATH, vec![answer]);
    let app = TestApp::spawn_with(|config, _| fake.configure(config)).await;
    let picture = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(picture.path(), crate::helpers::tiny_png()).unwrap();
    let (address, path) = (app.address.clone(), picture.path().display().to_string());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args(["-c", EDIT_CLIENT, &address, &path]).output().expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "the openai client failed: {}", String::from_utf8_lossy(&output.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    assert!(seen["one"].as_str().unwrap().contains("/static/images/"), "{seen}");
    assert_eq!(seen["two"], true, "{seen}");
    assert_eq!(seen["refused"]["status"], 400, "{seen}");
    let calls = fake.calls(crate::helpers::OPENAI_EDITS_PATH);
    assert_eq!(calls.len(), 2, "the unreadable picture never reached the model");
    let form = |n: usize| String::from_utf8_lossy(&calls[n].raw).to_string();
    assert!(form(0).contains("give the cat a red scarf") && form(0).contains("name=\"output_format\""), "{}", form(0));
    assert_eq!(form(1).matches("name=\"image[]\"").count(), 2, "both pictures went to the model");
    let records: serde_json::Value =
        app.http.get(format!("{}/edit-records", app.address)).send().await.unwrap().json().await.unwrap();
    let kinds: Vec<&str> =
        records["records"].as_array().unwrap().iter().filter_map(|r| r["edit_type"].as_str()).collect();
    assert!(kinds.contains(&"edit") && kinds.contains(&"compose"), "{records}");
}

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
}

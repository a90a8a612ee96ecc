//! Models on one's own GPU: ComfyUI (a workflow queued, followed and fetched) and the
//! Automatic1111 / Forge API (txt2img and img2img), each through a fake on loopback that
//! speaks its wire format, end to end: stored, recorded, mailed.

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{FakeApi, FakeComfyUi, FakeResponse, REPO, TestApp, tiny_png};

async fn record_of(app: &TestApp, answer: &Value) -> Value {
    let id = answer["id"].as_str().unwrap();
    app.http.get(format!("{}/records/{id}", app.address)).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn comfyui_draws_the_prompt_with_its_seed_and_size_where_the_workflow_takes_them() {
    let comfy = FakeComfyUi::start(tiny_png()).await;
    let app = TestApp::spawn_with(|config, _| {
        config.comfyui.base_url = comfy.address.clone();
        config.comfyui.workflow_file = format!("{REPO}/examples/comfyui/text_to_image_api.json").into();
        config.comfyui.poll_interval = std::time::Duration::from_millis(100);
    })
    .await;

    let response = app
        .post_generate(json!({"prompt": "a lighthouse at dawn", "model": "comfyui/workflow", "seed": 42,
            "size": "640x384", "negative_prompt": "fog"}))
        .await;

    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let workflow = &comfy.workflows()[0];
    assert_eq!(workflow["6"]["inputs"]["text"], "a lighthouse at dawn");
    assert_eq!(workflow["7"]["inputs"]["text"], "fog");
    assert_eq!(workflow["3"]["inputs"]["seed"], 42, "a number, as the sampler takes it");
    assert_eq!((&workflow["5"]["inputs"]["width"], &workflow["5"]["inputs"]["height"]), (&json!(640), &json!(384)));
    assert_eq!(workflow["4"]["inputs"]["ckpt_name"], "v1-5-pruned-emaonly.safetensors", "the rest as written");
    let record = record_of(&app, &answer).await;
    assert_eq!((record["model"].as_str(), record["width"].as_u64()), (Some("comfyui/workflow"), Some(64)));
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.text.contains("a lighthouse at dawn"), "{}", mail.text);

    // The default model when ComfyUI is the only one configured.
    let models: Value = app.http.get(format!("{}/models", app.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["default_model"], "comfyui/workflow", "{models}");
}

/// Automatic1111's answer: the picture as base64, with its parameters.
fn a1111_picture(bytes: &[u8]) -> FakeResponse {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    FakeResponse::ok(json!({"images": [b64], "parameters": {}, "info": "{\"seed\": 42}"}))
}

#[tokio::test(flavor = "multi_thread")]
async fn automatic1111_draws_with_txt2img_and_edits_an_uploaded_picture_with_img2img() {
    let api = FakeApi::start().await;
    api.respond("/sdapi/v1/txt2img", vec![a1111_picture(&tiny_png())]);
    api.respond("/sdapi/v1/img2img", vec![a1111_picture(&tiny_png())]);
    let app = TestApp::spawn_with(|config, _| config.automatic1111.base_url = api.address.clone()).await;

    let response = app
        .post_generate(json!({"prompt": "a red fox", "model": "automatic1111/sd_xl_base_1.0.safetensors",
            "seed": 7, "size": "768x512", "extra": {"steps": 30, "cfg_scale": 6.5, "unknown": true}}))
        .await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["huiying-ignored"], "extra.unknown");
    let sent = &api.calls("/sdapi/v1/txt2img")[0].body;
    assert_eq!(
        (&sent["prompt"], &sent["seed"], &sent["width"], &sent["height"]),
        (&json!("a red fox"), &json!(7), &json!(768), &json!(512))
    );
    assert_eq!((&sent["steps"], &sent["cfg_scale"]), (&json!(30), &json!(6.5)));
    assert_eq!(sent["override_settings"], json!({"sd_model_checkpoint": "sd_xl_base_1.0.safetensors"}));
    assert!(sent.get("unknown").is_none());

    // An edit: the uploaded picture goes as init_images, at its own size.
    let mine = tiny_png();
    let upload = json!({"base64_data": base64::engine::general_purpose::STANDARD.encode(&mine),
        "file_name": "mine.png", "mime_type": "image/png"});
    let uploaded: Value = app
        .http
        .post(format!("{}/upload-image", app.address))
        .json(&upload)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let edit = json!({"image_url": uploaded["url"], "edit_prompt": "make it winter", "model": "automatic1111/loaded"});
    let answer: Value = app
        .http
        .post(format!("{}/edit-image", app.address))
        .header("prefer", "wait=30")
        .json(&edit)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "completed", "{answer}");
    let sent = &api.calls("/sdapi/v1/img2img")[0].body;
    let init = base64::engine::general_purpose::STANDARD.decode(sent["init_images"][0].as_str().unwrap()).unwrap();
    assert_eq!(init, mine, "the uploaded picture itself");
    assert_eq!((&sent["prompt"], &sent["width"], &sent["height"]), (&json!("make it winter"), &json!(64), &json!(48)));
    assert!(sent.get("override_settings").is_none(), "the loaded checkpoint: {sent}");
    app.smtp.wait_for_mails(2).await;
}

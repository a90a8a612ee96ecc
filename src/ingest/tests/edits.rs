//! The edit routes and uploads through `oneshot`, on in-memory parts: what a client gets,
//! what reaches the queue and what is kept, with no nats-server.

use axum::body::Body;
use axum::http::{Request, header};
use base64::Engine;
use serde_json::{Value, json};

use super::{TestIngest, ingest_with};
use crate::config::Secret;
use crate::contract::events::JobKind;

fn ingest() -> TestIngest {
    ingest_with(|_| {}, None)
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(width, height, image::Rgb([10, 200, 90]))
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

fn post_json(path: &str, body: Value) -> Request<Body> {
    Request::post(path).header(header::CONTENT_TYPE, "application/json").body(Body::from(body.to_string())).unwrap()
}

fn upload_json(bytes: &[u8], mime_type: &str) -> Request<Body> {
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    post_json("/upload-image", json!({"base64_data": data, "file_name": "cat.png", "mime_type": mime_type}))
}

/// Uploads a picture and returns its id.
async fn uploaded(ingest: &TestIngest, bytes: &[u8]) -> String {
    let (status, answer, _) = ingest.send(upload_json(bytes, "image/png")).await;
    assert_eq!(status, 201, "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_png_uploaded_as_base64_json_or_multipart_is_kept_and_served() {
    let ingest = ingest();
    let picture = png(40, 30);
    let (status, answer, _) = ingest.send(upload_json(&picture, "image/jpeg")).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["mime_type"], "image/png", "told by the content, not the claim");
    assert_eq!((answer["width"].as_u64(), answer["height"].as_u64()), (Some(40), Some(30)));
    let id = answer["id"].as_str().unwrap();
    assert!(answer["url"].as_str().unwrap().ends_with(&format!("/uploads/{id}")));
    let served = ingest.app.clone();
    let response =
        tower::ServiceExt::oneshot(served, Request::get(format!("/uploads/{id}")).body(Body::empty()).unwrap())
            .await
            .unwrap();
    assert_eq!(response.headers()[header::CONTENT_TYPE], "image/png");
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    assert_eq!(body.to_vec(), picture);

    let boundary = "huiying-boundary";
    let mut form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dog.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    form.extend_from_slice(&picture);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = Request::post("/api/upload-image")
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .body(Body::from(form))
        .unwrap();
    let (status, answer, _) = ingest.send(request).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["file_name"], "dog.png");
    assert_eq!(ingest.objects.names().len(), 2);
}

#[tokio::test]
async fn a_fake_picture_an_oversize_file_and_a_decompression_bomb_are_refused_and_nothing_is_kept() {
    let ingest = ingest();
    let (status, answer, _) = ingest.send(upload_json(b"#!/bin/sh\necho I am a PNG", "image/png")).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("is not a PNG, JPEG, WebP or GIF"), "{answer}");

    let mut huge = png(8, 8);
    huge.resize(11 * 1024 * 1024, 0);
    let (status, answer, _) = ingest.send(upload_json(&huge, "image/png")).await;
    assert_eq!(status, 413, "{answer}");

    // A PNG declaring 50,000 × 50,000 pixels (7.5 GB decoded) whose first rows, all
    // zeros, compress to a few kilobytes.
    let mut bomb = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bomb, 50_000, 50_000);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().unwrap();
        let mut stream = writer.stream_writer().unwrap();
        std::io::Write::write_all(&mut stream, &vec![0u8; 4 * 150_000]).unwrap();
        std::io::Write::flush(&mut stream).unwrap();
        std::mem::forget(stream);
    }
    assert!(bomb.len() < 20_000, "{} bytes", bomb.len());
    let (status, answer, _) = ingest.send(upload_json(&bomb, "image/png")).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("50000×50000"), "{answer}");
    assert!(ingest.objects.names().is_empty(), "nothing kept: {:?}", ingest.objects.names());
}

#[tokio::test]
async fn an_edit_of_an_upload_is_queued_with_its_picture_and_answers_the_originals_shape() {
    let ingest = ingest();
    let id = uploaded(&ingest, &png(64, 64)).await;

    let body =
        json!({"image_url": format!("upload:{id}"), "edit_prompt": "make it blue", "model": "huiying/placeholder"});
    let (status, answer, _) = ingest.send(post_json("/edit-image", body)).await;

    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "pending");
    assert_eq!(answer["edit_type"], "edit");
    assert!(answer["created_at"].as_str().unwrap().ends_with('Z'));
    let task = answer["task_id"].as_str().unwrap();
    let queued = ingest.queued();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        (queued[0].id.as_str(), queued[0].kind, queued[0].prompt.as_str()),
        (task, JobKind::Edit, "make it blue")
    );
    assert_eq!(queued[0].inputs.len(), 1);
    assert_eq!(queued[0].inputs[0].source, format!("upload:{id}"));
    assert!(ingest.objects.names().contains(&queued[0].inputs[0].object), "the input is in the object store");

    let (status, view, _) = ingest.send(Request::get(format!("/edit-tasks/{task}")).body(Body::empty()).unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!((view["status"].as_str(), view["progress"].as_i64()), (Some("pending"), Some(0)));
    assert_eq!(view["edit_type"], "edit");
    let (status, _, _) = ingest.send(Request::get("/edit-tasks/no-such-task").body(Body::empty()).unwrap()).await;
    assert_eq!(status, 404);
}

#[tokio::test(start_paused = true)]
async fn an_edit_sent_again_under_its_key_or_refused_for_a_full_bucket_keeps_no_input_picture_of_its_own() {
    let ingest = ingest();
    let id = uploaded(&ingest, &png(64, 64)).await;
    let body = json!({"image_url": format!("upload:{id}"), "edit_prompt": "make it blue"});
    let with_key = || {
        let mut request = post_json("/edit-image", body.clone());
        request.headers_mut().insert("idempotency-key", "edit-1".parse().unwrap());
        request
    };
    let (_, first, _) = ingest.send(with_key()).await;
    let kept = ingest.objects.names().len();
    let (status, again, _) = ingest.send(with_key()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["task_id"], first["task_id"], "the same job");
    assert_eq!(ingest.objects.names().len(), kept, "the repeat stored no input of its own");

    let full = crate::parts::Usage { bytes: 4 << 30, max_bytes: Some(4 << 30) };
    *ingest.room.0.lock().unwrap() = Some(full);
    tokio::time::advance(std::time::Duration::from_secs(1)).await; // read at most once a second
    let (status, _, _) = ingest.send(post_json("/edit-image", body.clone())).await;
    assert_eq!(status, 503);
    assert_eq!(ingest.objects.names().len(), kept, "a refused edit stored no input");
}

#[tokio::test]
async fn compose_on_a_one_picture_model_is_refused_naming_it_and_on_a_multi_picture_model_sends_all() {
    let ingest = ingest_with(|config| config.api_keys.model_scope_token = Secret::new("ms-test"), None);
    let mut urls = Vec::new();
    for size in [32, 48, 64] {
        urls.push(format!("upload:{}", uploaded(&ingest, &png(size, size)).await));
    }
    let body = |model: &str| json!({"image_urls": urls, "compose_prompt": "all three together", "model": model});

    let (status, answer, _) = ingest.send(post_json("/compose-images", body("Qwen/Qwen-Image-Edit"))).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("model Qwen/Qwen-Image-Edit takes 1 input picture"), "{answer}");
    assert!(ingest.queued().is_empty());

    let (status, answer, _) = ingest.send(post_json("/compose-images", body("huiying/placeholder"))).await;
    assert_eq!(status, 200, "{answer}");
    let queued = ingest.queued();
    assert_eq!(queued[0].kind, JobKind::Compose);
    let sources: Vec<&str> = queued[0].inputs.iter().map(|i| i.source.as_str()).collect();
    assert_eq!(sources, urls.iter().map(String::as_str).collect::<Vec<_>>(), "every picture, in order");
}

#[tokio::test]
async fn an_input_url_on_a_private_address_is_refused_at_the_edge() {
    let ingest = ingest();
    let body =
        json!({"image_url": "http://127.0.0.1:9/secret.png", "style_prompt": "sketch", "model": "huiying/placeholder"});
    let (status, answer, _) = ingest.send(post_json("/style-transfer", body)).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("private or local address"), "{answer}");
    assert!(ingest.queued().is_empty());
}

#[tokio::test]
async fn the_preset_styles_are_the_originals_and_style_type_takes_one() {
    let ingest = ingest();
    let (status, presets, _) = ingest.send(Request::get("/preset-styles").body(Body::empty()).unwrap()).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = presets["styles"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["anime", "oil_painting", "watercolor", "sketch", "cyberpunk", "vintage"]);
    assert_eq!(presets["styles"][0]["name"], "动漫风格");
    assert_eq!(presets["styles"][0]["prompt"], "convert to anime style, cartoon style, vibrant colors");

    let id = uploaded(&ingest, &png(16, 16)).await;
    let body = json!({"image_url": format!("upload:{id}"), "style_type": "sketch", "model": "huiying/placeholder"});
    let (status, answer, _) = ingest.send(post_json("/style-transfer", body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(ingest.queued()[0].prompt, "convert to pencil sketch style, black and white drawing");
    let unknown = json!({"image_url": format!("upload:{id}"), "style_type": "pointillism"});
    let (status, answer, _) = ingest.send(post_json("/style-transfer", unknown)).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("anime, oil_painting"), "{answer}");
}

#[tokio::test]
async fn prefer_wait_n_is_the_per_request_timeout_of_a_generation() {
    // No generator runs here: the job stays queued, so the answer comes when the wait ends.
    let ingest = ingest_with(|config| config.server.timeout = std::time::Duration::from_secs(120), None);
    let request = Request::post("/generate-image")
        .header(header::CONTENT_TYPE, "application/json")
        .header("prefer", "wait=1")
        .body(Body::from(r#"{"prompt": "a slow fox"}"#))
        .unwrap();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(20), ingest.send(request)).await;
    let (status, body, _) = answer.expect("answered after about 1 s, not [server] timeout's 120 s");
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued");
}

#[tokio::test]
async fn a_stored_picture_link_cannot_leave_the_images_folder() {
    let ingest = ingest();
    for file in ["../huiying.db", "..%2Fsecret", "a/b.png"] {
        let body = json!({"image_url": format!("http://localhost:8000/static/images/{file}"), "edit_prompt": "x", "model": "huiying/placeholder"});
        let (status, answer, _) = ingest.send(post_json("/edit-image", body)).await;
        assert_eq!(status, 400, "{file}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("no stored picture"), "{file}: {answer}");
    }
}

//! Editing pictures through the pipeline, as the original service's clients do it:
//! upload, ask for an edit, follow the task, get the picture stored, recorded and mailed.
//! The models are fake servers on loopback speaking OpenAI's and ModelScope's wire formats.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{FakeApi, FakeResponse, MODELSCOPE_IMAGES_PATH, OPENAI_EDITS_PATH, TestApp, tiny_png, wait_for};

/// A picture of its own colour, `size` pixels square.
fn picture(size: u32, colour: [u8; 3]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(size, size, image::Rgb(colour)).write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn upload(app: &TestApp, bytes: &[u8]) -> String {
    let body = json!({
        "base64_data": base64::engine::general_purpose::STANDARD.encode(bytes),
        "file_name": "mine.png",
        "mime_type": "image/png",
    });
    let response = app.http.post(format!("{}/upload-image", app.address)).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["url"].as_str().unwrap().to_string()
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let response = app.http.post(format!("{}{path}", app.address)).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn task(app: &TestApp, id: &str) -> Value {
    app.http.get(format!("{}/edit-tasks/{id}", app.address)).send().await.unwrap().json().await.unwrap()
}

/// Waits until the task shows `status`, and returns it.
async fn task_reaches(app: &TestApp, id: &str, status: &str) -> Value {
    wait_for(&format!("task {id} to be {status}"), Duration::from_secs(60), || async {
        let view = task(app, id).await;
        (view["status"] == status).then_some(view)
    })
    .await
}

/// OpenAI's edits answer, the picture as base64.
fn openai_picture(bytes: &[u8]) -> Value {
    json!({"created": 1, "data": [{"b64_json": base64::engine::general_purpose::STANDARD.encode(bytes)}]})
}

/// The parts of a multipart body named `name`, as bytes.
fn form_parts(raw: &[u8], name: &str) -> usize {
    let text = String::from_utf8_lossy(raw);
    text.matches(&format!("name=\"{name}\"")).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edit_moves_from_pending_to_processing_to_completed_and_is_stored_recorded_and_mailed() {
    let fake = FakeApi::start().await;
    let mut app = TestApp::spawn_with(|config, _| fake.configure(config)).await;
    let edited = picture(96, [30, 60, 200]);
    fake.respond(OPENAI_EDITS_PATH, vec![FakeResponse::ok(openai_picture(&edited))]);
    fake.set_delay(Duration::from_secs(2));
    let mine = picture(64, [250, 10, 10]);
    let url = upload(&app, &mine).await;

    app.stop_service("generator").await;
    let (status, answer) =
        post(&app, "/edit-image", json!({"image_url": url, "edit_prompt": "make it blue", "model": "gpt-image-1"}))
            .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["status"].as_str(), answer["edit_type"].as_str()), (Some("pending"), Some("edit")));
    let id = answer["task_id"].as_str().unwrap().to_string();
    assert_eq!(task(&app, &id).await["progress"], 0);

    app.start_service("generator");
    assert_eq!(task_reaches(&app, &id, "processing").await["progress"], 50);
    let done = task_reaches(&app, &id, "completed").await;
    assert_eq!(done["progress"], 100);
    let link = done["result_image_url"].as_str().unwrap();
    assert!(link.contains("/static/images/huiying_edit_"), "{link}");
    assert_eq!(app.get_job(&id).await.json::<Value>().await.unwrap()["status"], "completed", "also a job");
    let file = app.config.server.images_dir.join(link.rsplit('/').next().unwrap());
    let labels = app.huiying(&["labels", "check", file.to_str().unwrap()], &[]);
    assert_eq!(labels.status.code(), Some(0), "an edit carries the AI label too");

    // The model got the prompt and the uploaded picture itself.
    let calls = fake.calls(OPENAI_EDITS_PATH);
    assert_eq!(calls.len(), 1);
    let raw = &calls[0].raw;
    assert_eq!(form_parts(raw, "image"), 1);
    assert!(String::from_utf8_lossy(raw).contains("make it blue"));
    assert!(raw.windows(mine.len()).any(|w| w == mine.as_slice()), "the uploaded bytes were sent");

    let record = app.records().into_iter().find(|r| r["job_id"] == id).expect("a record");
    assert_eq!(record["kind"], "edit");
    assert!(record["inputs"].contains("upload:"), "{record:?}");
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.html.contains(link), "the mail links the edited picture");
    let thumbnail = format!("{}/inputs/{id}/0", app.address);
    assert!(mail.html.contains(&format!("src=\"{thumbnail}\"")), "and shows the picture it started from");
    let input = app.http.get(&thumbnail).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(input.to_vec(), mine);

    let records: Value =
        app.http.get(format!("{}/edit-records", app.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(records["total"], 1);
    assert_eq!(records["records"][0]["edit_type"], "edit");
    assert_eq!(records["records"][0]["task_id"], id.as_str());
    let none: Value = app
        .http
        .get(format!("{}/edit-records?edit_type=compose", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["total"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn compose_sends_every_picture_to_a_model_that_takes_several() {
    let fake = FakeApi::start().await;
    let app = TestApp::spawn_with(|config, _| fake.configure(config)).await;
    fake.respond(OPENAI_EDITS_PATH, vec![FakeResponse::ok(openai_picture(&picture(80, [1, 2, 3])))]);
    let mut urls = Vec::new();
    for colour in [[255, 0, 0], [0, 255, 0], [0, 0, 255]] {
        urls.push(upload(&app, &picture(32, colour)).await);
    }

    let (status, refused) =
        post(&app, "/compose-images", json!({"image_urls": urls, "compose_prompt": "one scene", "model": "dall-e-2"}))
            .await;
    assert_eq!(status, 400);
    assert!(refused["error"].as_str().unwrap().contains("model dall-e-2 takes 1 input picture"), "{refused}");

    let (status, answer) = post(
        &app,
        "/compose-images",
        json!({"image_urls": urls, "compose_prompt": "one scene", "model": "gpt-image-1"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["task_id"].as_str().unwrap();
    let done = task_reaches(&app, id, "completed").await;
    assert_eq!(done["edit_type"], "compose");
    let calls = fake.calls(OPENAI_EDITS_PATH);
    assert_eq!(calls.len(), 1, "the one-picture model was never called");
    assert_eq!(form_parts(&calls[0].raw, "image[]"), 3, "all three pictures");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_edit_kind_sends_its_pictures_and_prompt_and_is_recorded_as_that_kind() {
    let fake = FakeApi::start().await;
    let app = TestApp::spawn_with(|config, _| fake.configure(config)).await;
    fake.respond(OPENAI_EDITS_PATH, vec![FakeResponse::ok(openai_picture(&picture(64, [5, 5, 5])))]);
    let mut urls = Vec::new();
    for n in 0..3u8 {
        urls.push(upload(&app, &picture(40, [n * 80, 100, 200])).await);
    }
    let model = "gpt-image-1";
    let requests = [
        (
            "/edit-image",
            json!({"image_url": urls[0], "edit_prompt": "add a hat", "model": model}),
            "edit",
            1,
            "add a hat",
        ),
        (
            "/compose-images",
            json!({"image_urls": urls, "compose_prompt": "a group photo", "model": model}),
            "compose",
            3,
            "a group photo",
        ),
        (
            "/style-transfer",
            json!({"image_url": urls[1], "style_type": "watercolor", "style_prompt": "soft", "model": model}),
            "style",
            1,
            "convert to watercolor painting style, soft colors, artistic, soft",
        ),
        (
            "/fusion-images",
            json!({"image1_url": urls[0], "image2_url": urls[2], "fusion_prompt": "blend", "fusion_ratio": 0.7, "model": model}),
            "fusion",
            2,
            "blend (about 70% of the first picture, 30% of the second)",
        ),
    ];
    for (n, (path, body, kind, pictures, prompt)) in requests.into_iter().enumerate() {
        let (status, answer) = post(&app, &format!("/api{path}"), body).await;
        assert_eq!(status, 200, "{path}: {answer}");
        let id = answer["task_id"].as_str().unwrap();
        let done = task_reaches(&app, id, "completed").await;
        assert_eq!(done["edit_type"], kind);
        let call = &fake.calls(OPENAI_EDITS_PATH)[n];
        let field = if pictures == 1 { "image" } else { "image[]" };
        assert_eq!(form_parts(&call.raw, field), pictures, "{kind}: every picture sent");
        assert!(String::from_utf8_lossy(&call.raw).contains(prompt), "{kind}: the prompt sent");
        let mails = app.smtp.wait_for_mails(n + 1).await;
        let mail = mails.iter().find(|m| m.html.contains(id)).expect("its mail");
        assert_eq!(mail.html.matches("/inputs/").count(), pictures * 2, "{kind}: each input shown (link and img)");
    }

    // Prefer: wait answers with the finished task.
    let response = app
        .http
        .post(format!("{}/edit-image", app.address))
        .header("prefer", "wait=30")
        .json(&json!({"image_url": urls[2], "edit_prompt": "again", "model": model}))
        .send()
        .await
        .unwrap();
    let waited: Value = response.json().await.unwrap();
    assert_eq!((waited["status"].as_str(), waited["progress"].as_i64()), (Some("completed"), Some(100)), "{waited}");

    let records = |query: &str| {
        let url = format!("{}/edit-records?{query}", app.address);
        let http = app.http.clone();
        async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let first = records("limit=2").await;
    assert_eq!((first["total"].as_u64(), first["pages"].as_u64()), (Some(5), Some(3)));
    assert_eq!(first["records"].as_array().unwrap().len(), 2);
    let fusion = records("edit_type=fusion").await;
    assert_eq!(fusion["total"], 1);
    assert_eq!(fusion["records"][0]["input_image_urls"].as_array().unwrap().len(), 2);
    assert_eq!(records("status=failed").await["total"], 0);
    assert_eq!(records("keyword=group").await["total"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mask_goes_to_an_openai_compatible_model_beside_the_picture() {
    let fake = FakeApi::start().await;
    let app = TestApp::spawn_with(|config, _| fake.configure(config)).await;
    fake.respond(OPENAI_EDITS_PATH, vec![FakeResponse::ok(openai_picture(&picture(50, [7, 7, 7])))]);
    let (url, mask) = (upload(&app, &picture(50, [200, 0, 0])).await, upload(&app, &picture(50, [0, 0, 0])).await);

    let body = json!({"image_url": url, "mask_url": mask, "edit_prompt": "paint a window", "model": "gpt-image-1"});
    let (status, answer) = post(&app, "/edit-image", body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    task_reaches(&app, answer["task_id"].as_str().unwrap(), "completed").await;
    let raw = &fake.calls(OPENAI_EDITS_PATH)[0].raw;
    assert_eq!((form_parts(raw, "image"), form_parts(raw, "mask")), (1, 1), "one picture and its mask");

    let mut unmaskable = body;
    unmaskable["model"] = json!("huiying/placeholder");
    let (status, refused) = post(&app, "/edit-image", unmaskable).await;
    assert_eq!(status, 400);
    assert!(refused["error"].as_str().unwrap().contains("model huiying/placeholder takes no mask"), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fusion_of_two_urls_sends_both_pictures_to_an_openrouter_model() {
    let fake = FakeApi::start().await;
    let app = TestApp::spawn_with(|config, _| {
        fake.configure(config);
        // The pictures are served by the fake on loopback.
        config.server.allow_private_edit_inputs = true;
    })
    .await;
    let (first, second) = (picture(30, [255, 255, 0]), picture(30, [0, 255, 255]));
    let urls = [fake.serve_file("first.png", first.clone()), fake.serve_file("second.png", second.clone())];
    fake.respond(
        crate::helpers::OPENROUTER_PATH,
        vec![FakeResponse::ok(crate::helpers::openrouter_image(&tiny_png()))],
    );

    let body = json!({"image1_url": urls[0], "image2_url": urls[1], "fusion_prompt": "one creature", "model": "google/gemini-2.5-flash-image-preview"});
    let (status, answer) = post(&app, "/fusion-images", body).await;
    assert_eq!(status, 200, "{answer}");
    let done = task_reaches(&app, answer["task_id"].as_str().unwrap(), "completed").await;
    assert_eq!(done["inputs"], json!(urls), "the URLs as the client named them");

    let chat = &fake.calls(crate::helpers::OPENROUTER_PATH)[0].body;
    let parts = chat["messages"][0]["content"].as_array().unwrap();
    assert_eq!(parts[0]["text"], "one creature");
    let sent: Vec<Vec<u8>> = parts[1..]
        .iter()
        .map(|p| {
            let url = p["image_url"]["url"].as_str().unwrap();
            base64::engine::general_purpose::STANDARD.decode(url.split_once(",").unwrap().1).unwrap()
        })
        .collect();
    assert_eq!(sent, vec![first, second], "both pictures, fetched once at the edge, in order");
}

/// ModelScope's submit answer and task states.
fn task_state(status: &str, output: Option<&str>) -> FakeResponse {
    match output {
        Some(url) => FakeResponse::ok(json!({"task_id": "ms-task-1", "task_status": status, "output_images": [url]})),
        None => FakeResponse::ok(json!({"task_id": "ms-task-1", "task_status": status})),
    }
}

async fn modelscope_app(fake: &FakeApi, deadline: u64) -> TestApp {
    TestApp::spawn_with(|config, _| {
        fake.configure(config);
        config.modelscope.poll_interval = Duration::from_secs(1);
        config.modelscope.deadline = Duration::from_secs(deadline);
        // The fake serves its output picture on loopback.
        config.generator.allow_private_urls = true;
    })
    .await
}

async fn edit_with_qwen(app: &TestApp) -> String {
    let url = upload(app, &tiny_png()).await;
    let (status, answer) = post(app, "/style-transfer", json!({"image_url": url, "style_type": "anime"})).await;
    assert_eq!(status, 200, "{answer}");
    answer["task_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn modelscope_is_submitted_asynchronously_polled_while_running_and_its_output_stored() {
    let fake = FakeApi::start().await;
    let app = modelscope_app(&fake, 60).await;
    let output = fake.serve_file("qwen-output.png", picture(72, [9, 99, 199]));
    fake.respond(MODELSCOPE_IMAGES_PATH, vec![FakeResponse::ok(json!({"task_id": "ms-task-1"}))]);
    fake.respond(
        "/modelscope/v1/tasks/ms-task-1",
        vec![task_state("RUNNING", None), task_state("RUNNING", None), task_state("SUCCEED", Some(&output))],
    );

    let id = edit_with_qwen(&app).await;

    let done = task_reaches(&app, &id, "completed").await;
    assert_eq!(done["model"], "Qwen/Qwen-Image-Edit", "the default edit model with a ModelScope token");
    let submit = &fake.calls(MODELSCOPE_IMAGES_PATH)[0];
    assert_eq!(submit.headers["x-modelscope-async-mode"], "true");
    assert_eq!(submit.body["model"], "Qwen/Qwen-Image-Edit");
    assert_eq!(submit.body["prompt"], "convert to anime style, cartoon style, vibrant colors");
    assert!(submit.body["image_url"].as_str().unwrap().starts_with("data:image/png;base64,"));
    let polls = fake.calls("/modelscope/v1/tasks/ms-task-1");
    assert_eq!(polls.len(), 3, "two RUNNING, then SUCCEED");
    assert_eq!(polls[0].headers["x-modelscope-task-type"], "image_generation");
    let stored =
        app.config.server.images_dir.join(done["result_image_url"].as_str().unwrap().rsplit('/').next().unwrap());
    let decoded = image::open(stored).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (72, 72), "ModelScope's picture, stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_modelscope_task_fails_the_job_with_one_mail() {
    let fake = FakeApi::start().await;
    let app = modelscope_app(&fake, 60).await;
    fake.respond(MODELSCOPE_IMAGES_PATH, vec![FakeResponse::ok(json!({"task_id": "ms-task-1"}))]);
    fake.respond("/modelscope/v1/tasks/ms-task-1", vec![task_state("RUNNING", None), task_state("FAILED", None)]);

    let id = edit_with_qwen(&app).await;

    let failed = task_reaches(&app, &id, "failed").await;
    assert_eq!(failed["progress"], -1);
    assert!(failed["error_message"].as_str().unwrap().contains("ModelScope task ms-task-1 failed"), "{failed}");
    assert_eq!(app.smtp.wait_for_mails(1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modelscope_task_that_never_finishes_fails_at_the_deadline_and_polling_stops() {
    let fake = FakeApi::start().await;
    let app = modelscope_app(&fake, 3).await;
    fake.respond(MODELSCOPE_IMAGES_PATH, vec![FakeResponse::ok(json!({"task_id": "ms-task-1"}))]);
    fake.respond("/modelscope/v1/tasks/ms-task-1", vec![task_state("RUNNING", None)]);

    let id = edit_with_qwen(&app).await;

    let failed = task_reaches(&app, &id, "failed").await;
    assert!(failed["error_message"].as_str().unwrap().contains("did not finish within 3 s"), "{failed}");
    let polls = fake.calls("/modelscope/v1/tasks/ms-task-1").len();
    assert!((2..=4).contains(&polls), "{polls} polls in 3 s at 1 s");
    let mails = app.smtp.wait_for_mails(1).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // nothing should happen: waiting for an absence
    assert_eq!(fake.calls("/modelscope/v1/tasks/ms-task-1").len(), polls, "no polls after the deadline");
    assert_eq!(app.smtp.mails().len(), mails.len(), "one failure mail");
    assert_eq!(fake.calls(MODELSCOPE_IMAGES_PATH).len(), 1, "submitted once");
}

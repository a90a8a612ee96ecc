//! Keys own their work: each route that names or lists jobs, records, events or
//! deliveries, asked by the owner's key, another key, an admin key and no key.

use axum::http::header;
use futures::StreamExt;
use serde_json::json;
use time::OffsetDateTime;

use super::*;
use crate::config::{KeyConfig, Secret};
use crate::contract::events::{ImageFailed, JobFacts, RequestWebhook, Stage};
use crate::contract::jobs::JobStatus;
use crate::contract::records::{RECORDS_DELETE, RECORDS_GET};
use crate::contract::webhooks::{Delivery, DeliveryState, EndpointKind, WebhookTask};
use crate::parts::JsonBucket;

const JOB: &str = "0b5e6a44-1f6c-4c1e-9a51-6c0a3f1d2e7b";
/// A canary: it must never reach anyone but an admin unmasked.
const CANARY_EMAIL: &str = "canary-owner@qq.com";
const CANARY_HOOK: &str = "https://oapi.dingtalk.com/robot/send?access_token=canarytoken123";

/// ingest with three keys: `design` (the owner), `ops` and `root` (an admin).
fn ingest_with_keys() -> TestIngest {
    ingest_with(
        |config| {
            let key = |name: &str, admin| KeyConfig {
                name: name.into(),
                key: Secret::new(format!("{name}-key")),
                admin,
                ..KeyConfig::default()
            };
            config.server.keys = vec![key("design", false), key("ops", false), key("root", true)];
        },
        None,
    )
}

/// `design`'s job: failed at the model, with its notification targets.
async fn designs_job(ingest: &TestIngest) {
    let callback = RequestWebhook { webhook: Some(CANARY_HOOK.into()), webhook_events_filter: None };
    let facts = JobFacts {
        id: &JOB.into(),
        prompt: "a red fox",
        model: "huiying/placeholder",
        notify_email: Some(CANARY_EMAIL),
        callback: &callback,
        kind: Default::default(),
        owner: Some("design"),
        group: None,
    };
    let failed = ImageFailed::new(facts, Stage::Generate, "the model is away".into(), true, 3);
    ingest.jobs.set(&JobStatus::from(&failed)).await.unwrap();
}

/// The request as `who` sends it: `Some(name)` with that key, `None` without any.
fn as_key(who: Option<&str>, method: &str, path: &str) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(name) = who {
        request = request.header(header::AUTHORIZATION, format!("Bearer {name}-key"));
    }
    request.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn each_route_naming_a_job_answers_its_owner_and_admins_and_is_404_to_another_key() {
    let ingest = ingest_with_keys();
    designs_job(&ingest).await;
    let record = json!({"ok": {"id": 7, "job_id": JOB, "original_prompt": "a red fox", "english_prompt": "a red fox",
        "model": "m", "local_path": "images/a.jpg", "r2_url": null, "file_size": 1, "width": 1, "height": 1,
        "format": "jpeg", "created_at": "2026-12-07T00:00:00.000000Z", "updated_at": "2026-12-07T00:00:00.000000Z",
        "owner": "design", "url": "u", "local_url": "u"}});
    ingest.store.answer(RECORDS_GET, record.to_string());
    let routes = [
        ("GET", format!("/jobs/{JOB}")),
        ("GET", format!("/api/jobs/{JOB}/events")),
        ("GET", format!("/jobs/{JOB}/notifications")),
        ("GET", format!("/edit-tasks/{JOB}")),
        ("GET", format!("/records/{JOB}")),
        ("GET", "/records/7".to_string()),
        ("POST", format!("/jobs/{JOB}/cancel")),
    ];
    for (method, path) in &routes {
        for (who, wanted) in [(Some("ops"), 404), (None, 401)] {
            let (status, answer, _) = ingest.send(as_key(who, method, path)).await;
            assert_eq!(status, wanted, "{method} {path} as {who:?}: {answer}");
        }
        for who in ["design", "root"] {
            let (status, answer, _) = ingest.send(as_key(Some(who), method, path)).await;
            // A failed job cannot be cancelled (409): the owner reached it all the same.
            let wanted = if *method == "POST" { 409 } else { 200 };
            assert_eq!(status, wanted, "{method} {path} as {who}: {answer}");
        }
    }
    // Deleting: another key and no key get nowhere; the owner deletes, and again.
    ingest.store.answer(RECORDS_DELETE, r#"{"ok": true}"#);
    for path in [format!("/jobs/{JOB}"), format!("/records/{JOB}")] {
        assert_eq!(ingest.send(as_key(Some("ops"), "DELETE", &path)).await.0, 404, "{path}");
        assert_eq!(ingest.send(as_key(None, "DELETE", &path)).await.0, 401, "{path}");
    }
    assert!(ingest.jobs.get(JOB).await.unwrap().is_some(), "still there");
    // Another key's job reads exactly as one that does not exist.
    let (_, theirs, _) = ingest.send(as_key(Some("ops"), "GET", &format!("/jobs/{JOB}"))).await;
    let nobodys = "9c1f0e2d-3b4a-4d5e-8f60-718293a4b5c6";
    let (_, none, _) = ingest.send(as_key(Some("ops"), "GET", &format!("/jobs/{nobodys}"))).await;
    assert_eq!(
        theirs["error"].as_str().unwrap().replace(JOB, "?"),
        none["error"].as_str().unwrap().replace(nobodys, "?")
    );
}

#[tokio::test]
async fn only_admins_see_notification_targets_unmasked_and_the_owner_named() {
    let ingest = ingest_with_keys();
    designs_job(&ingest).await;
    let (_, owners, _) = ingest.send(as_key(Some("design"), "GET", &format!("/jobs/{JOB}"))).await;
    assert_eq!(owners["error"]["notify_email"], "c***@qq.com");
    assert_eq!(owners["error"]["webhook"], "https://oapi.dingtalk.com/robot/send?…");
    assert!(!owners.to_string().contains("canarytoken123") && !owners.to_string().contains(CANARY_EMAIL));
    let (_, admins, _) = ingest.send(as_key(Some("root"), "GET", &format!("/jobs/{JOB}"))).await;
    assert_eq!(admins["error"]["notify_email"], CANARY_EMAIL);
    assert_eq!(admins["owner"], "design");
}

#[tokio::test]
async fn the_all_jobs_stream_leaves_out_other_keys_jobs() {
    let ingest = ingest_with_keys();
    let mut streams = Vec::new();
    for who in ["ops", "root"] {
        let response = ingest.app.clone().oneshot(as_key(Some(who), "GET", "/events")).await.unwrap();
        assert_eq!(response.status(), 200);
        streams.push(response.into_body().into_data_stream());
    }
    designs_job(&ingest).await;
    let ops_job = JobStatus::new(&"ops-job".into(), JobState::Queued, "a cat", None).owned_by(Some("ops"));
    ingest.jobs.set(&ops_job).await.unwrap();
    // `ops` is sent its own job first: design's, written before, was left out.
    let first = String::from_utf8(streams[0].next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.contains("ops-job") && !first.contains(JOB), "{first}");
    let first = String::from_utf8(streams[1].next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.contains(JOB) && first.contains(CANARY_EMAIL), "an admin sees all: {first}");
}

#[tokio::test]
async fn the_delivery_log_shows_each_key_its_own_and_no_url_whole() {
    let ingest = ingest_with_keys();
    let log: JsonBucket<Delivery> = JsonBucket::new(ingest.webhook_log.clone());
    for (id, owner) in [("msg_a", Some("design")), ("msg_b", Some("ops")), ("msg_c", None)] {
        let task = WebhookTask {
            version: 1,
            id: id.into(),
            job_id: JOB.into(),
            endpoint: "robot".into(),
            kind: EndpointKind::Request,
            url: CANARY_HOOK.into(),
            event: "image.failed".into(),
            body: "{}".into(),
            owner: owner.map(String::from),
            replay: false,
        };
        let delivery = Delivery {
            task,
            state: DeliveryState::Failed,
            attempts: Vec::new(),
            updated_at: OffsetDateTime::now_utc(),
        };
        log.put(id, &delivery).await.unwrap();
    }
    let ids = |answer: &Value| -> Vec<String> {
        let mut ids: Vec<String> =
            answer["deliveries"].as_array().unwrap().iter().map(|d| d["task"]["id"].as_str().unwrap().into()).collect();
        ids.sort();
        ids
    };
    let (_, design, _) = ingest.send(as_key(Some("design"), "GET", "/webhooks/deliveries")).await;
    assert_eq!(ids(&design), ["msg_a"]);
    let (_, root, _) = ingest.send(as_key(Some("root"), "GET", "/webhooks/deliveries")).await;
    assert_eq!(ids(&root), ["msg_a", "msg_b", "msg_c"]);
    assert!(!root.to_string().contains("canarytoken123"), "{root}");
    assert_eq!(ingest.send(as_key(None, "GET", "/webhooks/deliveries")).await.0, 401);
}

#[tokio::test]
async fn jobs_a_key_queues_are_its_own_and_an_ordinary_key_cannot_list_anothers_records() {
    let ingest = ingest_with_keys();
    let mut request = generate(r#"{"prompt": "a fox"}"#);
    request.headers_mut().insert(header::AUTHORIZATION, "Bearer design-key".parse().unwrap());
    let (status, answer, _) = ingest.send(request).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(ingest.queued()[0].owner.as_deref(), Some("design"));
    let id = answer["id"].as_str().unwrap();
    assert_eq!(ingest.jobs.get(id).await.unwrap().unwrap().owner.as_deref(), Some("design"));
    let (status, answer, _) = ingest.send(as_key(Some("design"), "GET", "/records?owner=ops")).await;
    assert_eq!(status, 400, "{answer}");
}

#[tokio::test]
async fn a_requests_address_stays_beside_its_job_never_in_its_event() {
    // (Its own webhook too: that needs a host that resolves, so the full-stack canary
    // test in tests/api/owners.rs shows it.)
    let ingest = ingest_with(|config| config.smtp.allowed_recipients = vec![CANARY_EMAIL.into()], None);
    let body = json!({"prompt": "a fox", "notify_email": CANARY_EMAIL}).to_string();
    let (status, answer, _) = ingest.send(generate(&body)).await;
    assert_eq!(status, 202, "{answer}");
    let event = serde_json::to_string(&ingest.queued()[0]).unwrap();
    assert!(!event.contains(CANARY_EMAIL), "{event}");
    let id = answer["id"].as_str().unwrap();
    let targets = ingest.jobs.targets(id).await.unwrap().unwrap();
    assert_eq!(targets.notify_email.as_deref(), Some(CANARY_EMAIL));
}

#[tokio::test]
async fn an_upload_is_its_uploaders_to_see_and_edit() {
    let ingest = ingest_with_keys();
    let mut png = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(8, 8, image::Rgb([10, 200, 90])).write_to(&mut png, image::ImageFormat::Png).unwrap();
    let data = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, png.into_inner());
    let body = json!({"base64_data": data, "file_name": "cat.png", "mime_type": "image/png"}).to_string();
    let request = Request::post("/upload-image")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer design-key")
        .body(Body::from(body))
        .unwrap();
    let (status, answer, _) = ingest.send(request).await;
    assert_eq!(status, 201, "{answer}");
    let path = format!("/uploads/{}", answer["id"].as_str().unwrap());
    assert_eq!(ingest.send(as_key(Some("ops"), "GET", &path)).await.0, 404);
    assert_eq!(ingest.send(as_key(Some("design"), "GET", &path)).await.0, 200);
    assert_eq!(ingest.send(as_key(Some("root"), "GET", &path)).await.0, 200);
    let edit = json!({"image_url": format!("upload:{}", answer["id"].as_str().unwrap()), "edit_prompt": "a hat",
        "model": "huiying/placeholder"});
    let request = Request::post("/edit-image")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, "Bearer ops-key")
        .body(Body::from(edit.to_string()))
        .unwrap();
    let (status, refused, _) = ingest.send(request).await;
    assert_eq!(status, 400, "another key cannot edit it: {refused}");
    assert!(ingest.queued().is_empty());
}

#[tokio::test]
async fn a_job_published_straight_to_nats_belongs_to_no_key_and_only_admins_see_it() {
    let ingest = ingest_with_keys();
    let nobodys = JobStatus::new(&JOB.into(), JobState::Completed, "a fox", None);
    ingest.jobs.set(&nobodys).await.unwrap();
    for who in ["design", "ops"] {
        assert_eq!(ingest.send(as_key(Some(who), "GET", &format!("/jobs/{JOB}"))).await.0, 404, "{who}");
    }
    let (status, job, _) = ingest.send(as_key(Some("root"), "GET", &format!("/jobs/{JOB}"))).await;
    assert_eq!(status, 200);
    assert!(job.get("owner").is_none(), "{job}");
}

#[tokio::test]
async fn without_keys_everything_stays_open_to_the_machines_user() {
    let ingest = ingest();
    let owned = JobStatus::new(&JOB.into(), JobState::Completed, "a fox", None).owned_by(Some("design"));
    ingest.jobs.set(&owned).await.unwrap();
    assert_eq!(ingest.send(as_key(None, "GET", &format!("/jobs/{JOB}"))).await.0, 200);
    let (_, me, _) = ingest.send(as_key(None, "GET", "/me")).await;
    assert_eq!(me, json!({"admin": true}));
}

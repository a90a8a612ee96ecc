//! The queue, access, records, health and OpenAI routes, as a client meets them.

use axum::http::header;
use serde_json::json;

use super::*;

#[tokio::test]
async fn a_prompt_is_queued_with_a_202_and_its_job_reads_queued() {
    let ingest = ingest();
    let (status, answer, _) = ingest.send(generate(r#"{"prompt": "一只狐狸", "model": "huiying/placeholder"}"#)).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap();
    assert_eq!(answer["status_url"], format!("http://localhost:8000/jobs/{id}"));
    let queued = ingest.queued();
    assert_eq!((queued[0].id.as_str(), queued[0].prompt.as_str()), (id, "一只狐狸"));
    assert_eq!(ingest.jobs.get(id).await.unwrap().unwrap().status, JobState::Queued);
    let (status, job, _) = ingest.send(Request::get(format!("/api/jobs/{id}")).body(Body::empty()).unwrap()).await;
    assert_eq!((status, job["status"].as_str()), (200, Some("queued")));
}

#[tokio::test]
async fn bad_requests_get_a_400_that_names_the_problem_and_nothing_is_queued() {
    let ingest = ingest();
    let mut cases: Vec<(String, String)> =
        serde_json::from_str(include_str!("../../../tests/fixtures/bad_generate_requests.json")).unwrap();
    cases.push((r#"{"prompt": "a\u0007b"}"#.into(), "control character".into()));
    cases.push((r#"{"prompt": "cat", "notify_email": "someone@example.com"}"#.into(), "allowed recipients".into()));
    for (body, expected) in cases {
        let (status, answer, _) = ingest.send(generate(&body)).await;
        assert_eq!(status, 400, "for {body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_else(|| panic!("no error field for {body}"));
        assert!(error.contains(&expected), "for {body}: {error}");
    }
    assert!(ingest.queued().is_empty());
}

/// `POST /generate-image` with this Content-Type.
fn sent_as(content_type: &str, body: &str) -> Request<Body> {
    Request::post("/generate-image")
        .header(header::CONTENT_TYPE, content_type)
        .header("prefer", "respond-async")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn as_the_original_a_body_is_json_whatever_its_type_and_unknown_fields_are_left_out_and_named() {
    let ingest = ingest();
    let body = r#"{"prompt": "cat", "client_version": "2.1", "colour": "red"}"#;
    let (status, answer, response) = ingest.send(sent_as("text/plain", body)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(response.headers()["huiying-ignored"], "client_version, colour");
    assert_eq!(ingest.queued()[0].prompt, "cat");
    // Not JSON at all is still a 400.
    let (status, answer, _) = ingest.send(sent_as("application/x-www-form-urlencoded", "prompt=cat")).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("not valid JSON"), "{answer}");
}

#[tokio::test]
async fn strictly_another_content_type_is_a_415_an_unknown_field_a_400_and_a_large_body_a_413() {
    let ingest = ingest_with(|config| config.server.strict_options = true, None);
    let (status, answer, _) = ingest.send(sent_as("text/plain", r#"{"prompt": "cat"}"#)).await;
    assert_eq!(status, 415, "{answer}");
    let (status, answer, _) = ingest.send(generate(r#"{"prompt": "cat", "colour": "red"}"#)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("unknown field colour"), "{answer}");
    let huge = json!({"prompt": "cat", "negative_prompt": "x".repeat(100 * 1024)}).to_string();
    let (status, answer, _) = ingest.send(generate(&huge)).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("larger than"), "{answer}");
    assert!(ingest.queued().is_empty());
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_as_json() {
    let ingest = ingest();
    let (status, answer, _) = ingest.send(Request::get("/nowhere").body(Body::empty()).unwrap()).await;
    assert_eq!((status, answer["error"].is_string()), (404, true));
    let (status, answer, _) = ingest.send(Request::get("/api/generate-image").body(Body::empty()).unwrap()).await;
    assert_eq!((status, answer["error"].is_string()), (405, true));
}

#[tokio::test]
async fn with_api_keys_a_missing_key_is_401_a_wrong_one_403_and_the_page_stays_open() {
    let ingest = ingest_with(|config| config.server.api_keys = vec![Secret::new("key-one")], None);
    let (status, _, response) = ingest.send(generate(r#"{"prompt": "cat"}"#)).await;
    assert_eq!(status, 401);
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let mut wrong = generate(r#"{"prompt": "cat"}"#);
    wrong.headers_mut().insert(header::AUTHORIZATION, "Bearer key-two".parse().unwrap());
    assert_eq!(ingest.send(wrong).await.0, 403);
    assert!(ingest.queued().is_empty());
    let mut right = generate(r#"{"prompt": "cat"}"#);
    right.headers_mut().insert(header::AUTHORIZATION, "Bearer key-one".parse().unwrap());
    assert_eq!(ingest.send(right).await.0, 202);
    let (status, page, _) = ingest.send(Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("绘影"), "the web page is served");
    assert!(page.as_str().unwrap().contains(">AI生成</span>"), "with the AI badge for the picture");
    assert_eq!(ingest.send(Request::get("/health").body(Body::empty()).unwrap()).await.0, 200);
}

#[tokio::test]
async fn over_the_rate_limit_a_caller_gets_429_with_retry_after() {
    let ingest = ingest_with(|config| config.server.rate_limit_per_minute = 2, None);
    for _ in 0..2 {
        assert_eq!(ingest.send(generate(r#"{"prompt": "cat"}"#)).await.0, 202);
    }
    let (status, answer, response) = ingest.send(generate(r#"{"prompt": "cat"}"#)).await;
    assert_eq!(status, 429, "{answer}");
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(ingest.queued().len(), 2);
}

#[tokio::test]
async fn an_idempotency_key_gives_the_same_job_and_reused_for_another_request_a_422() {
    let ingest = ingest();
    let keyed = |body: &str| {
        let mut request = generate(body);
        request.headers_mut().insert("idempotency-key", "order-42".parse().unwrap());
        request
    };
    let (_, first, _) = ingest.send(keyed(r#"{"prompt": "cat"}"#)).await;
    let (status, again, _) = ingest.send(keyed(r#"{"prompt": "cat"}"#)).await;
    assert_eq!((status, &again["id"]), (202, &first["id"]));
    let (status, answer, _) = ingest.send(keyed(r#"{"prompt": "dog"}"#)).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(ingest.queued().len(), 1);
}

// Paused time: the acknowledgements stay lost for the whole hold ([server] failover_wait).
#[tokio::test(start_paused = true)]
async fn a_retry_with_its_key_after_an_unsure_refusal_queues_the_job_exactly_once() {
    let keyed = |body: &str| {
        let mut request = generate(body);
        request.headers_mut().insert("idempotency-key", "order-7".parse().unwrap());
        request
    };
    // Stored, but the answer from NATS was lost: the client is told 503 ...
    let ingest = ingest();
    ingest.stream.set_acks_lost(true);
    let (status, _, _) = ingest.send(keyed(r#"{"prompt": "cat"}"#)).await;
    assert_eq!(status, 503);
    ingest.stream.set_acks_lost(false);
    // ... and its retry gets that job, not a second one.
    let (status, answer, _) = ingest.send(keyed(r#"{"prompt": "cat"}"#)).await;
    assert_eq!(status, 202, "{answer}");
    let queued = ingest.queued();
    assert_eq!(queued.len(), 1);
    assert_eq!(answer["id"], queued[0].id.as_str());

    // Not stored at all: the retry queues it.
    let ingest = self::ingest();
    ingest.stream.set_down(true);
    assert_eq!(ingest.send(keyed(r#"{"prompt": "cat"}"#)).await.0, 503);
    ingest.stream.set_down(false);
    let (status, answer, _) = ingest.send(keyed(r#"{"prompt": "cat"}"#)).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(ingest.queued().len(), 1);
    assert_eq!(answer["id"], ingest.queued()[0].id.as_str());
}

#[tokio::test(start_paused = true)]
async fn a_request_nats_cannot_take_for_a_few_seconds_is_held_and_queued_once() {
    let ingest = ingest();
    ingest.stream.set_leaderless(true);
    let stream = ingest.stream.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(6)).await; // an election's length
        stream.set_leaderless(false);
    });
    let asked = tokio::time::Instant::now();

    let (status, answer, _) = ingest.send(generate(r#"{"prompt": "cat"}"#)).await;

    assert_eq!(status, 202, "held, not refused: {answer}");
    let held = asked.elapsed();
    assert!(held >= std::time::Duration::from_secs(6) && held < std::time::Duration::from_secs(7), "{held:?}");
    assert_eq!(ingest.queued().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn on_a_cluster_a_publish_nobody_answers_is_tried_again_rather_than_waited_out() {
    // Three NATS URLs: a cluster, where another node may answer what one does not.
    let ingest =
        ingest_with(|config| config.nats.url = "nats://a:4222,nats://b:4222,nats://c:4222".parse().unwrap(), None);
    ingest.stream.set_silent(true);
    let stream = ingest.stream.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await; // the client moved to another node
        stream.set_silent(false);
    });
    let asked = tokio::time::Instant::now();

    let sent = ingest.send(generate(r#"{"prompt": "cat"}"#));
    let (status, answer, _) = tokio::time::timeout(std::time::Duration::from_secs(60), sent).await.expect("answered");

    assert_eq!(status, 202, "{answer}");
    assert!(asked.elapsed() < std::time::Duration::from_secs(8), "{:?}", asked.elapsed());
    assert_eq!(ingest.queued().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_nats_cannot_take_within_the_hold_or_the_clients_wait_is_refused_with_503() {
    let ingest = ingest();
    ingest.stream.set_leaderless(true);
    let asked = tokio::time::Instant::now();
    let (status, _, _) = ingest.send(generate(r#"{"prompt": "cat"}"#)).await;
    assert_eq!(status, 503);
    let held = asked.elapsed();
    assert!(held >= std::time::Duration::from_secs(14) && held <= std::time::Duration::from_secs(15), "{held:?}");

    // A client that asked to wait 2 s is not held longer.
    let asked = tokio::time::Instant::now();
    let mut impatient = generate(r#"{"prompt": "cat"}"#);
    impatient.headers_mut().insert("prefer", "wait=2".parse().unwrap());
    assert_eq!(ingest.send(impatient).await.0, 503);
    assert!(asked.elapsed() <= std::time::Duration::from_secs(2), "{:?}", asked.elapsed());
    assert!(ingest.queued().is_empty());
}

#[tokio::test]
async fn without_nats_or_with_a_full_queue_the_job_is_refused_with_503() {
    let ingest = ingest_with(|config| config.server.max_queued_jobs = 3, Some(3));
    let (status, answer, response) = ingest.send(generate(r#"{"prompt": "cat"}"#)).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("queue is full"), "{answer}");
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");

    let ingest = self::ingest();
    ingest.stream.set_down(true);
    let (status, answer, _) = ingest.send(generate(r#"{"prompt": "cat"}"#)).await;
    assert_eq!(status, 503, "{answer}");
    let (status, health, _) = ingest.send(Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!((status, health["status"].as_str()), (503, Some("degraded")));
}

#[tokio::test(start_paused = true)]
async fn with_the_picture_bucket_full_new_jobs_and_uploads_get_503_with_retry_after() {
    let ingest = self::ingest();
    let full = crate::parts::Usage { bytes: 4 << 30, max_bytes: Some(4 << 30) };
    *ingest.room.0.lock().unwrap() = Some(full);
    let (status, answer, response) = ingest.send(generate(r#"{"prompt": "cat"}"#)).await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("picture bucket is full"), "{answer}");
    assert_eq!(response.headers()[header::RETRY_AFTER], "30");
    let upload = Request::post("/upload-image")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"base64_data": "aGk=", "file_name": "a.png"}).to_string()))
        .unwrap();
    let (status, answer, _) = ingest.send(upload).await;
    assert_eq!(status, 503, "{answer}");
    assert!(ingest.queued().is_empty() && ingest.objects.names().is_empty(), "nothing was written");
    // With room (or not knowing: NATS decides), jobs are taken again: ingest reads the
    // bucket's size at most once a second.
    *ingest.room.0.lock().unwrap() = Some(crate::parts::Usage { bytes: 1 << 20, max_bytes: Some(4 << 30) });
    tokio::time::advance(std::time::Duration::from_secs(1)).await;
    assert_eq!(ingest.send(generate(r#"{"prompt": "cat"}"#)).await.0, 202);
}

#[tokio::test]
async fn a_job_published_while_its_state_could_not_be_written_is_still_accepted() {
    let ingest = ingest();
    ingest.states.set_down(true);
    let (status, answer, _) = ingest.send(generate(r#"{"prompt": "cat"}"#)).await;
    // It is in the stream and will run: a 503 would make the client send a second job.
    assert_eq!(status, 202, "{answer}");
    assert_eq!(ingest.queued().len(), 1);
}

#[tokio::test]
async fn records_come_from_the_store_and_bad_parameters_are_named() {
    let ingest = ingest();
    let (status, answer, _) = ingest.send(Request::get("/records").body(Body::empty()).unwrap()).await;
    assert_eq!(status, 503, "no store running: {answer}");
    ingest.store.answer(RECORDS_LIST, r#"{"ok": {"records": [], "total": 0, "page": 1, "limit": 20, "pages": 0}}"#);
    let (status, page, _) = ingest.send(Request::get("/api/records?page=1").body(Body::empty()).unwrap()).await;
    assert_eq!((status, &page["total"]), (200, &json!(0)));
    for (query, named) in [("limit=many", "limit"), ("date_from=yesterday", "date_from"), ("colour=red", "colour")] {
        let (status, answer, _) =
            ingest.send(Request::get(format!("/records?{query}")).body(Body::empty()).unwrap()).await;
        assert_eq!(status, 400, "{query}");
        assert!(answer["error"].as_str().unwrap().contains(named), "{query}: {answer}");
    }
}

#[tokio::test]
async fn health_names_the_services_that_do_not_answer_their_ping() {
    let ingest = ingest();
    ingest.store.answer("$SRV.PING.huiying-generator", "{}");
    ingest.store.answer("$SRV.PING.huiying-store", "{}");
    let (status, health, _) = ingest.send(Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(status, 200, "ingest can still queue");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["missing"], json!(["mailer", "webhook"]));
    assert_eq!(health["services"], json!({"generator": "up", "store": "up", "mailer": "down", "webhook": "down"}));
    for field in ["timestamp", "version", "nats"] {
        assert!(health.get(field).is_some(), "{field} kept");
    }
}

#[tokio::test]
async fn the_openai_images_api_answers_errors_in_openais_shape_and_lists_models() {
    let ingest = ingest();
    let request = |body: &str| {
        Request::post("/v1/images/generations")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let (status, answer, _) = ingest.send(request(r#"{"prompt": "a fox", "partial_images": 2}"#)).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["type"], "invalid_request_error");
    assert_eq!(answer["error"]["param"], "partial_images");
    let (status, answer, _) = ingest.send(request(r#"{"prompt": "a fox", "n": 11}"#)).await;
    assert_eq!(status, 400);
    assert!(answer["error"]["message"].as_str().unwrap().contains("n must be from 1 to 10"), "{answer}");
    assert!(ingest.queued().is_empty());

    let (status, models, _) = ingest.send(Request::get("/v1/models").body(Body::empty()).unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "huiying/placeholder");
}

#[tokio::test]
async fn a_private_picture_opens_by_its_signed_link_until_it_expires_and_a_changed_link_never() {
    let images = tempfile::tempdir().unwrap();
    std::fs::write(images.path().join("huiying_image_1.jpg"), b"the picture").unwrap();
    std::fs::write(images.path().join("huiying_image_2.jpg"), b"another").unwrap();
    let folder = images.path().to_path_buf();
    let ingest = ingest_with(
        |config| {
            config.server.images_dir = folder;
            config.server.public_pictures = false;
            config.server.api_keys = vec![Secret::new("key-one")];
        },
        None,
    );
    let get = |uri: String| Request::get(uri).body(Body::empty()).unwrap();
    // The link a mail carries, signed with the link key the mailer shares.
    let keys = crate::links::LinkKeys::new(&[b"test link key"]);
    let path = "/static/images/huiying_image_1.jpg";
    let now = ingest.now.lock().unwrap().unix_timestamp();
    let query = keys.picture_query(path, now + 3600);

    let (status, body, _) = ingest.send(get(format!("{path}?{query}"))).await;
    assert_eq!((status, body), (200, Value::String("the picture".into())));
    assert_eq!(ingest.send(get(path.into())).await.0, 401, "without the signature it needs a key");
    let (status, body, _) = ingest.send(get(format!("/static/images/huiying_image_2.jpg?{query}"))).await;
    assert_eq!(status, 403, "another picture under the same signature: {body}");
    let forged = query.replace(&format!("exp={}", now + 3600), &format!("exp={}", now + 999_999));
    assert_eq!(ingest.send(get(format!("{path}?{forged}"))).await.0, 403, "a moved expiry");

    *ingest.now.lock().unwrap() += time::Duration::hours(2);
    let (status, body, _) = ingest.send(get(format!("{path}?{query}"))).await;
    assert_eq!(status, 410, "{body}");
    assert!(body["error"].as_str().unwrap().contains("expired"));
}

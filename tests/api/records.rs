//! A user's history: records listed, searched, filtered and fetched through ingest,
//! which asks the store over NATS. Every story runs twice: on SQLite and on PostgreSQL,
//! which must give the same answers.

use huiying::contract::values::{JobId, ModelName, Prompt};
use serde_json::{Value, json};
use time::macros::datetime;

use huiying::contract::events::{JobKind, Labels};
use huiying::contract::records::Record;
use huiying::store::records::{Records, timestamp};

use crate::helpers::{Backend, RecordsBackend, TestApp, wait_for};

crate::on_both_backends!(
    records_come_newest_first_in_pages_and_an_empty_page_is_an_empty_list,
    a_keyword_finds_chinese_and_english_in_either_prompt,
    date_filters_are_whole_utc_days_inclusive,
    a_record_is_fetched_by_job_id_and_an_unknown_one_is_a_404,
    a_redelivered_generated_event_leaves_one_record,
    bytes_that_are_no_picture_end_as_a_store_failure_with_a_clear_reason,
    records_say_which_labels_their_pictures_carry_and_filter_on_them,
    edit_records_list_edits_by_kind_and_records_filter_on_kind,
    a_page_of_long_prompts_larger_than_a_nats_message_comes_whole_and_in_order,
    a_record_the_database_refuses_fails_its_job_at_the_store_with_a_mail_and_a_dead_letter,
    a_search_past_its_time_is_stopped_with_a_503_and_storing_goes_on,
    a_pick_marks_one_record_of_its_group_and_a_later_pick_moves_the_mark,
);

/// Writes records straight into the store's database, with chosen times.
async fn seed(app: &TestApp, rows: &[(&str, &str, &str, time::OffsetDateTime)]) {
    let records = Records::open(&app.config.database).await.unwrap();
    for (n, (original, english, model, at)) in rows.iter().enumerate() {
        let job_id = format!("00000000-0000-4000-9000-{n:012}");
        records
            .insert(&Record {
                owner: None,
                cost: Default::default(),
                fallback: None,
                group_id: None,
                picked: false,
                id: 0,
                original_prompt: original.to_string(),
                english_prompt: english.to_string(),
                model: model.to_string(),
                local_path: format!("images/huiying_image_{n}.jpg"),
                r2_url: None,
                r2_error: None,
                file_size: 1000 + n as u64,
                width: 512,
                height: 512,
                format: "jpeg".into(),
                created_at: timestamp(*at),
                updated_at: timestamp(*at),
                user: None,
                // Every second picture has the implicit label, every third the visible one.
                labels: Labels { implicit: n % 2 == 0, explicit: n % 3 == 0 },
                kind: Default::default(),
                inputs: Vec::new(),
                job_id,
            })
            .await
            .unwrap();
    }
}

async fn get(app: &TestApp, path_and_query: &str) -> (u16, Value) {
    let response = app.http.get(format!("{}{path_and_query}", app.address)).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The pipeline with its records in `backend`. The store creates the schema at start;
/// this waits for it before seeding.
async fn spawn_with_store(backend: Backend) -> (TestApp, RecordsBackend) {
    let records = RecordsBackend::create(backend).await;
    let app = TestApp::spawn_with(|config, _| records.configure(config)).await;
    wait_for("the store's records service", std::time::Duration::from_secs(20), || async {
        (get(&app, "/records").await.0 == 200).then_some(())
    })
    .await;
    (app, records)
}

async fn records_come_newest_first_in_pages_and_an_empty_page_is_an_empty_list(backend: Backend) {
    let (app, _records) = spawn_with_store(backend).await;
    let rows: Vec<(String, time::OffsetDateTime)> = (0..45)
        .map(|n| (format!("picture {n}"), datetime!(2026-11-01 00:00 UTC) + time::Duration::minutes(n)))
        .collect();
    let rows: Vec<(&str, &str, &str, time::OffsetDateTime)> =
        rows.iter().map(|(p, at)| (p.as_str(), p.as_str(), "huiying/placeholder", *at)).collect();
    seed(&app, &rows).await;

    let (status, first) = get(&app, "/records").await;
    assert_eq!(status, 200);
    assert_eq!(
        (first["total"].as_u64(), first["page"].as_u64(), first["limit"].as_u64(), first["pages"].as_u64()),
        (Some(45), Some(1), Some(20), Some(3))
    );
    assert_eq!(first["records"].as_array().unwrap().len(), 20);
    assert_eq!(first["records"][0]["original_prompt"], "picture 44");
    assert!(first["records"][0]["url"].as_str().unwrap().ends_with("/static/images/huiying_image_44.jpg"));

    let (_, last) = get(&app, "/api/records?page=3").await;
    let prompts: Vec<&str> =
        last["records"].as_array().unwrap().iter().map(|r| r["original_prompt"].as_str().unwrap()).collect();
    assert_eq!(prompts, vec!["picture 4", "picture 3", "picture 2", "picture 1", "picture 0"]);
    let (_, beyond) = get(&app, "/records?page=4").await;
    assert_eq!(beyond["records"], json!([]));
    let (_, all) = get(&app, "/records?limit=100").await;
    assert_eq!(all["records"].as_array().unwrap().len(), 45);

    // Out of range, as the original service did: clamped, and the values used are echoed.
    for (query, page, limit) in
        [("limit=101", 1, 100), ("limit=0", 1, 20), ("page=0", 1, 20), ("page=-3&limit=-1", 1, 20)]
    {
        let (status, body) = get(&app, &format!("/records?{query}")).await;
        assert_eq!(status, 200, "{query}");
        assert_eq!((body["page"].as_u64(), body["limit"].as_u64()), (Some(page), Some(limit)), "{query}");
    }
    // Not a number, or not a parameter at all: a 400 naming it.
    for (query, parameter) in [("page=two", "page"), ("sort=asc", "sort")] {
        let (status, body) = get(&app, &format!("/records?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(body["error"].as_str().unwrap().contains(parameter), "{query}: {body}");
    }
}

async fn a_keyword_finds_chinese_and_english_in_either_prompt(backend: Backend) {
    let (app, _records) = spawn_with_store(backend).await;
    let at = datetime!(2026-11-20 12:00 UTC);
    seed(
        &app,
        &[
            ("一只坐在月球上的猫", "A cat sitting on the moon", "m/a", at),
            ("海边的灯塔", "A lighthouse by the sea", "m/a", at + time::Duration::minutes(1)),
            ("a red fox in the snow", "a red fox in the snow", "m/b", at + time::Duration::minutes(2)),
            ("100% 纯猫", "100% pure cat", "m/b", at + time::Duration::minutes(3)),
        ],
    )
    .await;

    let prompts = |body: &Value| -> Vec<String> {
        body["records"].as_array().unwrap().iter().map(|r| r["original_prompt"].as_str().unwrap().to_string()).collect()
    };
    for (keyword, expected) in [
        ("月球上", vec!["一只坐在月球上的猫"]), // Chinese, full-text
        ("月球", vec!["一只坐在月球上的猫"]),   // two characters
        ("灯塔", vec!["海边的灯塔"]),
        ("猫", vec!["100% 纯猫", "一只坐在月球上的猫"]), // one character
        ("LIGHTHOUSE", vec!["海边的灯塔"]),              // English prompt, any case
        ("red fox", vec!["a red fox in the snow"]),
        ("100%", vec!["100% 纯猫"]), // % is not a wildcard
        ("unicorn", vec![]),
    ] {
        let (status, body) = get(&app, &format!("/records?keyword={}", urlencoding(keyword))).await;
        assert_eq!(status, 200);
        assert_eq!(prompts(&body), expected, "keyword {keyword}");
        assert_eq!(body["total"].as_u64().unwrap() as usize, expected.len());
    }
    let (_, by_model) = get(&app, "/records?model=m/b&keyword=fox").await;
    assert_eq!(prompts(&by_model), vec!["a red fox in the snow"]);
}

async fn date_filters_are_whole_utc_days_inclusive(backend: Backend) {
    let (app, _records) = spawn_with_store(backend).await;
    seed(
        &app,
        &[
            ("before", "before", "m", datetime!(2026-11-27 23:59:59.999 UTC)),
            ("first thing", "first thing", "m", datetime!(2026-11-28 00:00 UTC)),
            ("last thing", "last thing", "m", datetime!(2026-11-28 23:59:59.999 UTC)),
            ("after", "after", "m", datetime!(2026-11-29 00:00 UTC)),
        ],
    )
    .await;

    let (_, day) = get(&app, "/records?date_from=2026-11-28&date_to=2026-11-28").await;
    let prompts: Vec<&str> =
        day["records"].as_array().unwrap().iter().map(|r| r["original_prompt"].as_str().unwrap()).collect();
    assert_eq!(prompts, vec!["last thing", "first thing"]);
    let (_, since) = get(&app, "/records?date_from=2026-11-29").await;
    assert_eq!(since["total"], 1);

    for (query, parameter) in [
        ("date_from=28-11-2026", "date_from"),
        ("date_to=2026-13-01", "date_to"),
        ("date_from=2026-11-29&date_to=2026-11-28", "date_from"),
    ] {
        let (status, body) = get(&app, &format!("/records?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(body["error"].as_str().unwrap().contains(parameter), "{query}: {body}");
    }
}

async fn records_say_which_labels_their_pictures_carry_and_filter_on_them(backend: Backend) {
    let (app, _records) = spawn_with_store(backend).await;
    let at = datetime!(2026-11-28 12:00 UTC);
    // seed() labels picture n implicitly when n is even, visibly when n is a multiple of 3.
    let rows: Vec<(String, time::OffsetDateTime)> =
        (0..6).map(|n| (format!("picture {n}"), at + time::Duration::minutes(n))).collect();
    let rows: Vec<(&str, &str, &str, time::OffsetDateTime)> =
        rows.iter().map(|(prompt, at)| (prompt.as_str(), prompt.as_str(), "m", *at)).collect();
    seed(&app, &rows).await;

    let prompts = |page: &Value| -> Vec<String> {
        page["records"].as_array().unwrap().iter().map(|r| r["original_prompt"].as_str().unwrap().to_string()).collect()
    };
    let (_, all) = get(&app, "/records").await;
    assert_eq!(all["records"][0]["original_prompt"], "picture 5");
    assert_eq!(all["records"][0]["labels"], json!({"implicit": false, "explicit": false}));
    assert_eq!(all["records"][5]["labels"], json!({"implicit": true, "explicit": true}));
    let (_, implicit) = get(&app, "/records?implicit_label=true").await;
    assert_eq!(prompts(&implicit), ["picture 4", "picture 2", "picture 0"]);
    let (_, unlabelled) = get(&app, "/records?implicit_label=false&explicit_label=false").await;
    assert_eq!(prompts(&unlabelled), ["picture 5", "picture 1"]);
    let (_, visible) = get(&app, "/records?explicit_label=1").await;
    assert_eq!(prompts(&visible), ["picture 3", "picture 0"]);

    let (status, body) = get(&app, "/records?explicit_label=maybe").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("explicit_label must be true or false"), "{body}");
}

async fn edit_records_list_edits_by_kind_and_records_filter_on_kind(backend: Backend) {
    let (app, _records) = spawn_with_store(backend).await;
    let at = datetime!(2026-11-28 12:00 UTC);
    let kinds = [JobKind::Generate, JobKind::Edit, JobKind::Style, JobKind::Compose, JobKind::Generate];
    let records = Records::open(&app.config.database).await.unwrap();
    for (n, kind) in kinds.into_iter().enumerate() {
        let when = timestamp(at + time::Duration::minutes(n as i64));
        records
            .insert(&Record {
                owner: None,
                cost: Default::default(),
                fallback: None,
                group_id: None,
                picked: false,
                id: 0,
                job_id: format!("00000000-0000-4000-9100-{n:012}"),
                original_prompt: format!("{} {n}", kind.name()),
                english_prompt: format!("{} {n}", kind.name()),
                model: "m".into(),
                local_path: format!("images/huiying_edit_{n}.jpg"),
                r2_url: None,
                r2_error: None,
                file_size: 1,
                width: 8,
                height: 8,
                format: "jpeg".into(),
                created_at: when.clone(),
                updated_at: when,
                user: None,
                labels: Labels::default(),
                kind,
                inputs: (0..n).map(|i| format!("upload:input-{i}")).collect(),
            })
            .await
            .unwrap();
    }
    // /records shows original_prompt, /edit-records the original's edit_prompt.
    let prompts = |page: &Value| -> Vec<String> {
        let prompt = |r: &Value| r.get("edit_prompt").unwrap_or(&r["original_prompt"]).as_str().unwrap().to_string();
        page["records"].as_array().unwrap().iter().map(prompt).collect()
    };

    let (_, edits) = get(&app, "/edit-records").await;
    assert_eq!(prompts(&edits), ["compose 3", "style 2", "edit 1"], "edits only, newest first");
    assert_eq!(edits["records"][0]["input_image_urls"], json!(["upload:input-0", "upload:input-1", "upload:input-2"]));
    assert_eq!(edits["records"][0]["edit_type"], "compose");
    let (_, style) = get(&app, "/edit-records?edit_type=style").await;
    assert_eq!(prompts(&style), ["style 2"]);
    let (_, paged) = get(&app, "/edit-records?limit=2&page=2").await;
    assert_eq!((prompts(&paged), paged["pages"].as_u64()), (vec!["edit 1".to_string()], Some(2)));
    let (_, generations) = get(&app, "/records?kind=generate").await;
    assert_eq!(prompts(&generations), ["generate 4", "generate 0"]);
    let (status, body) = get(&app, "/edit-records?edit_type=generate").await;
    assert_eq!(status, 400, "{body}");
}

async fn a_record_is_fetched_by_job_id_and_an_unknown_one_is_a_404(backend: Backend) {
    let (app, _records) = spawn_with_store(backend).await;
    let id = app.submit(json!({"prompt": "a record to fetch"})).await;
    let job = app.wait_for_job(&id).await;

    let (status, record) = get(&app, &format!("/records/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(record["job_id"], id.as_str());
    assert_eq!(record["original_prompt"], "a record to fetch");
    assert_eq!(record["url"], job["result"]["url"]);

    let (status, missing) = get(&app, "/api/records/00000000-0000-4000-8000-000000000000").await;
    assert_eq!(status, 404);
    assert!(missing["error"].as_str().unwrap().contains("no record"));

    let (status, images) = get(&app, "/images").await;
    assert_eq!(status, 200);
    let image = &images["images"][0];
    assert_eq!(image["url"], job["result"]["url"]);
    assert!(image["filename"].as_str().unwrap().starts_with("huiying_image_") && image["size"].as_u64().unwrap() > 0);
    assert!(image["created_time"].as_str().unwrap().ends_with('Z'));
}

async fn a_redelivered_generated_event_leaves_one_record(backend: Backend) {
    let (app, _records) = spawn_with_store(backend).await;
    assert_eq!(app.post_generate(json!({"prompt": "only one of me"})).await.status(), 200);
    let js = async_nats::jetstream::new(app.nats.clone());
    let stream = js.get_stream(huiying::contract::STREAM).await.unwrap();
    let generated = stream.get_last_raw_message_by_subject("image.generated").await.unwrap();

    app.publish("image.generated", std::str::from_utf8(&generated.payload).unwrap()).await;
    app.wait_until_consumer_idle("store").await;

    assert_eq!(get(&app, "/records").await.1["total"], 1);
}

async fn a_search_past_its_time_is_stopped_with_a_503_and_storing_goes_on(backend: Backend) {
    let records = RecordsBackend::create(backend).await;
    // A search may run a millisecond here: any that reads a few hundred long prompts is too long.
    let app = TestApp::spawn_with(|config, _| {
        records.configure(config);
        config.database.search_timeout_ms = 1;
    })
    .await;
    let start = datetime!(2026-11-01 00:00 UTC);
    let long = "a lighthouse on a cliff at dawn, waves below, gulls above; ".repeat(60);
    let rows: Vec<(&str, &str, &str, time::OffsetDateTime)> =
        (0..600).map(|n| (long.as_str(), long.as_str(), "m", start + time::Duration::minutes(n))).collect();
    seed(&app, &rows).await;

    let began = std::time::Instant::now();
    let (status, answer) = get(&app, "/records?keyword=zq&limit=100").await;
    assert_eq!(status, 503, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("narrow it"), "{answer}");
    assert!(began.elapsed() < std::time::Duration::from_secs(5), "stopped, not waited out: {:?}", began.elapsed());
    // Storing never waits for searches: the next job completes and is recorded.
    let job = app.submit(json!({"prompt": "stored while searches are stopped"})).await;
    assert_eq!(app.wait_for_job(&job).await["status"], "completed");
    assert!(app.smtp.wait_for_mails(1).await[0].text.contains("stored while searches"), "and its mail arrives");
}

/// The generator's event for job `id`, its picture in the object store under the job's id
/// (as a large picture travels).
fn generated_through_the_bucket(id: &str, prompt: &str) -> huiying::contract::events::ImageGenerated {
    let now = time::OffsetDateTime::now_utc();
    huiying::contract::events::ImageGenerated {
        cost: Default::default(),
        owner: None,
        version: 1,
        id: JobId::parse(id).unwrap(),
        prompt: Prompt::parse(prompt).unwrap(),
        english_prompt: prompt.into(),
        model: ModelName::parse("some/model").unwrap(),
        provider: "openrouter".into(),
        picture: huiying::contract::events::PictureAt::Object {
            bucket: huiying::contract::IMAGES_BUCKET.into(),
            object: id.into(),
        },
        content_type: "image/png".into(),
        byte_size: 21,
        attempts: 1,
        notify_email: None,
        callback: Default::default(),
        ignored_options: Vec::new(),
        fallback: None,
        user: None,
        kind: Default::default(),
        inputs: Vec::new(),
        group: None,
        requested_at: now,
        generated_at: now,
    }
}

async fn bytes_that_are_no_picture_end_as_a_store_failure_with_a_clear_reason(backend: Backend) {
    let (app, _records) = spawn_with_store(backend).await;
    let js = async_nats::jetstream::new(app.nats.clone());
    let bucket = js.get_object_store(huiying::contract::IMAGES_BUCKET).await.unwrap();
    let id = "00000000-0000-4000-8000-0000000000bd";
    bucket.put(id, &mut "this is not a picture".as_bytes()).await.unwrap();
    let generated = generated_through_the_bucket(id, "broken bytes");

    app.publish("image.generated", &serde_json::to_string(&generated).unwrap()).await;

    let job = app.wait_for_job(id).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error"]["stage"], "store");
    assert!(job["error"]["error"].as_str().unwrap().contains("could not be decoded"), "{job}");
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.text.contains("保存图片") && mail.text.contains("could not be decoded"));
    assert_eq!(get(&app, "/records").await.1["total"], 0);
    let files = std::fs::read_dir(&app.config.server.images_dir).unwrap().count();
    assert_eq!(files, 0, "no half-written file");
}

async fn a_page_of_long_prompts_larger_than_a_nats_message_comes_whole_and_in_order(backend: Backend) {
    let (app, _records) = spawn_with_store(backend).await;
    // A hundred records whose prompts are as long as a prompt may be: about 2.4 MB of
    // JSON, more than twice what one NATS message holds.
    let start = datetime!(2026-11-01 00:00 UTC);
    let originals: Vec<String> = (0..100).map(|n| format!("{n:03}{}", "长".repeat(3997))).collect();
    let english: Vec<String> = (0..100).map(|n| format!("{n:03} {}", "long ".repeat(1600))).collect();
    let rows: Vec<(&str, &str, &str, time::OffsetDateTime)> = (0..100)
        .map(|n| (originals[n].as_str(), english[n].as_str(), "m", start + time::Duration::minutes(n as i64)))
        .collect();
    seed(&app, &rows).await;

    let began = std::time::Instant::now();
    let (status, page) = get(&app, "/records?limit=100").await;
    assert_eq!(status, 200, "{}", page.to_string().chars().take(300).collect::<String>());
    assert!(began.elapsed() < std::time::Duration::from_secs(8), "answered, not timed out: {:?}", began.elapsed());
    let records = page["records"].as_array().unwrap();
    assert_eq!((records.len(), page["total"].as_u64()), (100, Some(100)));
    let order: Vec<String> = records.iter().map(|r| r["original_prompt"].as_str().unwrap()[..3].to_string()).collect();
    let newest_first: Vec<String> = (0..100).rev().map(|n| format!("{n:03}")).collect();
    assert_eq!(order, newest_first, "every record once, newest first");
    assert!(page.get("more").is_none(), "how the store sent it is not the client's business");
    let (_, second) = get(&app, "/records?limit=60&page=2").await;
    assert_eq!(second["records"].as_array().unwrap().len(), 40);
}

async fn a_record_the_database_refuses_fails_its_job_at_the_store_with_a_mail_and_a_dead_letter(backend: Backend) {
    let (app, _records) = spawn_with_store(backend).await;
    let js = async_nats::jetstream::new(app.nats.clone());
    let bucket = js.get_object_store(huiying::contract::IMAGES_BUCKET).await.unwrap();
    let id = "00000000-0000-4000-8000-0000000000be";
    bucket.put(id, &mut crate::helpers::tiny_png().as_slice()).await.unwrap();
    // An edit whose input link ends in a NUL, published straight to NATS (ingest refuses
    // it at the door): PostgreSQL can never store that text.
    let input = huiying::contract::events::InputPicture {
        object: "input/x/0".into(),
        content_type: "image/png".into(),
        width: 1,
        height: 1,
        source: "https://example.com/a.png#\u{0}".into(),
        url: "http://localhost/inputs/x/0".into(),
        mask: false,
    };
    let generated = huiying::contract::events::ImageGenerated {
        kind: JobKind::Edit,
        inputs: vec![input],
        ..generated_through_the_bucket(id, "a NUL in its input")
    };
    app.publish("image.generated", &serde_json::to_string(&generated).unwrap()).await;

    match backend {
        // SQLite keeps any text: the record is written.
        Backend::Sqlite => assert_eq!(app.wait_for_job(id).await["status"], "completed"),
        // PostgreSQL refuses it, and says why: the job fails once, is not retried forever.
        Backend::Postgres => {
            let job = app.wait_for_job(id).await;
            assert_eq!((job["status"].as_str(), job["error"]["stage"].as_str()), (Some("failed"), Some("store")));
            assert!(job["error"]["error"].as_str().unwrap().contains("the database refused the record"), "{job}");
            let mail = &app.smtp.wait_for_mails(1).await[0];
            assert!(mail.text.contains("保存图片"), "{}", mail.text);
            let dead = js.get_stream(huiying::contract::DEAD_LETTER_STREAM).await.unwrap();
            let kept = dead.get_last_raw_message_by_subject("huiying.dead.image.generated").await.unwrap();
            assert!(kept.headers.get("Huiying-Reason").unwrap().as_str().contains("refused the record"));
        }
    }
    // Nothing else stopped: the next ordinary job completes.
    let next = app.submit(json!({"prompt": "after the refused record"})).await;
    assert_eq!(app.wait_for_job(&next).await["status"], "completed");
    let mails = app.smtp.wait_for_mails(2).await;
    assert!(mails.iter().any(|mail| mail.text.contains("after the refused record")), "and its mail arrives");
}

fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_picture_files_come_newest_first_a_page_at_a_time() {
    let (app, _records) = spawn_with_store(Backend::Sqlite).await;
    let dir = &app.config.server.images_dir;
    std::fs::create_dir_all(dir).unwrap();
    for n in 0..3 {
        let path = dir.join(format!("huiying_image_{n}.jpg"));
        std::fs::write(&path, crate::helpers::tiny_png()).unwrap();
        let at = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000 + n * 60);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(at).unwrap();
    }
    let (status, first) = get(&app, "/images?limit=2").await;
    assert_eq!(status, 200);
    let names = |page: &Value| -> Vec<String> {
        page["images"].as_array().unwrap().iter().map(|i| i["filename"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(&first), ["huiying_image_2.jpg", "huiying_image_1.jpg"]);
    assert_eq!(
        (first["total"].as_u64(), first["pages"].as_u64(), first["limit"].as_u64()),
        (Some(3), Some(2), Some(2))
    );
    let (_, second) = get(&app, "/images?limit=2&page=2").await;
    assert_eq!(names(&second), ["huiying_image_0.jpg"]);
    let (_, all) = get(&app, "/images?limit=5000").await;
    assert_eq!(all["limit"], 1000, "at most 1000 a page");
}

async fn a_pick_marks_one_record_of_its_group_and_a_later_pick_moves_the_mark(backend: Backend) {
    let (app, _records) = spawn_with_store(backend).await;
    let answer: Value = app.post_generate(json!({"prompt": "three foxes", "n": 3})).await.json().await.unwrap();
    let group = answer["id"].as_str().unwrap();
    let (_, view) = get(&app, &format!("/groups/{group}")).await;
    let jobs: Vec<String> = view["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().into()).collect();
    let pick =
        |job: &str| app.http.post(format!("{}/groups/{group}/pick", app.address)).json(&json!({"job": job})).send();

    assert_eq!(pick(&jobs[1]).await.unwrap().status(), 200);
    assert_eq!(pick(&jobs[2]).await.unwrap().status(), 200);

    let (_, page) = get(&app, "/records").await;
    let marked: Vec<(&str, bool)> = (page["records"].as_array().unwrap().iter())
        .map(|r| (r["job_id"].as_str().unwrap(), r["picked"] == true))
        .filter(|(_, picked)| *picked)
        .collect();
    assert_eq!(marked, [(jobs[2].as_str(), true)], "only the last pick is marked: {page}");
    assert!(page["records"].as_array().unwrap().iter().all(|r| r["group_id"] == group), "{page}");
}

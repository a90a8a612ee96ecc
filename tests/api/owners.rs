//! Keys own their work, on the whole pipeline: three keys share one huiying, each sees
//! its own pictures; a delete or the retention sweep leaves nothing behind anywhere
//! (disk, R2 / S3, the NATS picture bucket, the database and its full-text index).

use std::time::Duration;

use base64::Engine;
use huiying::config::{Config, KeyConfig, Secret};
use huiying::contract::IMAGES_BUCKET;
use huiying::store::records::Records;
use serde_json::{Value, json};

use crate::helpers::{Backend, RecordsBackend, S3Server, TestApp, nats_password, wait_for};

crate::on_both_backends!(
    each_key_lists_and_opens_only_its_own_pictures_and_an_admin_all_with_their_owners,
    a_deleted_picture_is_gone_from_disk_r2_nats_and_the_database_and_a_second_delete_is_204,
    the_retention_sweep_deletes_pictures_past_keep_days_as_a_delete_does,
);

/// `design` and `ops` (ordinary keys) and `root` (an admin).
fn three_keys(config: &mut Config) {
    let key = |name: &str, admin| KeyConfig {
        name: name.into(),
        key: Secret::new(format!("{name}-key")),
        admin,
        ..KeyConfig::default()
    };
    config.server.keys = vec![key("design", false), key("ops", false), key("root", true)];
}

/// `GET path` (or another method) as key `name`: the status and the JSON answer.
async fn call(app: &TestApp, method: reqwest::Method, name: &str, path: &str) -> (u16, Value) {
    let response =
        app.http.request(method, format!("{}{path}", app.address)).bearer_auth(format!("{name}-key")).send().await;
    let response = response.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, name: &str, path: &str) -> (u16, Value) {
    call(app, reqwest::Method::GET, name, path).await
}

/// Draws `prompt` as key `name` and waits for the picture; its job id.
async fn draw(app: &TestApp, name: &str, prompt: &str) -> String {
    let response = app
        .http
        .post(format!("{}/generate-image", app.address))
        .bearer_auth(format!("{name}-key"))
        .json(&json!({"prompt": prompt}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

fn job_ids(page: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        page["records"].as_array().unwrap().iter().map(|r| r["job_id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

async fn each_key_lists_and_opens_only_its_own_pictures_and_an_admin_all_with_their_owners(backend: Backend) {
    let records = RecordsBackend::create(backend).await;
    let app = TestApp::spawn_with(|config, _| {
        records.configure(config);
        three_keys(config);
    })
    .await;
    let designs = draw(&app, "design", "a red fox").await;
    let ops = draw(&app, "ops", "a grey wolf").await;

    let (_, page) = get(&app, "design", "/records").await;
    assert_eq!(job_ids(&page), std::slice::from_ref(&designs));
    assert_eq!(page["records"][0]["owner"], "design");
    let (_, page) = get(&app, "ops", "/records?keyword=fox").await;
    assert_eq!(page["total"], 0, "another key's prompt is not found either: {page}");
    let (_, page) = get(&app, "root", "/records").await;
    let mut both = vec![designs.clone(), ops.clone()];
    both.sort();
    assert_eq!(job_ids(&page), both);
    let (_, page) = get(&app, "root", "/records?owner=ops").await;
    assert_eq!(job_ids(&page), std::slice::from_ref(&ops));

    let (_, images) = get(&app, "design", "/images").await;
    assert_eq!(images["total"], 1, "{images}");
    let (_, images) = get(&app, "root", "/images").await;
    assert_eq!(images["total"], 2, "{images}");

    for path in [
        format!("/jobs/{designs}"),
        format!("/jobs/{designs}/events"),
        format!("/jobs/{designs}/notifications"),
        format!("/records/{designs}"),
    ] {
        assert_eq!(get(&app, "ops", &path).await.0, 404, "{path} for another key");
        assert_eq!(get(&app, "design", &path).await.0, 200, "{path} for its owner");
        assert_eq!(get(&app, "root", &path).await.0, 200, "{path} for an admin");
    }
    let (status, _) = call(&app, reqwest::Method::DELETE, "ops", &format!("/records/{designs}")).await;
    assert_eq!(status, 404, "another key cannot delete it");
    assert_eq!(get(&app, "design", &format!("/records/{designs}")).await.0, 200, "and it is still there");
}

/// A picture of noise (it does not compress): an edit of it is too large to travel inside
/// the event, so both it and its input wait in the NATS picture bucket.
fn noise(size: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let pixels = image::RgbImage::from_fn(size, size, |_, _| image::Rgb([fastrand::u8(..), fastrand::u8(..), 7]));
    pixels.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Edits a noisy upload with the placeholder as `design`; its job id once stored.
async fn designs_edit(app: &TestApp) -> String {
    let upload = json!({
        "base64_data": base64::engine::general_purpose::STANDARD.encode(noise(300)),
        "file_name": "noise.png",
        "mime_type": "image/png",
    });
    let response = app.http.post(format!("{}/upload-image", app.address)).bearer_auth("design-key").json(&upload);
    let uploaded: Value = response.send().await.unwrap().json().await.unwrap();
    let edit =
        json!({"image_url": uploaded["url"], "edit_prompt": "a fox in the noise", "model": "huiying/placeholder"});
    let response = app.http.post(format!("{}/edit-image", app.address)).bearer_auth("design-key").json(&edit);
    let task: Value = response.send().await.unwrap().json().await.unwrap();
    let id = task["task_id"].as_str().unwrap().to_string();
    wait_for("the edit to be stored", Duration::from_secs(60), || async {
        let (_, job) = get(app, "design", &format!("/jobs/{id}")).await;
        (job["status"] == "completed").then_some(())
    })
    .await;
    id
}

/// Every place the job's picture could still be: what is found there.
async fn traces(app: &TestApp, s3: &S3Server, job: &str, filename: &str) -> Vec<String> {
    let mut found = Vec::new();
    let dir = &app.config.server.images_dir;
    let thumbnail = huiying::contract::records::thumbnail_name(filename);
    for file in [filename.to_string(), thumbnail.clone()] {
        if dir.join(&file).exists() {
            found.push(format!("disk {file}"));
        }
        if s3.object(&format!("images/{file}")).await.is_some() {
            found.push(format!("s3 images/{file}"));
        }
    }
    let js = async_nats::jetstream::new(app.nats.clone());
    let bucket = js.get_object_store(IMAGES_BUCKET).await.unwrap();
    for object in [format!("{job}.1"), format!("input/{job}/0")] {
        if bucket.get(&object).await.is_ok() {
            found.push(format!("nats {object}"));
        }
    }
    let records = Records::open(&app.config.database).await.unwrap();
    if records.by_job(job).await.unwrap().is_some() {
        found.push("database row".into());
    }
    if app.config.database.url.is_set() {
        return found;
    }
    // SQLite's full-text index is a table of its own: its entry must go too.
    let db = rusqlite::Connection::open(&app.config.database.path).unwrap();
    let indexed: i64 = db
        .query_row("SELECT COUNT(*) FROM image_records_fts WHERE image_records_fts MATCH '\"noise\"'", [], |row| {
            row.get(0)
        })
        .unwrap();
    if indexed > 0 {
        found.push("full-text index".into());
    }
    found
}

async fn a_deleted_picture_is_gone_from_disk_r2_nats_and_the_database_and_a_second_delete_is_204(backend: Backend) {
    let records = RecordsBackend::create(backend).await;
    let s3 = S3Server::start().await;
    let app = TestApp::spawn_with(|config, _| {
        records.configure(config);
        s3.configure(config);
        three_keys(config);
    })
    .await;
    let job = designs_edit(&app).await;
    let (_, record) = get(&app, "design", &format!("/records/{job}")).await;
    let filename = record["local_path"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let mut before = traces(&app, &s3, &job, &filename).await;
    before.sort();
    let sqlite = !app.config.database.url.is_set();
    assert_eq!(before.len(), 8 - usize::from(!sqlite), "every place holds it before: {before:?}");

    let (status, answer) = call(&app, reqwest::Method::DELETE, "design", &format!("/records/{job}")).await;
    assert_eq!(status, 204, "{answer}");
    assert_eq!(traces(&app, &s3, &job, &filename).await, Vec::<String>::new(), "nothing is left");
    assert_eq!(call(&app, reqwest::Method::DELETE, "design", &format!("/jobs/{job}")).await.0, 204, "again");
    let number = record["id"].as_i64().unwrap();
    assert_eq!(call(&app, reqwest::Method::DELETE, "design", &format!("/records/{number}")).await.0, 204, "by number");
    assert_eq!(call(&app, reqwest::Method::DELETE, "ops", &format!("/records/{number}")).await.0, 404, "not ops's");
    assert_eq!(get(&app, "design", &format!("/jobs/{job}")).await.0, 404);
    assert_eq!(get(&app, "design", &format!("/records/{job}")).await.0, 404);
    let link = app.http.get(record["local_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(link.status(), 404, "the picture link is dead");
    let (_, page) = get(&app, "root", "/records?keyword=noise").await;
    assert_eq!(page["total"], 0);
}

async fn the_retention_sweep_deletes_pictures_past_keep_days_as_a_delete_does(backend: Backend) {
    let records = RecordsBackend::create(backend).await;
    let s3 = S3Server::start().await;
    let mut app = TestApp::spawn_with(|config, _| {
        records.configure(config);
        s3.configure(config);
        three_keys(config);
        config.retention.keep_days = 30;
    })
    .await;
    let old = designs_edit(&app).await;
    let (_, record) = get(&app, "design", &format!("/records/{old}")).await;
    let filename = record["local_path"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    let recent = draw(&app, "design", "a fox today").await;
    // The first picture was stored 31 days ago, as far as its record says.
    age_record(&app, &old, 31).await;
    // A store starting sweeps at once (then every hour).
    app.stop_service("store").await;
    app.start_service("store");
    wait_for("the sweep to delete the old picture", Duration::from_secs(30), || async {
        let records = Records::open(&app.config.database).await.ok()?;
        records.by_job(&old).await.ok()?.is_none().then_some(())
    })
    .await;
    // What the NATS bucket held of it is left to expire: past keep_days (a day at least)
    // it has, as it has not here only because the record was made old by hand.
    let left = traces(&app, &s3, &old, &filename).await;
    assert!(left.iter().all(|place| place.starts_with("nats ")), "{left:?}");
    assert_eq!(get(&app, "design", &format!("/records/{recent}")).await.0, 200, "the recent one stays");
}

/// Sets the record's time `days` back.
async fn age_record(app: &TestApp, job: &str, days: i64) {
    let at = time::OffsetDateTime::now_utc() - time::Duration::days(days);
    let stamp = huiying::store::records::timestamp(at);
    if app.config.database.url.is_set() {
        let (client, connection) =
            tokio_postgres::connect(app.config.database.url.expose(), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client.execute("UPDATE image_records SET created_at = $1 WHERE job_id = $2", &[&at, &job]).await.unwrap();
    } else {
        let db = rusqlite::Connection::open(&app.config.database.path).unwrap();
        db.execute("UPDATE image_records SET created_at = ?1 WHERE job_id = ?2", [&stamp, job]).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn huiying_records_delete_removes_a_picture_as_an_admin_would() {
    let app = TestApp::spawn_with(|config, _| three_keys(config)).await;
    let job = draw(&app, "design", "a red fox").await;
    let admin = nats_password("admin");
    let output = app.huiying(&["records", "delete", &job], &[("NATS_USER", "admin"), ("NATS_PASSWORD", &admin)]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("{job}: deleted")), "{stdout}");
    assert_eq!(get(&app, "design", &format!("/records/{job}")).await.0, 404);
    assert_eq!(app.image_files(), Vec::<String>::new(), "the file is gone");
}

const CANARY_EMAIL: &str = "canary-owner@qq.com";
/// A robot's URL carries its credential in the path (Feishu) or the query (DingTalk).
const CANARY_TOKEN: &str = "c4n4ry0t0ken0f0r0h00k0";

#[tokio::test(flavor = "multi_thread")]
async fn a_canary_address_and_webhook_token_reach_no_answer_but_an_admins_no_log_no_event_and_no_metric() {
    let receiver = crate::helpers::WebhookReceiver::start(&[]).await;
    let hook_path = format!("/bot/v2/hook/{CANARY_TOKEN}");
    let mut app = TestApp::spawn_with(|config, _| {
        three_keys(config);
        config.smtp.allowed_recipients = vec![CANARY_EMAIL.into()];
        config.webhooks.allow_private = true;
        config.webhooks.allowed_urls = vec![receiver.base.clone()];
        config.webhooks.request_secret = vec![Secret::new(crate::helpers::WEBHOOK_SECRET)];
        config.logging.level = "debug".into();
    })
    .await;
    for service in ["ingest", "generator", "store", "mailer", "webhook"] {
        app.stop_service(service).await;
    }
    // The real program, every service in it, logging at debug level into a file.
    let port = crate::helpers::free_port();
    app.config.server.port = port;
    app.config.server.public_url = format!("http://127.0.0.1:{port}");
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut up = std::process::Command::new(env!("CARGO_BIN_EXE_huiying"))
        .arg("--config")
        .arg(app.config_file())
        .arg("up")
        .env_remove("HUIYING_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::from(log.reopen().unwrap()))
        .stderr(std::process::Stdio::from(log.reopen().unwrap()))
        .spawn()
        .unwrap();
    app.address = format!("http://127.0.0.1:{port}");
    wait_for("huiying up", Duration::from_secs(30), || async {
        app.http.get(format!("{}/health", app.address)).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;

    let request = json!({"prompt": "a fox", "notify_email": CANARY_EMAIL, "webhook": receiver.url(&hook_path)});
    let response =
        app.http.post(format!("{}/generate-image", app.address)).bearer_auth("design-key").json(&request).send().await;
    let answer: Value = response.unwrap().json().await.unwrap();
    let job = answer["id"].as_str().unwrap().to_string();
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert_eq!(mail.to, [CANARY_EMAIL], "the mail went to the request's own address");
    receiver.wait_for_hooks(&hook_path, 1).await;
    wait_for("the delivery to be logged", Duration::from_secs(30), || async {
        let (_, log) = get(&app, "root", "/webhooks/deliveries").await;
        (log["deliveries"][0]["state"] == "succeeded").then_some(())
    })
    .await;

    let mut answers = String::new();
    for who in ["design", "ops"] {
        for path in [
            format!("/jobs/{job}"),
            format!("/jobs/{job}/events"),
            format!("/jobs/{job}/notifications"),
            format!("/edit-tasks/{job}"),
            format!("/records/{job}"),
            "/records".into(),
            "/images".into(),
            "/webhooks".into(),
            "/webhooks/deliveries".into(),
            "/metrics".into(),
        ] {
            let response = app.http.get(format!("{}{path}", app.address)).bearer_auth(format!("{who}-key"));
            answers.push_str(&response.send().await.unwrap().text().await.unwrap());
        }
    }
    // The owner's own view shows the targets masked.
    let (_, own) = get(&app, "design", &format!("/jobs/{job}")).await;
    assert_eq!(own["result"]["notify_email"], "c***@qq.com", "{own}");
    assert_eq!(own["result"]["webhook"], receiver.url("/bot/v2/hook/…"));
    // An admin sees them whole: they were kept, only never shown or sent around.
    let (_, admins) = get(&app, "root", &format!("/jobs/{job}")).await;
    assert_eq!(admins["result"]["notify_email"], CANARY_EMAIL);
    std::process::Command::new("kill").args(["-TERM", &up.id().to_string()]).status().unwrap();
    up.wait().unwrap();

    let mut haystack = std::fs::read_to_string(log.path()).unwrap();
    assert!(haystack.contains("DEBUG"), "the log ran at debug level");
    haystack.push_str(&answers);
    let js = async_nats::jetstream::new(app.nats.clone());
    for stream_name in [huiying::contract::STREAM, huiying::contract::DEAD_LETTER_STREAM] {
        let mut stream = js.get_stream(stream_name).await.unwrap();
        let last = stream.info().await.unwrap().state.last_sequence;
        for sequence in 1..=last {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                haystack.push_str(&String::from_utf8_lossy(&message.payload));
            }
        }
    }
    assert!(haystack.contains(&job) && haystack.contains("image.completed"), "the haystack holds the job");
    assert!(haystack.contains("c***@qq.com"), "the address was shown, masked");
    for canary in [CANARY_EMAIL, CANARY_TOKEN] {
        assert!(!haystack.contains(canary), "{canary} leaked");
    }
}

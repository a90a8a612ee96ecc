//! A drop-in for the original service: its config file, its environment, its clients.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, FakeApi, FakeResponse, NatsServer, OPENAI_PATH, OPENROUTER_PATH, RecordsBackend, TestApp, free_port,
    nats_password, openrouter_image, tiny_png, wait_for,
};

#[tokio::test(flavor = "multi_thread")]
async fn the_original_config_example_starts_every_service_with_its_notes_and_no_error() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(crate::helpers::REPO).join("tests/fixtures/original/config.example.toml");
    let port = free_port().to_string();
    let mut running = Vec::new();
    for service in ["ingest", "generator", "store", "mailer", "webhook"] {
        let log = dir.path().join(format!("{service}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_huiying"))
            .arg("--config")
            .arg(&fixture)
            .arg(service)
            .current_dir(dir.path())
            .env_remove("HUIYING_CONFIG")
            .env_remove("RUST_LOG")
            .env("NATS_URL", &nats.url)
            .env("NATS_USER", service)
            .env("NATS_PASSWORD", nats_password(service))
            .env("PORT", &port)
            // Empty, as compose files pass unset variables: changes nothing.
            .env("IMAGE_QUALITY", "")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        running.push((service, child, log));
    }
    for (service, _, log) in &running {
        let text = wait_for(&format!("{service} to be ready"), Duration::from_secs(30), || async {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            text.contains("ready").then_some(text)
        })
        .await;
        for note in ["server.max_retries", "logging.format", "logging.file", "[cloudflare_d1]", "R2 is off", "600 s"] {
            assert!(text.contains(note), "{service} says nothing of {note}: {text}");
        }
        assert!(!text.contains("ERROR") && !text.contains("bad configuration"), "{service}: {text}");
    }
    for (_, mut child, _) in running {
        assert!(child.try_wait().unwrap().is_none(), "still running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_original_clients_fields_are_accepted_and_what_a_model_cannot_honour_is_named() {
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(tiny_png());
    api.respond(OPENAI_PATH, vec![FakeResponse::ok(json!({"created": 1, "data": [{"b64_json": b64}]}))]);
    let app = TestApp::spawn_with(|config, _| api.configure(config)).await;
    // (Strict mode, which refuses instead: models::in_strict_mode_...; the guide's CORS line:
    // access::browsers_may_call_the_api_only_from_the_configured_origins.)

    // Every field the original took, on an OpenRouter model: size, quality and style are
    // left out (named in a header); the picture comes back inline; the user is recorded.
    let body = json!({"prompt": "a cat", "size": "1024x1024", "quality": "hd", "style": "vivid",
        "response_format": "b64_json", "user": "alice"});
    let response = app.post_generate(body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["huiying-ignored"], "size, quality, style");
    let answer: Value = response.json().await.unwrap();
    let picture =
        base64::engine::general_purpose::STANDARD.decode(answer["data"][0]["b64_json"].as_str().unwrap()).unwrap();
    assert!(image::load_from_memory(&picture).is_ok(), "b64_json is a picture");
    assert!(answer["data"][0]["url"].as_str().unwrap().contains("/static/images/"), "the link too");
    assert!(api.calls(OPENROUTER_PATH)[0].body.get("size").is_none(), "nothing unknown reached the model");
    let id = answer["id"].as_str().unwrap();
    let record: Value =
        app.http.get(format!("{}/records/{id}", app.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(record["user"], "alice");

    // A model that takes them gets them, and nothing is named.
    let response =
        app.post_generate(json!({"prompt": "a fox", "model": "dall-e-3", "quality": "hd", "style": "natural"})).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("huiying-ignored").is_none());
    let sent = &api.calls(OPENAI_PATH)[0].body;
    assert_eq!((sent["quality"].as_str(), sent["style"].as_str()), (Some("hd"), Some("natural")));

    // Its clients as they were: a field huiying does not know, a body sent as text/plain
    // (Gin read JSON whatever the type said). The same answer, the field named.
    for path in ["/generate-image", "/translate"] {
        let body = match path {
            "/translate" => json!({"text": "猫", "client": "app 1.4"}),
            _ => json!({"prompt": "a cat", "client": "app 1.4"}),
        };
        let response = app
            .http
            .post(format!("{}{path}", app.address))
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["huiying-ignored"], "client", "{path}");
    }
    let edit = app
        .http
        .post(format!("{}/edit-image", app.address))
        .header("Content-Type", "text/plain")
        .body(json!({"image_url": "upload:none", "edit_prompt": "x", "client": "app"}).to_string())
        .send()
        .await
        .unwrap();
    let answer: Value = edit.json().await.unwrap();
    assert!(!answer["error"].as_str().unwrap_or_default().contains("client"), "the field is not the problem: {answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn records_answer_their_integer_id_and_old_pictures_are_listed() {
    let app = TestApp::spawn().await;
    let first = app.post_generate(json!({"prompt": "numbered"})).await.json::<Value>().await.unwrap();
    let listed: Value = app.http.get(format!("{}/records", app.address)).send().await.unwrap().json().await.unwrap();
    let number = listed["records"][0]["id"].as_i64().unwrap();
    let by_number: Value =
        app.http.get(format!("{}/api/records/{number}", app.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(by_number["job_id"], first["id"]);
    let missing = app.http.get(format!("{}/records/99999", app.address)).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    // A picture the original service saved in the same folder.
    std::fs::write(app.config.server.images_dir.join("ai_image_20250831_102430_1a2b3c4d_cat.jpg"), tiny_png()).unwrap();
    let images: Value = app.http.get(format!("{}/images", app.address)).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> =
        images["images"].as_array().unwrap().iter().map(|i| i["filename"].as_str().unwrap()).collect();
    assert!(
        names.iter().any(|n| n.starts_with("ai_image_")) && names.iter().any(|n| n.starts_with("huiying_image_")),
        "{names:?}"
    );

    let health: Value = app.http.get(format!("{}/health", app.address)).send().await.unwrap().json().await.unwrap();
    for field in ["status", "timestamp", "version"] {
        assert!(health.get(field).is_some(), "the original's {field} is kept: {health}");
    }
}

crate::on_both_backends!(a_d1_export_is_imported_once_with_its_ids_kinds_prompts_links_sizes_and_times);

async fn a_d1_export_is_imported_once_with_its_ids_kinds_prompts_links_sizes_and_times(backend: Backend) {
    let api = FakeApi::start().await;
    api.serve_file("images/20250831_102430_cute_little_cat.png", tiny_png());
    let database = RecordsBackend::create(backend).await;
    let app = TestApp::spawn_with(|config, _| {
        config.generator.allow_private_urls = true;
        database.configure(config);
    })
    .await;
    let fixture = std::path::Path::new(crate::helpers::REPO).join("tests/fixtures/original/d1_export.sql");
    let dump = tempfile::NamedTempFile::new().unwrap();
    let text = std::fs::read_to_string(fixture).unwrap().replace("{PICTURES}", &format!("{}/files", api.address));
    std::fs::write(dump.path(), text).unwrap();
    let import = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["records", "import", dump.path().to_str().unwrap()];
        args.extend_from_slice(extra);
        let output = app.huiying(&args, env);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let get = |path: String| {
        let url = format!("{}{path}", app.address);
        let http = app.http.clone();
        async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };

    let counted = import(&["--dry-run"], &[]);
    assert!(counted.contains("image_records: would import 3, 0 already there"), "{counted}");
    // (The store may still be opening its database: wait for its first answer.)
    let total = wait_for("the records to answer", Duration::from_secs(30), || async {
        get("/records".into()).await["total"].as_u64()
    })
    .await;
    assert_eq!(total, 0, "a dry run changes nothing");
    if let Backend::Sqlite = backend {
        // Nor does it make a database that is not there.
        let elsewhere = tempfile::tempdir().unwrap();
        let path = elsewhere.path().join("new.db");
        let counted = import(&["--dry-run"], &[("DATABASE_PATH", path.to_str().unwrap())]);
        assert!(counted.contains("would import 3"), "{counted}");
        assert!(std::fs::read_dir(elsewhere.path()).unwrap().next().is_none(), "no file was made");
    }

    let imported = import(&["--fetch-pictures"], &[]);
    assert!(imported.contains("image_records: imported 3, 0 already there"), "{imported}");
    assert!(imported.contains("image_edit_records: imported 4") && imported.contains("skipped 1"), "{imported}");

    // Each picture under its original number: the ids clients kept still lead to it.
    let cat = get("/records/1".into()).await;
    assert_eq!(
        (cat["original_prompt"].as_str(), cat["english_prompt"].as_str(), cat["width"].as_u64()),
        (Some("一只可爱的小猫"), Some("a cute little cat"), Some(1024))
    );
    assert_eq!(
        (cat["file_size"].as_u64(), cat["created_at"].as_str()),
        (Some(123456), Some("2025-08-31T02:24:30.000000Z"))
    );
    assert!(
        cat["url"].as_str().unwrap().ends_with("/images/20250831_102430_cute_little_cat.png"),
        "the R2 link stays the link"
    );
    let fetched = std::path::Path::new(cat["local_path"].as_str().unwrap());
    assert_eq!(std::fs::read(fetched).unwrap(), tiny_png(), "--fetch-pictures brought the picture into images_dir");
    assert!(get("/records/2".into()).await["r2_url"].is_null(), "a NULL link stays none");
    let dog = get("/records/7".into()).await;
    assert_eq!((dog["original_prompt"].as_str(), dog["format"].as_str()), (Some("It's a dog"), Some("png")));
    assert!(get("/records/3".into()).await["error"].is_string(), "a gap stays a gap");

    // The edits are edits, of their kinds, with their inputs, in /edit-records.
    let edits = get("/edit-records?limit=100".into()).await;
    let mut kinds: Vec<(String, usize)> = edits["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["edit_type"].as_str().unwrap().to_string(), r["input_image_urls"].as_array().unwrap().len()))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [("compose".into(), 2), ("edit".into(), 1), ("fusion".into(), 2), ("style".into(), 1)],
        "{edits}"
    );
    let all = get("/records?limit=100".into()).await;
    assert_eq!(all["total"], 7);
    let day = get("/records?date_from=2025-08-31&date_to=2025-08-31".into()).await;
    assert_eq!(day["total"], 1, "UTC days as before");
    assert_eq!(get("/records?keyword=灯塔".into()).await["total"], 1);

    // A new picture is numbered after the largest imported.
    let drawn: Value = app.post_generate(json!({"prompt": "after the import"})).await.json().await.unwrap();
    let record = get(format!("/records/{}", drawn["id"].as_str().unwrap())).await;
    let largest = all["records"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).max().unwrap();
    assert!(record["id"].as_i64().unwrap() > largest.max(7), "{record}");

    let again = import(&[], &[]);
    assert!(again.contains("image_records: imported 0, 3 already there"), "{again}");
    assert_eq!(get("/records".into()).await["total"], 8, "nothing twice");
}

//! The kit for subscribers of your own: the Rust example on the stage API, the Python
//! example over nats-py, the published JSON Schemas, and `huiying submit`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{NatsServer, REPO, TestApp, nats_conf_with_subscriber, nats_password, wait_for};

/// `target/<profile>/examples/<name>`, built by `cargo test` beside the test binary.
fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    deps.parent().unwrap().join("examples").join(name)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_subscriber_prints_each_real_job_once_even_when_its_event_comes_again() {
    let conf = nats_conf_with_subscriber();
    let app = TestApp::spawn_on(NatsServer::start_with(conf.path()).await, |_, _| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("printed.txt");
    let mut subscriber = Command::new(example("subscriber"))
        .current_dir(dir.path())
        .env_remove("HUIYING_CONFIG")
        .env("NATS_URL", &app.nats_server.url)
        .env("NATS_USER", "subscriber")
        .env("NATS_PASSWORD", nats_password("subscriber"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .spawn()
        .expect("cargo test builds the examples");
    let id = app.submit(json!({"prompt": "for the example subscriber"})).await;
    let printed = || std::fs::read_to_string(&out).unwrap_or_default();
    wait_for("the example to print the job", Duration::from_secs(30), || async {
        printed().contains(&id).then_some(())
    })
    .await;

    // The same event again (a second publish, as after a publisher's crash): nothing new.
    let job = app.wait_for_job(&id).await;
    app.publish("image.completed", &job["result"].to_string()).await;
    app.wait_until_consumer_idle("subscriber").await;
    subscriber.kill().unwrap();
    subscriber.wait().unwrap();
    let lines: Vec<String> = printed().lines().map(String::from).collect();
    assert_eq!(lines, [format!("{id} {}", job["result"]["url"].as_str().unwrap())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_example_queues_pictures_with_and_without_an_id_and_reads_their_results() {
    let app = TestApp::spawn().await;
    let script = std::path::Path::new(REPO).join("examples/python/huiying_nats.py");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .env("NATS_URL", &app.nats_server.url)
        .env("NATS_USER", "admin")
        .env("NATS_PASSWORD", nats_password("admin"))
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), output).await.expect("the example finishes").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let completed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("completed ")).collect();
    assert_eq!(completed.len(), 2, "{stdout}");
    assert!(completed.iter().all(|line| line.contains("/static/images/")));
    let queued_id = stdout.lines().next().unwrap().split_whitespace().nth(1).unwrap();
    assert!(completed.iter().any(|line| line.contains(queued_id)), "the job with its own id: {stdout}");
    assert_eq!(app.count_events("image.requested").await, 2, "the repeated publish was stored once");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_of_a_real_run_match_the_published_json_schemas() {
    let app = TestApp::spawn().await;
    let done = app.submit(json!({"prompt": "a schema check", "size": "512x512", "seed": 7})).await;
    let failed = app.submit(json!({"prompt": "a fox", "model": "dall-e-3"})).await;
    app.wait_for_job(&done).await;
    app.wait_for_job(&failed).await;
    app.publish("image.requested", r#"{"prompt": "published bare"}"#).await;
    app.wait_until_consumer_idle("mailer").await;

    let js = async_nats::jetstream::new(app.nats.clone());
    let mut stream = js.get_stream(huiying::contract::STREAM).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut events = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let payload: Value = serde_json::from_slice(&message.payload).unwrap();
        events.push(json!({"subject": message.subject.as_str(), "event": payload}));
    }
    let subjects: std::collections::HashSet<String> =
        events.iter().map(|e| e["subject"].as_str().unwrap().to_string()).collect();
    assert_eq!(subjects.len(), 4, "every kind of event is checked: {subjects:?}");

    let output = validate_with_jsonschema(&Value::Array(events.clone()));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("{} valid", events.len()));

    // And a broken event is caught, so the check above can fail.
    let broken = json!([{"subject": "image.completed", "event": {"id": 7}}]);
    assert!(!validate_with_jsonschema(&broken).status.success());
}

/// An independent validator: Python's jsonschema, Draft 2020-12, formats checked, each
/// `{"subject", "event"}` against `docs/schemas/<subject>.json`.
fn validate_with_jsonschema(events: &Value) -> std::process::Output {
    let check = r#"
import json, sys
from jsonschema import Draft202012Validator
events = json.load(sys.stdin)
for item in events:
    schema = json.load(open(f"docs/schemas/{item['subject']}.json"))
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(item["event"])
print(len(events), "valid")
"#;
    let mut validator = Command::new("python3")
        .args(["-c", check])
        .current_dir(REPO)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    validator.stdin.take().unwrap().write_all(events.to_string().as_bytes()).unwrap();
    validator.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn huiying_submit_queues_on_nats_and_with_wait_prints_the_link() {
    let app = TestApp::spawn().await;
    let admin = nats_password("admin");
    let login = [("NATS_USER", "admin"), ("NATS_PASSWORD", admin.as_str())];
    let output = app.huiying(&["submit", "a lighthouse", "--wait"], &login);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.trim().starts_with(&app.address) && stdout.contains("/static/images/"), "{stdout}");

    let output = app.huiying(&["submit", "a harbour", "--model", "huiying/placeholder"], &login);
    let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert_eq!(app.wait_for_job(&id).await["status"], "completed");

    let output = app.huiying(&["submit", "a fox", "--model", "dall-e-3", "--wait"], &login);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("failed at stage Request"));
}

//! Who gets in: API keys, CORS, rate limits, a full queue, and what each NATS user of
//! nats.conf may do.

use std::time::Duration;

use huiying::config::Secret;
use serde_json::json;

use crate::helpers::{TestApp, nats_password, wait_for};

const KEY: &str = "hy-test-key-0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn with_api_keys_every_endpoint_but_health_needs_a_valid_bearer_key() {
    let app = TestApp::spawn_with(|config, _| {
        config.server.api_keys = vec![Secret::new("other-key"), Secret::new(KEY)];
    })
    .await;
    let url = |path: &str| format!("{}{path}", app.address);
    let requests = || {
        vec![
            ("POST /generate-image", app.http.post(url("/generate-image")).json(&json!({"prompt": "a cat"}))),
            ("GET /jobs/x", app.http.get(url("/jobs/00000000-0000-4000-8000-000000000000"))),
            ("GET /records", app.http.get(url("/records"))),
            ("GET /images", app.http.get(url("/images"))),
            ("POST /translate", app.http.post(url("/translate")).json(&json!({"text": "猫"}))),
        ]
    };

    for (what, request) in requests() {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{what} without a key");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("Authorization: Bearer"), "{what}: {body}");
    }
    for (what, request) in requests() {
        let response = request.bearer_auth("wrong-key").send().await.unwrap();
        assert_eq!(response.status(), 403, "{what} with a wrong key");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("not valid"), "{what}: {body}");
    }
    // No job was queued by any of that.
    let js = async_nats::jetstream::new(app.nats.clone());
    let mut stream = js.get_stream(huiying::contract::STREAM).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 0, "no event published");

    let health = app.http.get(url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "health stays open for load balancers");

    let done =
        app.http.post(url("/generate-image")).bearer_auth(KEY).json(&json!({"prompt": "a cat"})).send().await.unwrap();
    assert_eq!(done.status(), 200);
    let body: serde_json::Value = done.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    let job = app.http.get(url(&format!("/jobs/{id}"))).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(job.status(), 200);
    let records = app.http.get(url("/records")).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(records.status(), 200);
    // The picture link in the mail opens without a key (its name is the job id).
    let picture = body["data"][0]["url"].as_str().unwrap();
    assert_eq!(app.http.get(picture).send().await.unwrap().status(), 200);

    // Two clients that happen to pick the same Idempotency-Key get a job each.
    let mut jobs = Vec::new();
    for key in [KEY, "other-key", KEY] {
        let request = app.request_async(json!({"prompt": "a dog"})).bearer_auth(key);
        let response = request.header("Idempotency-Key", "order-1").send().await.unwrap();
        assert_eq!(response.status(), 202);
        jobs.push(response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    assert_ne!(jobs[0], jobs[1], "another client's key is its own");
    assert_eq!(jobs[0], jobs[2], "the same client retrying gets its job");
}

#[tokio::test(flavor = "multi_thread")]
async fn browsers_may_call_the_api_only_from_the_configured_origins() {
    let app = TestApp::spawn_with(|config, _| {
        config.server.cors_origins = vec!["https://app.example.com".parse().unwrap()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}/generate-image", app.address))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type,authorization")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
    let methods = allowed.headers()["access-control-allow-methods"].to_str().unwrap().to_string();
    assert!(methods.contains("POST"), "{methods}");

    let other = preflight("https://evil.example.net").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none(), "no CORS grant for another origin");

    // Without the setting there are no CORS headers at all (not `*`).
    let closed = TestApp::spawn().await;
    let response = closed
        .http
        .get(format!("{}/health", closed.address))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn each_api_key_has_its_own_rate_limit() {
    let app = TestApp::spawn_with(|config, _| {
        config.server.api_keys = vec![Secret::new("key-a"), Secret::new("key-b")];
        config.server.rate_limit_per_minute = 3;
    })
    .await;
    let unknown_job = format!("{}/jobs/00000000-0000-4000-8000-000000000000", app.address);
    let status = |key: &'static str| {
        let request = app.http.get(&unknown_job).bearer_auth(key);
        async move { request.send().await.unwrap() }
    };
    for _ in 0..3 {
        assert_eq!(status("key-a").await.status(), 404, "counted, answered as usual");
    }
    let limited = status("key-a").await;
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("more than 3 requests in a minute"), "{body}");

    assert_eq!(status("key-b").await.status(), 404, "another key is not limited by key-a's use");
    let health = app.http.get(format!("{}/health", app.address)).send().await.unwrap();
    assert_eq!(health.status(), 200, "health is never limited");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_queue_answers_503_instead_of_queueing_more() {
    let mut app = TestApp::spawn_with(|config, _| config.server.max_queued_jobs = 3).await;
    // The generator is down: requests pile up in its queue.
    app.stop_service("generator").await;
    let mut accepted = Vec::new();
    let mut refused = None;
    for n in 0..10 {
        let response = app.request_async(json!({"prompt": format!("picture {n}")})).send().await.unwrap();
        match response.status().as_u16() {
            202 => {
                accepted.push(response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string())
            }
            503 => {
                assert_eq!(response.headers()["retry-after"], "5");
                refused = Some(response.json::<serde_json::Value>().await.unwrap());
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(accepted.len(), 3, "exactly max_queued_jobs accepted");
    let refused = refused.expect("the fourth job was refused");
    assert!(refused["error"].as_str().unwrap().contains("queue is full"), "{refused}");

    // Once the generator drains the queue, new jobs are taken again and all finish.
    app.start_service("generator");
    for id in &accepted {
        assert_eq!(app.wait_for_job(id).await["status"], "completed");
    }
    wait_for("the queue to take jobs again", Duration::from_secs(30), || async {
        let response = app.request_async(json!({"prompt": "after the queue drained"})).send().await.ok()?;
        (response.status() == 202).then_some(())
    })
    .await;
}

/// What each NATS user of nats.conf tries that it must not do.
#[tokio::test(flavor = "multi_thread")]
async fn each_nats_user_may_do_its_own_work_and_nothing_else() {
    // Running the pipeline first creates the streams and buckets, as the services do.
    let app = TestApp::spawn().await;
    let done = app.post_generate(json!({"prompt": "permissions"})).await;
    assert_eq!(done.status(), 200, "the pipeline works with one user per service");
    app.smtp.wait_for_mails(1).await;
    let url = &app.nats_server.url;

    // Each user and the stage subjects it must not publish (the pipeline run above
    // shows what each may do).
    let users = [
        ("ingest", vec!["image.generated", "image.completed", "image.failed"]),
        ("generator", vec!["image.requested", "image.completed"]),
        ("store", vec!["image.requested", "image.generated"]),
        ("mailer", vec!["image.requested", "image.generated", "image.completed", "image.failed"]),
        ("webhook", vec!["image.requested", "image.generated", "image.completed", "image.failed"]),
    ];
    for (user, forbidden) in &users {
        let session = Session::open(url, user).await;
        for subject in forbidden {
            session.must_not("publish another stage's event", subject).await;
        }
        let stream = huiying::contract::STREAM;
        for (act, subject) in [
            ("delete the stream", format!("$JS.API.STREAM.DELETE.{stream}")),
            ("purge the stream", format!("$JS.API.STREAM.PURGE.{stream}")),
            ("change the stream (e.g. its retention)", format!("$JS.API.STREAM.UPDATE.{stream}")),
            ("delete the job states", format!("$JS.API.STREAM.DELETE.KV_{}", huiying::contract::JOBS_BUCKET)),
            ("delete the mail log", format!("$JS.API.STREAM.DELETE.KV_{}", huiying::contract::MAIL_BUCKET)),
        ] {
            session.must_not(act, &subject).await;
        }
        // Nor listen in on other services' replies or on the events themselves.
        for subject in ["_INBOX.>", "_INBOX_admin.>", "image.>"] {
            session.must_not_subscribe(subject).await;
        }
        // Nor take another stage's messages.
        for other in ["generator", "store", "mailer", "webhook"].iter().filter(|o| *o != user) {
            session
                .must_not("take another stage's messages", &format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{other}"))
                .await;
        }
    }
    // The records API answers only the store; the mailer may not ask it.
    let mailer = Session::open(url, "mailer").await;
    mailer.must_not("read the records", "huiying.records.list").await;
    // Webhook tasks come only from the webhook service; it may not touch job states or mail.
    for user in ["ingest", "generator", "store", "mailer"] {
        Session::open(url, user).await.must_not("queue a webhook delivery", "huiying.webhooks.deliver").await;
    }
    let webhook = Session::open(url, "webhook").await;
    webhook.must_not("write a job state", "$KV.huiying_jobs.x").await;
    webhook.must_not("write the mail log", "$KV.huiying_mail.x").await;
    webhook.must_not("delete the webhook tasks", "$JS.API.STREAM.DELETE.HUIYING_WEBHOOKS").await;
    // No service but the store (which deletes a deleted job's pictures from it) may purge
    // the picture bucket: a purge reaches every picture in it.
    for user in ["ingest", "generator", "mailer", "webhook"] {
        let images = format!("$JS.API.STREAM.PURGE.OBJ_{}", huiying::contract::IMAGES_BUCKET);
        Session::open(url, user).await.must_not("purge the picture bucket", &images).await;
    }
    let ingest = Session::open(url, "ingest").await;
    ingest.must_not("write the webhook log", "$KV.huiying_webhook_deliveries.x").await;

    // Nobody gets in without a login, or with another user's password.
    assert!(async_nats::connect(url.as_str()).await.is_err(), "no login: refused");
    let wrong = async_nats::ConnectOptions::with_user_and_password("store".into(), "test-ingest-password".into())
        .connect(url.as_str())
        .await;
    assert!(wrong.is_err(), "another user's password: refused");

    // The stream and its events are all still there, and nothing was added to them.
    let js = async_nats::jetstream::new(app.nats.clone());
    let mut stream = js.get_stream(huiying::contract::STREAM).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 3, "requested, generated, completed");
}

/// A NATS connection as one user, collecting the server's permission errors.
struct Session {
    client: async_nats::Client,
    errors: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    user: String,
}

impl Session {
    async fn open(url: &str, user: &str) -> Self {
        let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = errors.clone();
        let client = async_nats::ConnectOptions::with_user_and_password(user.into(), nats_password(user))
            // Replies on the user's own inbox, as huiying's services and the subscriber
            // template have them.
            .custom_inbox_prefix(format!("_INBOX_{user}"))
            .event_callback(move |event| {
                let seen = seen.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        seen.lock().unwrap().push(error.to_string());
                    }
                }
            })
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("{user} logs in: {e}"));
        Self { client, errors, user: user.into() }
    }

    /// Subscribes to `subject` and waits for the server to refuse it.
    async fn must_not_subscribe(&self, subject: &str) {
        let _subscription = self.client.subscribe(subject.to_string()).await.unwrap();
        self.client.flush().await.unwrap();
        self.wait_for_refusal(&format!("{} may not subscribe to {subject}", self.user), "Subscription", subject).await;
    }

    /// Publishes to `subject` and waits for the server to refuse it.
    async fn must_not(&self, act: &str, subject: &str) {
        self.client.publish(subject.to_string(), "{}".into()).await.unwrap();
        self.client.flush().await.unwrap();
        self.wait_for_refusal(&format!("{} may not {act}", self.user), "Publish", subject).await;
    }

    async fn wait_for_refusal(&self, what: &str, kind: &str, subject: &str) {
        let violation = format!("Permissions Violation for {kind} to \"{subject}\"");
        wait_for(&format!("the server to refuse: {what} ({subject})"), Duration::from_secs(5), || async {
            let errors = self.errors.lock().unwrap();
            errors.iter().any(|e| e.contains(&violation)).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_subscriber_template_in_nats_conf_reads_results_through_its_own_consumer_and_nothing_else() {
    let config = crate::helpers::nats_conf_with_subscriber();
    let app = TestApp::spawn_on(crate::helpers::NatsServer::start_with(config.path()).await, |_, _| {}).await;
    let done = app.post_generate(json!({"prompt": "for the webhook"})).await;
    let id = done.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string();

    let session = Session::open(&app.nats_server.url, "subscriber").await;
    let js = async_nats::jetstream::new(session.client.clone());
    let stream = js.get_stream(huiying::contract::STREAM).await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            "subscriber",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("subscriber".into()),
                filter_subject: "image.completed".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut batch = consumer.fetch().max_messages(1).expires(Duration::from_secs(5)).messages().await.unwrap();
    let message = futures::StreamExt::next(&mut batch).await.expect("a completion").unwrap();
    let completed: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(completed["id"], id.as_str());
    message.double_ack().await.unwrap();

    session.must_not("queue jobs", "image.requested").await;
    session.must_not("take the mailer's messages", "$JS.API.CONSUMER.MSG.NEXT.HUIYING.mailer").await;
    session.must_not("delete the stream", "$JS.API.STREAM.DELETE.HUIYING").await;
    // Nor read anyone's replies but its own.
    for subject in ["_INBOX.>", "_INBOX_ingest.>"] {
        session.must_not_subscribe(subject).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_public_pictures_off_a_bare_picture_link_needs_a_key_and_the_answers_signed_one_opens() {
    let app = TestApp::spawn_with(|config, _| {
        config.server.api_keys = vec![Secret::new(KEY)];
        config.server.public_pictures = false;
    })
    .await;
    let done = app
        .http
        .post(format!("{}/generate-image", app.address))
        .bearer_auth(KEY)
        .json(&json!({"prompt": "private picture"}))
        .send()
        .await
        .unwrap();
    let signed = done.json::<serde_json::Value>().await.unwrap()["data"][0]["url"].as_str().unwrap().to_string();
    let picture = signed.split('?').next().unwrap();
    assert_eq!(app.http.get(picture).send().await.unwrap().status(), 401);
    assert_eq!(app.http.get(picture).bearer_auth(KEY).send().await.unwrap().status(), 200);
    assert_eq!(app.http.get(&signed).send().await.unwrap().status(), 200, "{signed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_refuses_to_serve_beyond_this_machine_without_keys_unless_told_in_words() {
    let app = TestApp::spawn().await;
    let start = |env: &[(&str, &str)]| {
        let port = crate::helpers::free_port().to_string();
        let mut command = std::process::Command::new(crate::helpers::service_program("ingest"));
        command
            .arg("--config")
            .arg(app.config_file())
            .env_remove("HUIYING_CONFIG")
            .envs([("SERVER_HOST", "0.0.0.0"), ("SERVER_PORT", port.as_str()), ("RUST_LOG", "warn")])
            .envs([("NATS_USER", "ingest"), ("NATS_PASSWORD", nats_password("ingest").as_str())])
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        (command.spawn().unwrap(), port)
    };
    // No keys, every address: it says why it will not start, and does not.
    let (refused, _) = start(&[]);
    let output = refused.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("without [server] api_keys") && stderr.contains("allow_open"), "{stderr}");
    // Told in words, it serves.
    let (mut open, port) = start(&[("SERVER_ALLOW_OPEN", "true")]);
    let health = format!("http://127.0.0.1:{port}/health");
    wait_for("ingest to answer", Duration::from_secs(30), || async {
        reqwest::get(&health).await.ok().filter(|r| r.status().is_success())
    })
    .await;
    open.kill().unwrap();
    open.wait().unwrap();
}

#[test]
fn compose_gives_every_service_its_env_file_and_a_writable_images_volume() {
    let compose = std::fs::read_to_string(format!("{}/compose.yaml", crate::helpers::REPO)).unwrap();
    let dockerfile = std::fs::read_to_string(format!("{}/Dockerfile", crate::helpers::REPO)).unwrap();
    let anchor = compose.split("x-huiying: &huiying").nth(1).unwrap().split("\nservices:").next().unwrap();
    assert!(anchor.contains("env_file: .env"), "every huiying service reads .env:\n{anchor}");
    let mounted = anchor.lines().find_map(|l| l.trim().strip_prefix("- images:")).unwrap();
    assert!(
        dockerfile.contains(&format!("install -d -o huiying -g huiying {mounted}")),
        "the image makes {mounted} for its user"
    );
    assert!(dockerfile.contains("USER huiying"));
}

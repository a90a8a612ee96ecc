//! Budgets that hold before the paid call, on the whole pipeline: fifty jobs at once
//! under a key whose budget allows ten make at most ten calls to the (fake) provider,
//! across two generator processes; a failed call gives its hold back; nothing is forgotten when
//! every service restarts; the operator is told at 80 % and 100 %.

use std::time::Duration;

use futures::StreamExt;

use huiying::config::{Config, EndpointConfig, KeyConfig, Secret};
use serde_json::{Value, json};

use crate::helpers::{
    FakeApi, FakeResponse, OPENROUTER_PATH, TestApp, WEBHOOK_SECRET, WebhookReceiver, nats_password, openrouter_image,
    tiny_png, wait_for,
};

const GEMINI: &str = "google/gemini-2.5-flash-image";

/// OpenRouter's answer, reporting what the shipped table says the model costs.
fn openrouter_answer() -> Value {
    let mut answer = openrouter_image(&tiny_png());
    answer["usage"] = json!({"prompt_tokens": 9, "completion_tokens": 1290, "cost": 0.039});
    answer
}

/// Key `design` (`design-key`) may spend `daily_usd` a day; `root` is an admin.
fn keys(config: &mut Config, daily_usd: f64) {
    config.server.keys = vec![
        KeyConfig {
            name: "design".into(),
            key: Secret::new("design-key"),
            daily_budget_usd: daily_usd,
            ..Default::default()
        },
        KeyConfig { name: "root".into(), key: Secret::new("root-key"), admin: true, ..Default::default() },
    ];
    config.server.timezone = "Asia/Shanghai".parse().unwrap();
}

/// Queues a picture as `design` without waiting: the status and the answer.
async fn queue(app: &TestApp) -> (u16, Value) {
    let response =
        app.request_async(json!({"prompt": "a fox", "model": GEMINI})).bearer_auth("design-key").send().await;
    let response = response.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// `GET path` as `key`.
async fn get(app: &TestApp, key: &str, path: &str) -> Value {
    let response = app.http.get(format!("{}{path}", app.address)).bearer_auth(key).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// Waits until job `id` ends; its state.
async fn ended(app: &TestApp, id: &str) -> Value {
    wait_for(&format!("job {id} to end"), Duration::from_secs(60), || async {
        let job = get(app, "root-key", &format!("/jobs/{id}")).await;
        matches!(job["status"].as_str(), Some("completed" | "failed")).then_some(job)
    })
    .await
}

/// The fields a budget refusal carries, in a 402 or in a failed job's `budget`.
fn assert_refusal(fields: &Value) {
    assert_eq!((fields["scope"].as_str(), fields["period"].as_str()), (Some("key"), Some("day")), "{fields}");
    assert_eq!(fields["limit_usd"], 0.39, "{fields}");
    assert!(fields["spent_usd"].as_f64().unwrap() <= 0.39, "{fields}");
    assert!(fields["resets_at"].as_str().unwrap().ends_with("T16:00:00Z"), "midnight in Shanghai: {fields}");
}

/// A child process, killed when the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How many generators answer a NATS service ping.
async fn generators_answering(app: &TestApp) -> usize {
    let inbox = app.nats.new_inbox();
    let mut answers = app.nats.subscribe(inbox.clone()).await.unwrap();
    app.nats.publish_with_reply("$SRV.PING.huiying-generator", inbox, "".into()).await.unwrap();
    let mut count = 0;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), answers.next()).await {
        count += 1;
    }
    count
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_jobs_at_once_under_a_budget_for_ten_make_ten_paid_calls_on_two_generators() {
    let api = FakeApi::start().await;
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_answer())]);
    // A slow model: the calls overlap, as a burst's do.
    api.set_delay(Duration::from_millis(300));
    let receiver = WebhookReceiver::start(&[]).await;
    let app = TestApp::spawn_with(|config, _| {
        api.configure(config);
        keys(config, 0.39);
        // An operator's endpoint that takes budget alerts only.
        config.webhooks.endpoints = vec![EndpointConfig {
            name: "ops".into(),
            url: receiver.url("/alerts"),
            secret: vec![Secret::new(WEBHOOK_SECRET)],
            secret_env: String::new(),
            events: vec!["budget.alert".into()],
            headers: Default::default(),
            enabled: true,
        }];
        config.webhooks.allow_private = true;
    })
    .await;
    // A second generator, as its own process (as on another host).
    let _second = Killed(app.spawn_process("generator", &[("RUST_LOG", "error")]));
    wait_for("two generators to answer", Duration::from_secs(30), || async {
        (generators_answering(&app).await == 2).then_some(())
    })
    .await;

    let answers = futures::future::join_all((0..50).map(|_| queue(&app))).await;
    let mut refused = 0;
    let mut completed = 0;
    for (status, answer) in &answers {
        match status {
            402 => {
                assert_eq!(answer["type"], "budget_exceeded", "{answer}");
                assert_refusal(answer);
                refused += 1;
            }
            202 => {
                let job = ended(&app, answer["id"].as_str().unwrap()).await;
                match job["status"].as_str() {
                    Some("completed") => completed += 1,
                    _ => {
                        // Admitted at ingest, refused at the generator: never drawn.
                        assert_eq!(job["error"]["stage"], "budget", "{job}");
                        assert_refusal(&job["error"]["budget"]);
                        refused += 1;
                    }
                }
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert_eq!(api.calls(OPENROUTER_PATH).len(), 10, "only the budget's ten reached the provider");
    assert_eq!((completed, refused), (10, 40));

    // What was spent: exactly the budget, reported by the provider.
    let usage = get(&app, "design-key", "/usage?group_by=key").await;
    assert_eq!((usage["total"]["cost_usd"].as_f64(), usage["total"]["calls"].as_u64()), (Some(0.39), Some(10)));
    assert_eq!(usage["total"]["by_source"]["reported"]["calls"], 10);
    assert_eq!(usage["budgets"][0]["spent_usd"], 0.39);
    // The same from the command line, as an operator with the admin login.
    let admin = [("NATS_USER", "admin"), ("NATS_PASSWORD", &*nats_password("admin"))];
    let printed = app.huiying(&["usage", "--by", "key"], &admin);
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.status.success(), "{stdout} {}", String::from_utf8_lossy(&printed.stderr));
    let design = stdout.lines().find(|line| line.starts_with("design")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(design.contains("0.3900 USD") && design.contains("10 calls"), "{stdout}");

    // The operator heard twice: at 80 % and at 100 %.
    let alerts = wait_for("two budget alerts", Duration::from_secs(30), || async {
        let alerts: Vec<_> = app.smtp.mails().into_iter().filter(|mail| mail.subject.contains("budget at")).collect();
        (alerts.len() >= 2).then_some(alerts)
    })
    .await;
    let subjects: Vec<&str> = alerts.iter().map(|mail| mail.subject.as_str()).collect();
    assert!(subjects[0].contains("80%") && subjects[1].contains("100%"), "{subjects:?}");
    assert!(alerts[0].text.contains("design"), "{}", alerts[0].text);
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().iter().filter(|mail| mail.subject.contains("budget at")).count(), 2);
    // And the endpoint that asked for them got them, signed, once each.
    let hooks = receiver.wait_for_hooks("/alerts", 2).await;
    let percents: Vec<Value> = hooks.iter().map(|hook| hook.json()["data"]["percent"].clone()).collect();
    assert_eq!(percents, [json!(80), json!(100)]);
    assert_eq!(hooks[0].json()["type"], "budget.alert");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_call_gives_its_hold_back_and_spend_survives_a_restart_of_everything() {
    let api = FakeApi::start().await;
    let app_config = |config: &mut Config| {
        api.configure(config);
        keys(config, 0.39);
        config.generator.max_attempts = 1;
    };
    let mut app = TestApp::spawn_with(|config, _| app_config(config)).await;
    // Nine are spent; the tenth call answers 500, the eleventh draws.
    api.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_answer())]);
    for _ in 0..9 {
        let (status, answer) = queue(&app).await;
        assert_eq!(status, 202, "{answer}");
        assert_eq!(ended(&app, answer["id"].as_str().unwrap()).await["status"], "completed");
    }
    api.respond(
        OPENROUTER_PATH,
        vec![FakeResponse::error(500, "upstream broke"), FakeResponse::ok(openrouter_answer())],
    );
    let (_, failing) = queue(&app).await;
    let failed = ended(&app, failing["id"].as_str().unwrap()).await;
    assert_eq!(failed["error"]["stage"], "generate", "{failed}");
    let (_, last) = queue(&app).await;
    assert_eq!(ended(&app, last["id"].as_str().unwrap()).await["status"], "completed", "the 500 gave its hold back");

    // Every service and NATS restart: the spend is still there, and still refuses.
    for service in ["ingest", "generator", "store", "mailer", "webhook"] {
        app.stop_service(service).await;
    }
    app.kill_nats();
    app.nats_server.restart().await;
    let address = app.start_ingest().await;
    for service in ["generator", "store", "mailer", "webhook"] {
        app.start_service(service);
    }
    app.address = address;
    let (status, answer) = queue(&app).await;
    assert_eq!(status, 402, "{answer}");
    assert_refusal(&answer);
    assert_eq!(answer["spent_usd"], 0.39);
    assert_eq!(api.calls(OPENROUTER_PATH).len(), 11);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_budget_an_unpriced_model_is_refused_naming_the_price_to_set() {
    let api = FakeApi::start().await;
    let app = TestApp::spawn_with(|config, _| {
        api.configure(config);
        config.budget.monthly_usd = 100.0;
    })
    .await;
    let response = app.request_async(json!({"prompt": "a fox", "model": "some/unpriced"})).send().await.unwrap();
    assert_eq!(response.status(), 402);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["type"], "budget_unpriced");
    assert!(answer["error"].as_str().unwrap().contains(r#"[prices] "some/unpriced""#), "{answer}");
    assert!(api.calls(OPENROUTER_PATH).is_empty());
}

//! Webhooks as a receiver sees them: signed per Standard Webhooks (checked by the
//! `standardwebhooks` package), retried, disabled, replayed, filtered, guarded.

use std::time::Duration;

use huiying::config::{Config, EndpointConfig, Secret};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::{TestApp, WEBHOOK_SECRET, WebhookReceiver, nats_password, wait_for};

fn endpoint(name: &str, url: String, events: &[&str]) -> EndpointConfig {
    EndpointConfig {
        name: name.into(),
        url,
        secret: vec![Secret::new(WEBHOOK_SECRET)],
        secret_env: String::new(),
        events: events.iter().map(|e| e.to_string()).collect(),
        headers: Default::default(),
        enabled: true,
    }
}

/// Webhook settings for a receiver on loopback: private addresses allowed, quick retries.
fn hooks_to(config: &mut Config, endpoints: Vec<EndpointConfig>) {
    config.webhooks.allow_private = true;
    config.webhooks.retry_schedule = vec![1, 1];
    config.webhooks.timeout = Duration::from_secs(2);
    config.webhooks.request_secret = vec![Secret::new(WEBHOOK_SECRET)];
    config.webhooks.endpoints = endpoints;
}

const BOTH: &[&str] = &["image.completed", "image.failed"];

/// A job that fails at once: a real model with no key.
fn failing_job() -> Value {
    json!({"prompt": "a fox", "model": "dall-e-3"})
}

async fn deliveries(app: &TestApp, query: &str) -> Vec<Value> {
    let url = format!("{}/webhooks/deliveries{query}", app.address);
    let answer: Value = app.http.get(url).send().await.unwrap().json().await.unwrap();
    answer["deliveries"].as_array().unwrap().clone()
}

/// `huiying webhooks <args>` as the webhook service's NATS user.
fn webhooks_command(app: &TestApp, args: &[&str]) -> String {
    let mut all = vec!["webhooks"];
    all.extend_from_slice(args);
    let password = nats_password("webhook");
    let output = app.huiying(&all, &[("NATS_USER", "webhook"), ("NATS_PASSWORD", &password)]);
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "huiying webhooks {args:?}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn completed_and_failed_jobs_arrive_signed_and_a_changed_byte_breaks_the_signature() {
    let receiver = WebhookReceiver::start(&[]).await;
    let url = receiver.url("/all");
    let app = TestApp::spawn_with(|config, _| hooks_to(config, vec![endpoint("all", url, BOTH)])).await;
    let done = app.submit(json!({"prompt": "一只红狐狸", "notify_email": null})).await;
    let failed = app.submit(failing_job()).await;

    let hooks = receiver.wait_for_hooks("/all", 2).await;
    for hook in &hooks {
        assert!(hook.verified, "standardwebhooks verifies {}", hook.body);
        assert!(!hook.verified_with_changed_body && !hook.verified_with_changed_timestamp);
        assert!(hook.headers["webhook-signature"].starts_with("v1,"));
        assert!(hook.body.len() < 20 * 1024);
    }
    let by_type = |kind: &str| hooks.iter().find(|h| h.json()["type"] == kind).unwrap().json();
    let completed = by_type("image.completed");
    assert_eq!(completed["data"]["id"], done.as_str());
    assert_eq!(completed["data"]["prompt"], "一只红狐狸");
    assert!(completed["data"]["url"].as_str().unwrap().contains("/static/images/"));
    assert!(completed["data"].get("notify_email").is_none() && completed["data"].get("version").is_none());
    let failure = by_type("image.failed");
    assert_eq!(
        (failure["data"]["id"].as_str(), failure["data"]["stage"].as_str()),
        (Some(failed.as_str()), Some("request"))
    );
    assert!(OffsetDateTime::parse(failure["timestamp"].as_str().unwrap(), &Rfc3339).is_ok());
    // Mail went out as usual, once per job.
    app.smtp.wait_for_mails(2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_500_then_200_is_delivered_once_after_waiting_as_retry_after_asks() {
    let receiver = WebhookReceiver::start(&[("/flaky", "500@2,200")]).await;
    let url = receiver.url("/flaky");
    let app = TestApp::spawn_with(|config, _| hooks_to(config, vec![endpoint("flaky", url, BOTH)])).await;
    app.submit(json!({"prompt": "a fox"})).await;

    let hooks = receiver.wait_for_hooks("/flaky", 2).await;
    assert_eq!(hooks[0].id(), hooks[1].id(), "one webhook-id for every attempt");
    assert!(hooks[1].at - hooks[0].at >= 2.0, "Retry-After: 2 was honoured ({} s)", hooks[1].at - hooks[0].at);
    let logged = wait_for("the delivery to be logged as succeeded", Duration::from_secs(20), || async {
        deliveries(&app, "").await.into_iter().find(|d| d["state"] == "succeeded")
    })
    .await;
    let attempts = logged["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{logged}");
    assert_eq!((attempts[0]["status"].as_u64(), attempts[1]["status"].as_u64()), (Some(500), Some(200)));
    assert!(attempts[0]["response"].as_str().unwrap().contains("answer 500"));
    assert_eq!(receiver.hooks_at("/flaky").len(), 2, "no third send");
}

#[tokio::test(flavor = "multi_thread")]
async fn gone_disables_the_endpoint_until_it_is_enabled_again() {
    let receiver = WebhookReceiver::start(&[("/gone", "410,200")]).await;
    let url = receiver.url("/gone");
    let app = TestApp::spawn_with(|config, _| hooks_to(config, vec![endpoint("gone", url, BOTH)])).await;
    app.submit(json!({"prompt": "first"})).await;
    receiver.wait_for_hooks("/gone", 1).await;
    wait_for("the endpoint to be disabled", Duration::from_secs(20), || async {
        let answer: Value = app.http.get(format!("{}/webhooks", app.address)).send().await.ok()?.json().await.ok()?;
        (answer["endpoints"][0]["enabled"] == false).then_some(())
    })
    .await;

    let second = app.submit(json!({"prompt": "second"})).await;
    let skipped = wait_for("the second delivery to be given up", Duration::from_secs(20), || async {
        deliveries(&app, "?failed=true").await.into_iter().find(|d| d["task"]["job_id"] == second.as_str())
    })
    .await;
    assert!(skipped["attempts"][0]["error"].as_str().unwrap().contains("disabled"), "{skipped}");
    assert_eq!(receiver.hooks_at("/gone").len(), 1, "nothing was sent to the disabled endpoint");

    assert!(webhooks_command(&app, &["enable", "gone"]).contains("gone: enabled"));
    app.submit(json!({"prompt": "third"})).await;
    let hooks = receiver.wait_for_hooks("/gone", 2).await;
    assert!(hooks[1].json()["data"]["prompt"] == "third");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_that_hangs_times_out_and_holds_up_neither_other_endpoints_nor_mail() {
    let receiver = WebhookReceiver::start(&[("/hang", "hang")]).await;
    let (hang, fast) = (receiver.url("/hang"), receiver.url("/fast"));
    let app = TestApp::spawn_with(|config, _| {
        hooks_to(config, vec![endpoint("hang", hang, BOTH), endpoint("fast", fast, BOTH)]);
        config.webhooks.retry_schedule = vec![];
    })
    .await;
    app.submit(json!({"prompt": "a fox"})).await;
    receiver.wait_for_hooks("/fast", 1).await;
    app.smtp.wait_for_mails(1).await;
    let hang_attempts = |all: Vec<Value>| {
        all.into_iter().find(|d| d["task"]["endpoint"] == "hang").map_or(0, |d| d["attempts"].as_array().unwrap().len())
    };
    assert_eq!(hang_attempts(deliveries(&app, "").await), 0, "the fast endpoint and the mail came first");
    let timed_out = wait_for("the hanging attempt to time out", Duration::from_secs(20), || async {
        deliveries(&app, "?failed=true").await.into_iter().find(|d| d["task"]["endpoint"] == "hang")
    })
    .await;
    assert!(timed_out["attempts"][0]["error"].as_str().unwrap().contains("no answer within 2 s"), "{timed_out}");
    // The log comes a page at a time, every delivery on one page or another.
    let page = |query: &'static str| {
        let url = format!("{}/webhooks/deliveries{query}", app.address);
        let http = app.http.clone();
        async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let (first, second) = (page("?limit=1").await, page("?limit=1&page=2").await);
    assert_eq!((first["total"].as_u64(), first["pages"].as_u64()), (Some(2), Some(2)), "{first}");
    let endpoints: Vec<&str> =
        [&first, &second].iter().map(|p| p["deliveries"][0]["task"]["endpoint"].as_str().unwrap()).collect();
    assert!(endpoints.contains(&"hang") && endpoints.contains(&"fast"), "{endpoints:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replaying_one_delivery_or_all_failed_ones_sends_again_with_the_same_webhook_id() {
    let receiver = WebhookReceiver::start(&[("/down", "503")]).await;
    let url = receiver.url("/down");
    let app = TestApp::spawn_with(|config, _| hooks_to(config, vec![endpoint("down", url, BOTH)])).await;
    let since = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
    app.submit(json!({"prompt": "a fox"})).await;
    let failed = wait_for("the delivery to fail after its retries", Duration::from_secs(30), || async {
        deliveries(&app, "?failed=true").await.into_iter().next()
    })
    .await;
    let id = failed["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(receiver.hooks_at("/down").len(), 3, "the first send and two retries");

    let listed = webhooks_command(&app, &["deliveries", "--failed"]);
    assert!(listed.contains(&id) && listed.contains("failed"), "{listed}");
    webhooks_command(&app, &["replay", &id]);
    let hooks = receiver.wait_for_hooks("/down", 4).await;
    assert_eq!(hooks[3].id(), id);
    webhooks_command(&app, &["replay", "--failed", "--since", &since]);
    let hooks = receiver.wait_for_hooks("/down", 5).await;
    assert_eq!(hooks[4].id(), id);
    assert!(hooks.iter().all(|hook| hook.id() == id && hook.verified));
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_are_honoured_and_a_request_webhook_outside_the_allow_list_is_refused() {
    let receiver = WebhookReceiver::start(&[]).await;
    let (failures, mine) = (receiver.url("/failures"), receiver.url("/mine"));
    let allowed = receiver.url("/mine");
    let app = TestApp::spawn_with(|config, _| {
        hooks_to(config, vec![endpoint("failures", failures, &["image.failed"])]);
        config.webhooks.allowed_urls = vec![allowed];
    })
    .await;
    let done = app.submit(json!({"prompt": "a fox", "webhook": mine, "webhook_events_filter": ["completed"]})).await;
    let failed = app
        .submit(
            json!({"prompt": "a fox", "model": "dall-e-3", "webhook": mine, "webhook_events_filter": ["completed"]}),
        )
        .await;
    let to_failures = receiver.wait_for_hooks("/failures", 1).await;
    let to_mine = receiver.wait_for_hooks("/mine", 1).await;
    app.wait_for_job(&done).await;
    app.wait_until_consumer_idle("webhook").await;
    assert_eq!(to_failures.len(), 1);
    assert_eq!(to_failures[0].json()["data"]["id"], failed.as_str(), "the completed job was filtered out");
    assert_eq!(receiver.hooks_at("/mine").len(), 1);
    assert_eq!(to_mine[0].json()["data"]["id"], done.as_str(), "the request's filter wants completions only");
    assert!(to_mine[0].verified, "signed with [webhooks] request_secret");

    let requested = app.count_events("image.requested").await;
    for (webhook, named) in [("https://elsewhere.example.com/hook", "allowed_urls"), ("ftp://x", "allowed_urls")] {
        let response = app.post_generate(json!({"prompt": "a fox", "webhook": webhook})).await;
        assert_eq!(response.status(), 400);
        let answer: Value = response.json().await.unwrap();
        assert!(
            answer["error"].as_str().unwrap().contains("webhook") && answer["error"].as_str().unwrap().contains(named),
            "{answer}"
        );
    }
    assert_eq!(app.count_events("image.requested").await, requested, "nothing was published");
}

#[tokio::test(flavor = "multi_thread")]
async fn private_addresses_are_refused_at_registration_and_at_send_time() {
    let receiver = WebhookReceiver::start(&[]).await;
    let private = receiver.url("/private");
    let allowed = receiver.base.clone();
    let mut app = TestApp::spawn_with(|config, _| {
        hooks_to(config, vec![]);
        config.webhooks.allowed_urls = vec![allowed];
    })
    .await;
    // Registration: a configured endpoint on loopback stops the service at start.
    let mut refusing = app.config.clone();
    refusing.webhooks.allow_private = false;
    refusing.webhooks.endpoints = vec![endpoint("inside", private.clone(), BOTH)];
    let saved = std::mem::replace(&mut app.config, refusing);
    let output = app.huiying(&["webhook"], &[("NATS_USER", "webhook"), ("NATS_PASSWORD", &nats_password("webhook"))]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("inside") && stderr.contains("127.0.0.1") && stderr.contains("private"), "{stderr}");

    // Send time: ingest lets the request's webhook through (allowed there), the webhook
    // service (private addresses refused) does not call it.
    app.config = saved;
    app.stop_service("webhook").await;
    app.config.webhooks.allow_private = false;
    app.start_service("webhook");
    app.submit(json!({"prompt": "a fox", "webhook": private})).await;
    let refused = wait_for("the delivery to be refused", Duration::from_secs(30), || async {
        deliveries(&app, "?failed=true").await.into_iter().next()
    })
    .await;
    assert!(refused["attempts"][0]["error"].as_str().unwrap().contains("private"), "{refused}");
    assert!(receiver.hooks().is_empty(), "nothing reached the private address");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_service_killed_mid_way_through_200_deliveries_delivers_each_at_least_once() {
    let receiver = WebhookReceiver::start(&[]).await;
    let url = receiver.url("/count");
    let mut app = TestApp::spawn_with(|config, _| {
        hooks_to(config, vec![endpoint("count", url, &["image.completed"])]);
        config.nats.ack_wait = Duration::from_secs(2);
    })
    .await;
    app.stop_service("webhook").await;
    for n in 0..200 {
        app.publish("image.completed", &crate::mail_tools::completed_event(n)).await;
    }
    let password = nats_password("webhook");
    let mut service = app.spawn_process("webhook", &[("NATS_PASSWORD", &password)]);
    receiver.wait_for_hooks("/count", 40).await;
    service.kill().unwrap(); // SIGKILL
    service.wait().unwrap();
    let at_kill = receiver.hooks_at("/count").len();
    assert!(at_kill < 200, "the kill came before the end");

    let mut restarted = app.spawn_process("webhook", &[("NATS_PASSWORD", &password)]);
    let hooks = wait_for("every event to arrive", Duration::from_secs(90), || async {
        let hooks = receiver.hooks_at("/count");
        let mut ids: Vec<String> = hooks.iter().map(|h| h.id().to_string()).collect();
        ids.sort();
        ids.dedup();
        (ids.len() == 200).then_some(hooks)
    })
    .await;
    restarted.kill().unwrap();
    restarted.wait().unwrap();
    let mut per_id = std::collections::HashMap::<String, Vec<String>>::new();
    for hook in &hooks {
        assert!(hook.verified);
        per_id.entry(hook.id().to_string()).or_default().push(hook.json()["data"]["id"].as_str().unwrap().into());
    }
    assert!(per_id.values().all(|jobs| jobs.iter().all(|job| job == &jobs[0])), "a webhook-id stands for one event");
    let duplicates = hooks.len() - per_id.len();
    println!(
        "webhook kill test: 200 events, {} requests, {duplicates} duplicates (same webhook-id), {at_kill} before the kill",
        hooks.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_private_pictures_the_payloads_and_the_answers_picture_links_are_signed_and_open() {
    let receiver = WebhookReceiver::start(&[]).await;
    let url = receiver.url("/all");
    let app = TestApp::spawn_with(|config, _| {
        hooks_to(config, vec![endpoint("all", url, BOTH)]);
        config.server.public_pictures = false;
        config.server.api_keys = vec![Secret::new("key-one")];
    })
    .await;
    let answer = app
        .http
        .post(format!("{}/generate-image", app.address))
        .bearer_auth("key-one")
        .json(&json!({"prompt": "a private fox"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answered = answer.json::<Value>().await.unwrap()["data"][0]["url"].as_str().unwrap().to_string();
    let hooks = receiver.wait_for_hooks("/all", 1).await;
    assert!(hooks[0].verified);
    let hooked = hooks[0].json()["data"]["url"].as_str().unwrap().to_string();

    // Both open in a browser that has no key; the bare link does not.
    for link in [&answered, &hooked] {
        assert!(link.contains("/static/images/") && link.contains("?exp=") && link.contains("&sig="), "{link}");
        assert_eq!(app.http.get(link.as_str()).send().await.unwrap().status(), 200, "{link}");
    }
    let bare = answered.split('?').next().unwrap();
    assert_eq!(app.http.get(bare).send().await.unwrap().status(), 401);
}

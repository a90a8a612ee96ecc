//! Crashes and outages: what a user still gets when parts of the pipeline die.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{FakeApi, FakeResponse, MAIL_TO, OPENROUTER_PATH, TestApp, openrouter_image, tiny_png, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn nats_down_for_ten_seconds_means_503s_meanwhile_and_every_accepted_job_completes_after() {
    // A slow model, so that jobs are inside the generator when NATS goes away, and one
    // client is still waiting for its answer.
    let fake = FakeApi::start().await;
    fake.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    fake.set_delay(Duration::from_millis(1500));
    let mut app = TestApp::spawn_with(|config, _| fake.configure(config)).await;
    let mut accepted = Vec::new();
    for n in 0..5 {
        accepted.push(app.submit(json!({"prompt": format!("before the outage {n}")})).await);
    }
    let waiting_client = tokio::spawn(
        app.http.post(format!("{}/generate-image", app.address)).json(&json!({"prompt": "waiting"})).send(),
    );
    wait_for("every job to reach the model", Duration::from_secs(10), || async {
        (fake.calls(OPENROUTER_PATH).len() == 6).then_some(())
    })
    .await;
    app.kill_nats();

    // While it is down: 503 with an error, never 202, and never a hang.
    let down_since = Instant::now();
    let mut refused = 0;
    while down_since.elapsed() < Duration::from_secs(10) {
        let request = app.request_async(json!({"prompt": "during the outage"}));
        let response = request.timeout(Duration::from_secs(10)).send().await.unwrap();
        assert_eq!(response.status(), 503, "NATS is down: the job cannot be accepted");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("NATS"), "{body}");
        refused += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The first may take a few seconds (the publish waits for an ack that never comes).
    assert!(refused >= 5, "asked {refused} times while NATS was down");

    // NATS comes back on the same port with its data; nobody restarts a service.
    app.nats_server.restart().await;
    let after = wait_for("ingest to accept jobs again", Duration::from_secs(30), || async {
        let response = app.request_async(json!({"prompt": "after the outage"})).send().await.ok()?;
        if response.status() == 202 {
            Some(response.json::<serde_json::Value>().await.ok()?["id"].as_str()?.to_string())
        } else {
            None
        }
    })
    .await;
    accepted.push(after);
    // The client that was waiting when NATS went away: its job was queued and will run, so
    // it hears so (200, or 202 with the status URL), never a 5xx inviting a second job.
    let answer = waiting_client.await.unwrap().unwrap();
    assert!(matches!(answer.status().as_u16(), 200 | 202), "{}", answer.status());
    let answer: serde_json::Value = answer.json().await.unwrap();
    accepted.push(answer["id"].as_str().unwrap().to_string());

    for id in &accepted {
        let job = app.wait_for_job(id).await;
        assert_eq!(job["status"], "completed", "{job}");
    }
    let mails = app.smtp.wait_for_mails(accepted.len()).await;
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), accepted.len(), "one mail per accepted job, none doubled");
    assert!(mails.iter().all(|m| m.to.iter().any(|to| to == MAIL_TO)));
    assert_eq!(app.records().len(), accepted.len());
    assert_eq!(app.count_events("image.requested").await, accepted.len() as u64, "no refused job ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_killed_between_writing_the_file_and_publishing_still_gives_one_of_everything() {
    let mut app = TestApp::spawn_with(|config, _| config.nats.ack_wait = Duration::from_secs(2)).await;
    // The store runs as its own process, so that it can die.
    app.stop_service("store").await;
    let ids = [
        app.submit(json!({"prompt": "crash one"})).await,
        app.submit(json!({"prompt": "crash two"})).await,
        app.submit(json!({"prompt": "crash three"})).await,
    ];

    // It dies right after writing a picture file, then (restarted) right after writing a
    // record: both before the completion is published and the delivery acknowledged.
    for point in ["store.after_file", "store.after_record"] {
        let mut store = app.spawn_process("store", &[("HUIYING_CRASH_AT", point)]);
        let status = wait_for(&format!("the store to crash at {point}"), Duration::from_secs(60), || {
            std::future::ready(store.try_wait().unwrap())
        })
        .await;
        assert!(!status.success(), "aborted at {point}");
    }
    assert!(!app.image_files().is_empty(), "the crashes happened after a file was written");

    let mut store = app.spawn_process("store", &[]);
    for id in &ids {
        assert_eq!(app.wait_for_job(id).await["status"], "completed");
    }
    app.smtp.wait_for_mails(3).await;
    app.wait_until_consumer_idle("store").await;
    app.wait_until_consumer_idle("mailer").await;
    let _ = store.kill();
    let _ = store.wait();

    assert_eq!(app.records().len(), 3, "one record per job");
    let files = app.image_files();
    assert_eq!(files.len(), 3, "one file per job, no leftovers: {files:?}");
    assert_eq!(app.count_events("image.completed").await, 3, "one completion per job");
    assert_eq!(app.smtp.mails().len(), 3, "one mail per job");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generator_stopped_gracefully_mid_call_finishes_that_job_first_and_nothing_is_lost_or_redone() {
    let fake = FakeApi::start().await;
    let mut app = TestApp::spawn_with(|config, _| {
        fake.configure(config);
        config.nats.ack_wait = Duration::from_secs(2);
    })
    .await;
    // A slow model: the job is inside the generator when it is told to stop.
    let id = job_inside_a_slow_model_call(&app, &fake, Duration::from_secs(2)).await;

    let stopping = Instant::now();
    app.stop_service("generator").await;
    assert!(stopping.elapsed() < Duration::from_secs(30), "stopped within the bound");

    app.start_service("generator");
    assert_eq!(app.wait_for_job(&id).await["status"], "completed");
    app.smtp.wait_for_mails(1).await;
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), 1);
    assert_eq!(app.records().len(), 1);
    assert_eq!(fake.calls(OPENROUTER_PATH).len(), 1, "the paid model call was not made twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generator_stopped_while_a_call_outlasts_the_grace_hands_the_job_back_for_another_instance() {
    let fake = FakeApi::start().await;
    let mut app = TestApp::spawn_with(|config, _| {
        fake.configure(config);
        config.nats.shutdown_grace = Duration::from_secs(1);
    })
    .await;
    // A model call far longer than the grace period.
    let id = job_inside_a_slow_model_call(&app, &fake, Duration::from_secs(30)).await;

    let stopping = Instant::now();
    app.stop_service("generator").await;
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(10), "stopped within the grace period, not after the call: {took:?}");

    // Handed back at once (not after the 60 s ack wait): a new instance finishes the job.
    fake.set_delay(Duration::ZERO);
    app.start_service("generator");
    assert_eq!(app.wait_for_job(&id).await["status"], "completed");
    app.smtp.wait_for_mails(1).await;
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), 1);
    assert_eq!(app.records().len(), 1);
}

/// Submits a job to a model that answers after `delay`, and waits until the call started.
async fn job_inside_a_slow_model_call(app: &TestApp, fake: &FakeApi, delay: Duration) -> String {
    fake.set_delay(delay);
    fake.respond(OPENROUTER_PATH, vec![FakeResponse::ok(openrouter_image(&tiny_png()))]);
    let id = app.submit(json!({"prompt": "slow picture", "model": "test/slow-model"})).await;
    wait_for("the model call to start", Duration::from_secs(30), || async {
        (!fake.calls(OPENROUTER_PATH).is_empty()).then_some(())
    })
    .await;
    id
}

//! `huiying mail ...` and a mailer that is killed mid-work.

use huiying::contract::values::{JobId, ModelName, Prompt};
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use crate::helpers::{SMTP_PASSWORD, TestApp};

#[tokio::test(flavor = "multi_thread")]
async fn huiying_mail_test_sends_a_test_mail_with_a_good_password() {
    let app = TestApp::spawn().await;

    let output = app.huiying(&["mail", "test"], &[]);

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains("test mail accepted by localhost:") && stdout.contains("(STARTTLS) for user@example.com"),
        "{stdout}"
    );
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert_eq!(mail.subject, "绘影测试邮件 / huiying test mail");
    assert!(!stdout.contains(SMTP_PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn huiying_mail_test_with_a_bad_password_says_to_use_the_authorization_code_and_never_prints_it() {
    let app = TestApp::spawn().await;

    let output = app.huiying(&["mail", "test"], &[("SMTP_PASSWORD", "my-qq-login-password")]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("535") && stderr.contains("授权码") && stderr.contains("authorization code"), "{stderr}");
    assert!(!stderr.contains("my-qq-login-password") && !String::from_utf8_lossy(&output.stdout).contains("my-qq"));
    assert!(app.smtp.mails().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn huiying_mail_test_against_a_closed_port_says_the_host_is_unreachable() {
    let app = TestApp::spawn().await;
    let closed = crate::helpers::free_port().to_string();

    let output = app.huiying(&["mail", "test"], &[("SMTP_PORT", &closed)]);

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("cannot reach localhost:{closed}")), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_notification_that_failed_is_listed_and_can_be_sent_again() {
    let mut app = TestApp::spawn_with(|config, _| config.smtp.max_attempts = 1).await;
    app.smtp.stop();
    let response = app.post_generate(json!({"prompt": "send me later"})).await;
    let id = response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    app.wait_until_consumer_idle("mailer").await;

    let listed = app.huiying(&["mail", "failed"], &[]);
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(listing.contains(&id) && listing.contains("completed") && listing.contains("failed"), "{listing}");

    app.smtp.restart().await;
    let resent = app.huiying(&["mail", "resend", &id], &[]);
    let answer = String::from_utf8_lossy(&resent.stdout);
    assert!(resent.status.success() && answer.contains(&format!("{id}: sent to user@example.com")), "{answer}");
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.html.contains("send me later"));

    let again = app.huiying(&["mail", "resend", &id], &[]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already sent"));
    assert_eq!(app.smtp.mails().len(), 1);
    let none_left = app.huiying(&["mail", "failed"], &[]);
    assert!(String::from_utf8_lossy(&none_left.stdout).contains("no failed notifications"));
}

/// A completion event for a job that never ran, as the store would publish it.
pub fn completed_event(n: usize) -> String {
    let now = OffsetDateTime::now_utc();
    let event = huiying::contract::events::ImageCompleted {
        cost: Default::default(),
        owner: None,
        version: 1,
        id: JobId::parse(format!("00000000-0000-4000-8000-{n:012}")).unwrap(),
        prompt: Prompt::parse(format!("queued picture {n}")).unwrap(),
        english_prompt: format!("queued picture {n}"),
        model: ModelName::parse("huiying/placeholder").unwrap(),
        url: format!("http://localhost:8000/static/images/picture_{n}.jpg"),
        local_url: format!("http://localhost:8000/static/images/picture_{n}.jpg"),
        r2_url: None,
        filename: format!("picture_{n}.jpg"),
        width: 512,
        height: 512,
        format: "jpeg".into(),
        file_size: 1000,
        labels: Default::default(),
        kind: Default::default(),
        inputs: Vec::new(),
        group: None,
        requested_at: now,
        completed_at: now,
        duration_ms: 1,
        notify_email: None,
        callback: Default::default(),
        ignored_options: Vec::new(),
        fallback: None,
    };
    serde_json::to_string(&event).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mailer_killed_with_200_events_queued_sends_exactly_200_mails_after_restart() {
    let mut app = TestApp::spawn_with(|config, _| config.nats.ack_wait = Duration::from_secs(2)).await;
    app.stop_service("mailer").await;
    // Halfway, the SMTP server holds every new RCPT for a while: the kill then lands while
    // sends are in flight but none is between "accepted" and "logged".
    app.smtp.pause_after = 100;
    app.smtp.pause_seconds = 8.0;
    app.smtp.restart().await;
    for n in 0..200 {
        app.publish("image.completed", &completed_event(n)).await;
    }

    let mut mailer = app.spawn_mailer_process();
    // Settled: at least 50 mails, every one of them logged as sent, and no new one for a poll.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut previous = usize::MAX;
    loop {
        let logged = app.mail_log().await.iter().filter(|n| n["state"] == "sent").count();
        let mails = app.smtp.mails().len();
        if mails >= 100 && mails == logged && mails == previous {
            break;
        }
        previous = mails;
        assert!(std::time::Instant::now() < deadline, "the mailer never settled: {mails} mails, {logged} logged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mailer.kill().unwrap(); // SIGKILL
    mailer.wait().unwrap();
    assert!(app.smtp.mails().len() < 200, "the kill came before the end");

    let mut restarted = app.spawn_mailer_process();
    app.smtp.wait_for_mails(200).await;
    app.wait_until_consumer_idle("mailer").await;
    restarted.kill().unwrap();
    restarted.wait().unwrap();

    let mails = app.smtp.mails();
    assert_eq!(mails.len(), 200, "exactly one mail per event");
    let mut ids: Vec<&str> = mails.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "no job mailed twice");
}

//! The mail a user gets: safe content, the right transport, once.

use serde_json::json;

use crate::helpers::{SMTP_PASSWORD, TestApp};

#[tokio::test(flavor = "multi_thread")]
async fn a_script_tag_in_the_prompt_arrives_escaped_in_the_email() {
    let app = TestApp::spawn().await;

    let response = app.post_generate(json!({"prompt": "<script>alert(1)</script> & \"quotes\""})).await;
    assert_eq!(response.status(), 200);

    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(!mail.html.contains("<script>"), "raw script tag in the HTML part");
    assert!(mail.html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"));
    // The plain-text part shows the prompt as typed.
    assert!(mail.text.contains("<script>alert(1)</script> & \"quotes\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_with_line_breaks_cannot_inject_headers() {
    let app = TestApp::spawn().await;

    let response = app.post_generate(json!({"prompt": "cat\r\nBcc: victim@example.com\r\nX-Evil: 1"})).await;
    assert_eq!(response.status(), 200);

    let mail = &app.smtp.wait_for_mails(1).await[0];
    let injected =
        mail.header_names.iter().filter(|h| h.eq_ignore_ascii_case("bcc") || h.eq_ignore_ascii_case("x-evil"));
    assert_eq!(injected.count(), 0, "{:?}", mail.header_names);
    assert!(mail.subject.contains("cat Bcc: victim@example.com X-"), "{}", mail.subject);
    assert!(mail.session.ends_with("to=user@example.com"), "{}", mail.session);
}

#[tokio::test(flavor = "multi_thread")]
async fn restarting_the_mailer_after_it_sent_a_mail_sends_nothing_again() {
    let mut app = TestApp::spawn().await;
    let response = app.post_generate(json!({"prompt": "only once"})).await;
    assert_eq!(response.status(), 200);
    app.smtp.wait_for_mails(1).await;
    app.wait_until_consumer_idle("mailer").await;

    app.stop_service("mailer").await;
    // Replay the same completion event, as a redelivery would.
    let js = async_nats::jetstream::new(app.nats.clone());
    let stream = js.get_stream(huiying::bus::STREAM).await.unwrap();
    let completed = stream.get_last_raw_message_by_subject("image.completed").await.unwrap();
    let payload = String::from_utf8(completed.payload.to_vec()).unwrap();
    app.publish("image.completed", &payload).await;
    app.start_service("mailer");
    app.wait_until_consumer_idle("mailer").await;

    assert_eq!(app.smtp.mails().len(), 1, "no second mail after a restart and a replayed event");
}

#[tokio::test(flavor = "multi_thread")]
async fn implicit_tls_on_a_465_style_port_delivers() {
    let app = TestApp::spawn_with(|config, smtp| {
        config.smtp.port = smtp.tls_port;
        config.smtp.tls = huiying::config::TlsMode::Tls;
    })
    .await;

    assert_eq!(app.post_generate(json!({"prompt": "over implicit TLS"})).await.status(), 200);

    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.session.starts_with("mode=tls; auth=sender@example.com"), "{}", mail.session);
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_required_against_a_server_without_starttls_fails_once_and_sends_nothing_in_clear_text() {
    let app = TestApp::spawn_with(|config, smtp| {
        config.smtp.port = smtp.plain_port;
        config.smtp.tls = huiying::config::TlsMode::Auto;
        config.smtp.max_attempts = 2;
    })
    .await;

    assert_eq!(app.post_generate(json!({"prompt": "must not leak"})).await.status(), 200);
    app.wait_until_consumer_idle("mailer").await;

    assert!(app.smtp.mails().is_empty(), "no mail over a plain connection");
    let log = app.mail_log().await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["state"], "failed");
    assert_eq!(log[0]["attempts"], 1, "a setup mistake is not retried");
    let error = log[0]["last_error"].as_str().unwrap();
    assert!(error.contains("does not offer STARTTLS") && error.contains("465"), "{error}");
    assert!(!error.contains(SMTP_PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_fails_after_one_try_with_a_hint_about_authorization_codes() {
    let app = TestApp::spawn_with(|config, _| {
        config.smtp.password = huiying::config::Secret::new("my-qq-login-password");
    })
    .await;

    assert_eq!(app.post_generate(json!({"prompt": "wrong code"})).await.status(), 200);
    app.wait_until_consumer_idle("mailer").await;

    let log = app.mail_log().await;
    assert_eq!((log[0]["state"].as_str(), log[0]["attempts"].as_u64()), (Some("failed"), Some(1)));
    let error = log[0]["last_error"].as_str().unwrap();
    assert!(error.contains("535") && error.contains("authorization code"), "{error}");
    assert!(!error.contains("my-qq-login-password"));
    assert!(app.smtp.mails().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_smtp_disabled_the_mail_is_written_to_the_outbox_as_an_eml_file() {
    let app = TestApp::spawn_with(|config, _| config.smtp.enable = false).await;

    assert_eq!(app.post_generate(json!({"prompt": "into the outbox"})).await.status(), 200);
    app.wait_until_consumer_idle("mailer").await;

    let files: Vec<_> = std::fs::read_dir(&app.config.smtp.outbox_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].extension().unwrap(), "eml");
    let mail = crate::helpers::ReceivedMail::parse(&std::fs::read(&files[0]).unwrap());
    assert!(mail.html.contains("into the outbox"));
    assert!(app.smtp.mails().is_empty());
}

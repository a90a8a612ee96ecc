//! The mail a user gets: safe content, the right transport, once.

use serde_json::json;

use std::time::Duration;

use crate::helpers::{SMTP_PASSWORD, TestApp, wait_for};

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
    let stream = js.get_stream(huiying::contract::STREAM).await.unwrap();
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

#[tokio::test(flavor = "multi_thread")]
async fn when_the_mail_server_is_down_for_a_while_the_mail_arrives_once_it_is_back() {
    let mut app = TestApp::spawn_with(|config, _| config.smtp.retry_delay = Duration::from_secs(1)).await;
    app.smtp.stop();

    assert_eq!(app.post_generate(json!({"prompt": "patience"})).await.status(), 200);
    wait_for("a failed first try", Duration::from_secs(30), || async {
        let log = app.mail_log().await;
        log.first().is_some_and(|n| n["state"] == "retrying").then_some(())
    })
    .await;
    app.smtp.restart().await;

    let mails = app.smtp.wait_for_mails(1).await;
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), 1);
    assert!(mails[0].html.contains("patience"));
    let log = app.mail_log().await;
    assert_eq!(log[0]["state"], "sent");
    assert!(log[0]["attempts"].as_u64().unwrap() >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_451_reply_is_retried_and_then_one_mail_arrives() {
    let app = TestApp::spawn_with(|config, _| config.smtp.to = vec!["tempfail@example.com".into()]).await;

    assert_eq!(app.post_generate(json!({"prompt": "second time lucky"})).await.status(), 200);

    app.smtp.wait_for_mails(1).await;
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), 1);
    let log = app.mail_log().await;
    assert_eq!((log[0]["state"].as_str(), log[0]["attempts"].as_u64()), (Some("sent"), Some(2)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_550_reply_is_recorded_as_failed_and_not_retried() {
    let app = TestApp::spawn_with(|config, _| config.smtp.to = vec!["reject@example.com".into()]).await;

    assert_eq!(app.post_generate(json!({"prompt": "nobody home"})).await.status(), 200);
    app.wait_until_consumer_idle("mailer").await;

    assert!(app.smtp.mails().is_empty());
    let log = app.mail_log().await;
    assert_eq!((log[0]["state"].as_str(), log[0]["attempts"].as_u64()), (Some("failed"), Some(1)));
    assert_eq!(log[0]["recipients"], json!(["reject@example.com"]));
    assert!(log[0]["last_error"].as_str().unwrap().contains("550"));
}

#[tokio::test(flavor = "multi_thread")]
async fn several_recipients_copies_and_blind_copies_each_get_the_mail() {
    let app = TestApp::spawn_with(|config, _| {
        config.smtp.to = vec!["a@example.com".into(), "b@example.com".into()];
        config.smtp.cc = vec!["c@example.com".into()];
        config.smtp.bcc = vec!["d@example.com".into()];
    })
    .await;

    assert_eq!(app.post_generate(json!({"prompt": "for the whole team"})).await.status(), 200);

    let mails = app.smtp.wait_for_mails(1).await;
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), 1, "one message, four envelope recipients");
    let mail = &mails[0];
    assert!(mail.session.ends_with("to=a@example.com,b@example.com,c@example.com,d@example.com"), "{}", mail.session);
    assert_eq!(mail.to, vec!["a@example.com", "b@example.com"]);
    assert!(mail.header_names.iter().any(|h| h.eq_ignore_ascii_case("cc")));
    assert!(!mail.header_names.iter().any(|h| h.eq_ignore_ascii_case("bcc")), "blind copies stay blind");
    for header in ["Date", "Message-ID", "MIME-Version"] {
        assert!(mail.header_names.iter().any(|h| h.eq_ignore_ascii_case(header)), "{header} missing");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_english_templates_can_be_chosen() {
    let app = TestApp::spawn_with(|config, _| config.smtp.language = huiying::config::Language::En).await;

    assert_eq!(app.post_generate(json!({"prompt": "in English please"})).await.status(), 200);

    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.subject.starts_with("huiying: your image is ready"), "{}", mail.subject);
    assert!(mail.text.contains("Prompt: in English please"), "{}", mail.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_attach_image_the_picture_travels_inside_the_mail() {
    let app = TestApp::spawn_with(|config, _| config.smtp.attach_image = true).await;

    assert_eq!(app.post_generate(json!({"prompt": "behind a firewall"})).await.status(), 200);

    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.html.contains("src=\"cid:image@huiying\""), "{}", mail.html);
    assert!(mail.content_types.contains(&"image/jpeg".to_string()), "{:?}", mail.content_types);
    assert!(mail.content_types.contains(&"multipart/related".to_string()));
    assert!(mail.text.contains("/static/images/"), "the text part still links it");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_may_name_its_own_recipient_only_when_allowed() {
    let app = TestApp::spawn_with(|config, _| config.smtp.allowed_recipients = vec!["@team.example".into()]).await;

    let refused = app.post_generate(json!({"prompt": "to a stranger", "notify_email": "boss@other.example"})).await;
    assert_eq!(refused.status(), 400);
    let error = refused.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().to_string();
    assert!(error.contains("allowed_recipients"), "{error}");
    let invalid = app.post_generate(json!({"prompt": "to nobody", "notify_email": "not an address"})).await;
    assert_eq!(invalid.status(), 400);

    let accepted = app.post_generate(json!({"prompt": "to alice", "notify_email": "alice@team.example"})).await;
    assert_eq!(accepted.status(), 200);
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert_eq!(mail.to, vec!["alice@team.example"]);
    assert!(mail.session.ends_with("to=alice@team.example"), "{}", mail.session);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_template_stops_the_mailer_at_start_naming_the_file_and_line() {
    let templates = tempfile::tempdir().unwrap();
    for language in ["zh-CN", "en"] {
        let dir = templates.path().join(language);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in
            std::fs::read_dir(std::path::Path::new(crate::helpers::REPO).join("templates").join(language)).unwrap()
        {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    std::fs::write(templates.path().join("zh-CN/failed.html.hbs"), "<p>\n{{#if error}}\n<b>{{error}}</b>\n").unwrap();
    let mut config = huiying::config::Config::default();
    config.smtp.templates_dir = templates.path().to_path_buf();

    let error = huiying::mailer::run(config, tokio_util::sync::CancellationToken::new()).await.unwrap_err().to_string();

    assert!(error.contains("failed.html.hbs"), "{error}");
    assert!(error.contains(":4:") || error.contains("line 4"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_mail_server_delays_a_mail_once_and_newer_mail_is_not_stuck_behind_it() {
    let app = TestApp::spawn_with(|config, _| config.smtp.retry_delay = Duration::from_secs(4)).await;
    app.smtp.set_busy(true);

    let first = app.submit(json!({"prompt": "sent while busy"})).await;
    wait_for("the first mail to be refused with 451", Duration::from_secs(30), || async {
        let log = app.mail_log().await;
        log.iter().any(|n| n["job_id"] == first.as_str() && n["state"] == "retrying").then_some(())
    })
    .await;
    app.smtp.set_busy(false);
    app.submit(json!({"prompt": "sent after the rush"})).await;

    // The newer mail goes out at once; the delayed one follows at its retry, 4 s later.
    let mails = app.smtp.wait_for_mails(2).await;
    assert!(mails[0].html.contains("sent after the rush"), "the newer mail was not held up");
    assert!(mails[1].html.contains("sent while busy"));
    app.wait_until_consumer_idle("mailer").await;
    assert_eq!(app.smtp.mails().len(), 2, "each delivered once");
    let log = app.mail_log().await;
    let delayed = log.iter().find(|n| n["job_id"] == first.as_str()).unwrap();
    assert_eq!((delayed["state"].as_str(), delayed["attempts"].as_u64()), (Some("sent"), Some(2)));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_smtp_disabled_and_no_outbox_a_job_completes_and_no_mail_or_file_is_made() {
    let app = TestApp::spawn_with(|config, _| {
        config.smtp.enable = false;
        config.smtp.outbox_dir = Default::default();
    })
    .await;
    let id = app.submit(json!({"prompt": "nobody is told"})).await;
    assert_eq!(app.wait_for_job(&id).await["status"], "completed");
    app.wait_until_consumer_idle("mailer").await;
    assert!(app.smtp.mails().is_empty(), "no mail sent");
    assert!(app.mail_log().await.is_empty(), "nothing to log");
    let outbox = app.config.server.images_dir.parent().unwrap().join("outbox");
    assert!(!outbox.exists(), "no outbox folder was made");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outbox_keeps_only_its_newest_mails() {
    let app = TestApp::spawn_with(|config, _| {
        config.smtp.enable = false;
        config.smtp.outbox_keep = 2;
    })
    .await;
    for n in 0..3 {
        let id = app.submit(json!({"prompt": format!("mail {n}")})).await;
        app.wait_for_job(&id).await;
    }
    app.wait_until_consumer_idle("mailer").await;
    let outbox = &app.config.smtp.outbox_dir;
    let kept = std::fs::read_dir(outbox).unwrap().count();
    assert_eq!(kept, 2, "the oldest mail was removed");
}

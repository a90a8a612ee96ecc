//! The mailer stage on an in-memory notification log, writing to an outbox folder.

use bytes::Bytes;
use time::macros::datetime;

use super::*;
use crate::contract::events::{EVENT_VERSION, IMAGE_COMPLETED};
use crate::contract::mail::SUPPRESSED_BUCKET;
use crate::parts::memory::MemoryKv;

struct Parts {
    log: Arc<MemoryKv>,
    outbox: tempfile::TempDir,
}

fn mailer() -> (Mailer, Parts) {
    let outbox = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.smtp.outbox_dir = outbox.path().to_path_buf();
    config.smtp.to = vec!["me@example.com".into()];
    let log = Arc::new(MemoryKv::new(crate::contract::MAIL_BUCKET));
    let jobs = crate::parts::JobBoard::new(JsonBucket::new(Arc::new(MemoryKv::new(crate::contract::JOBS_BUCKET))));
    (Mailer::new(&config, log.clone(), jobs, lists()).unwrap(), Parts { log, outbox })
}

/// An empty suppression list, and unsubscribe links signed with a test key.
fn lists() -> MailLists {
    let suppressed = Suppressions::new(JsonBucket::new(Arc::new(MemoryKv::new(SUPPRESSED_BUCKET))));
    let keys = crate::links::LinkKeys::new(&[b"test link key"]);
    let unsubscribe = Unsubscribe { base_url: "http://localhost:8000".into(), keys, mailto: None };
    MailLists { suppressed, unsubscribe, picture_links: None }
}

fn completed(id: &str) -> Received {
    let now = OffsetDateTime::now_utc();
    let event = ImageCompleted {
        cost: Default::default(),
        owner: None,
        group: None,
        version: EVENT_VERSION,
        id: id.into(),
        prompt: "一只狐狸".into(),
        english_prompt: "a red fox".into(),
        model: "huiying/placeholder".into(),
        url: "http://localhost:8000/static/images/x.jpg".into(),
        local_url: "http://localhost:8000/static/images/x.jpg".into(),
        r2_url: None,
        filename: "x.jpg".into(),
        width: 64,
        height: 64,
        format: "jpeg".into(),
        file_size: 1000,
        labels: Default::default(),
        kind: Default::default(),
        inputs: Vec::new(),
        requested_at: now,
        completed_at: now,
        duration_ms: 1200,
        notify_email: None,
        callback: Default::default(),
        ignored_options: Vec::new(),
        fallback: None,
    };
    Received {
        subject: IMAGE_COMPLETED.into(),
        payload: Bytes::from(serde_json::to_vec(&event).unwrap()),
        attempt: 1,
        stream: "HUIYING".into(),
        stream_sequence: 1,
        published: now,
    }
}

fn mails(parts: &Parts) -> Vec<String> {
    std::fs::read_dir(parts.outbox.path())
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_completed_job_is_mailed_once_however_often_its_event_comes() {
    let (mailer, parts) = mailer();
    for _ in 0..3 {
        mailer.handle(completed("job-1")).await.unwrap();
    }
    let mails = mails(&parts);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("To: me@example.com"), "{}", mails[0]);
    let entry = mailer.log.get("job-1", "completed").await.unwrap().unwrap();
    assert_eq!(entry.state, DeliveryState::Sent);
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_log_entry_is_a_dead_letter_never_a_second_mail() {
    let (mailer, parts) = mailer();
    parts.log.put_raw("job-1.completed", b"{half an entry");
    let failure = mailer.handle(completed("job-1")).await.unwrap_err();
    assert_eq!(failure.kind, crate::failure::FailureKind::Permanent, "{failure}");
    assert!(failure.reason.contains("unreadable"), "{failure}");
    assert!(mails(&parts).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_notification_given_up_before_is_not_sent_again_by_a_redelivery() {
    let (mailer, parts) = mailer();
    let given_up = Notification {
        job_id: "job-1".into(),
        kind: "completed".into(),
        state: DeliveryState::Failed,
        recipients: vec!["me@example.com".into()],
        attempts: 10,
        last_error: Some("550 no such user".into()),
        sent_at: None,
        updated_at: OffsetDateTime::now_utc(),
    };
    mailer.log.put(&given_up).await.unwrap();
    mailer.handle(completed("job-1")).await.unwrap();
    assert!(mails(&parts).is_empty());
}

#[tokio::test(start_paused = true)]
async fn while_the_log_cannot_be_read_the_event_is_retried_and_nothing_is_sent() {
    let (mailer, parts) = mailer();
    parts.log.set_down(true);
    assert!(mailer.handle(completed("job-1")).await.unwrap_err().is_transient());
    assert!(mails(&parts).is_empty());
    parts.log.set_down(false);
    mailer.handle(completed("job-1")).await.unwrap();
    assert_eq!(mails(&parts).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_log_that_stays_unwritable_is_waited_on_for_its_patience_and_no_longer() {
    let (mailer, parts) = mailer();
    parts.log.set_read_only(true);
    let started = tokio::time::Instant::now();
    mailer.handle(completed("job-1")).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= LOG_PATIENCE && waited < LOG_PATIENCE + Duration::from_secs(3), "{waited:?}");
    assert_eq!(mails(&parts).len(), 1, "the mail went out once, before the log was tried");
}

#[tokio::test(start_paused = true)]
async fn a_redelivery_while_the_sent_mail_is_still_being_logged_mails_nothing() {
    let (mailer, parts) = mailer();
    let mailer = Arc::new(mailer);
    // The log reads but cannot be written (a cluster electing the bucket's leader).
    parts.log.set_read_only(true);
    let first = tokio::spawn({
        let mailer = mailer.clone();
        async move { mailer.handle(completed("job-1")).await }
    });
    while mails(&parts).is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Its ack wait ran out: the same event comes again meanwhile.
    let again = mailer.handle(completed("job-1")).await.unwrap_err();
    assert!(again.is_transient(), "{again}");
    parts.log.set_read_only(false);
    first.await.unwrap().unwrap();
    mailer.handle(completed("job-1")).await.unwrap();
    assert_eq!(mails(&parts).len(), 1);
    assert_eq!(mailer.log.get("job-1", "completed").await.unwrap().unwrap().state, DeliveryState::Sent);
}

#[tokio::test(start_paused = true)]
async fn an_event_on_another_subject_is_rejected() {
    let (mailer, _parts) = mailer();
    let mut received = completed("job-1");
    received.subject = "image.requested".into();
    assert!(!mailer.handle(received).await.unwrap_err().is_transient());
}

#[test]
fn a_template_that_fails_on_real_data_stops_the_mailer_at_start() {
    let templates = tempfile::tempdir().unwrap();
    for language in ["zh-CN", "en"] {
        let dir = templates.path().join(language);
        std::fs::create_dir_all(&dir).unwrap();
        for name in
            ["completed.subject", "completed.html", "completed.text", "failed.subject", "failed.html", "failed.text"]
        {
            let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("templates")
                .join(language)
                .join(format!("{name}.hbs"));
            std::fs::copy(source, dir.join(format!("{name}.hbs"))).unwrap();
        }
    }
    let mut config = Config::default();
    config.smtp.to = vec!["me@example.com".into()];
    config.smtp.templates_dir = templates.path().to_path_buf();
    assert!(super::compose::Composer::from_config(&config.smtp).is_ok(), "the shipped templates render");

    // Parses, but cannot render: handlebars has no `length` of a list.
    let html = templates.path().join("zh-CN/completed.html.hbs");
    let source = std::fs::read_to_string(&html).unwrap();
    std::fs::write(&html, source.replace("原图", "原图 {{inputs.length}}")).unwrap();
    let error = super::compose::Composer::from_config(&config.smtp).err().expect("refused at start").to_string();
    assert!(error.contains("completed.html"), "{error}");
}

fn cancelled(id: &str, notify: bool) -> Received {
    use crate::contract::events::{Cancellation, IMAGE_FAILED, JobFacts};
    use crate::contract::jobs::CancelRequest;
    let id = id.into();
    let facts = JobFacts {
        owner: None,
        group: None,
        id: &id,
        prompt: "一只狐狸",
        model: "huiying/placeholder",
        notify_email: None,
        callback: &Default::default(),
        kind: Default::default(),
    };
    let asked = CancelRequest { requested_at: datetime!(2026-12-06 08:30 UTC), notify, by: Some("key #2".into()) };
    let event = ImageFailed::cancelled(facts, Cancellation::asked(&asked), 1);
    Received {
        subject: IMAGE_FAILED.into(),
        payload: Bytes::from(serde_json::to_vec(&event).unwrap()),
        ..completed(&id)
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_job_mails_nobody_unless_the_canceller_asked() {
    let (mailer, parts) = mailer();
    mailer.handle(cancelled("quiet", false)).await.unwrap();
    assert!(mails(&parts).is_empty());
    mailer.handle(cancelled("asked", true)).await.unwrap();
    let mails = mails(&parts);
    assert_eq!(mails.len(), 1);
    let mail = mail_parser::MessageParser::default().parse(mails[0].as_bytes()).unwrap();
    let text = mail.body_text(0).unwrap();
    assert!(text.contains("asked"), "the mail names the job: {text}");
    // Cancelled, by whom and when; not a failure "at reading the request".
    assert!(mail.subject().unwrap().starts_with("绘影：任务已取消"), "{:?}", mail.subject());
    assert!(text.contains("API 密钥 key #2 请求取消"), "{text}");
    assert!(text.contains("请求时间：2026-12-06"), "{text}");
    assert!(!text.contains("失败环节") && !text.contains("请求内容"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_recipient_domain_with_a_limit_gets_no_more_than_it_takes_and_others_are_not_held() {
    let outbox = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.smtp.outbox_dir = outbox.path().to_path_buf();
    config.smtp.to = vec!["me@QQ.com".into()];
    config.smtp.domains.insert("qq.com".into(), crate::config::DomainLimits { max_per_minute: 2 });
    let mailer = |config: &Config| {
        let kv = || Arc::new(MemoryKv::new(crate::contract::MAIL_BUCKET));
        let jobs = crate::parts::JobBoard::new(JsonBucket::new(kv()));
        Mailer::new(config, kv(), jobs, lists()).unwrap()
    };
    let to_qq = mailer(&config);
    let start = tokio::time::Instant::now();
    for n in 0..3 {
        to_qq.handle(completed(&format!("job-{n}"))).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::from_secs(60), "the third mail to qq.com waited for the minute to pass");

    config.smtp.to = vec!["me@example.com".into()];
    let elsewhere = mailer(&config);
    let start = tokio::time::Instant::now();
    for n in 0..3 {
        elsewhere.handle(completed(&format!("job-{n}"))).await.unwrap();
    }
    assert_eq!(start.elapsed(), Duration::ZERO);
}

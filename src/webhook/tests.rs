//! The webhook stages on in-memory parts, sending to a receiver in this process.

use std::sync::Mutex;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use time::OffsetDateTime;

use super::*;
use crate::config::{EndpointConfig, Secret, endpoint_id_for};
use crate::contract::events::{ImageFailed, JobFacts, RequestWebhook, Stage as FailedAt};
use crate::contract::webhooks::{DeliveryState, EndpointKind, WebhookTask};
use crate::failure::FailureKind;
use crate::parts::memory::{MemoryKv, MemoryStream};
use crate::worker::{Received, Stage};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[test]
fn the_signature_matches_the_standard_webhooks_test_vector() {
    let key = crate::config::secret_key(&Secret::new(SECRET)).unwrap();
    let signature = payload::signature(&[key], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, r#"{"test": 2432232314}"#);
    assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

#[test]
fn a_rotating_secret_signs_twice_and_a_body_stays_small_and_private() {
    let keys = vec![b"first".to_vec(), b"second".to_vec()];
    assert_eq!(payload::signature(&keys, "msg_1", 1, "{}").split(' ').count(), 2);
    let event = serde_json::json!({"version": 1, "id": "job", "prompt": "画".repeat(4000),
        "english_prompt": "x".repeat(8000), "notify_email": "me@example.com", "webhook": "https://x"});
    let body = payload::body("image.completed", &event, OffsetDateTime::now_utc());
    assert!(body.len() <= payload::MAX_BODY_BYTES, "{}", body.len());
    assert!(!body.contains("me@example.com") && !body.contains("\"webhook\""));
}

/// A receiver answering each POST with the next status of `script` (the last repeats).
struct Receiver {
    url: String,
    seen: std::sync::Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

async fn receiver(script: Vec<u16>) -> Receiver {
    let seen: std::sync::Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Default::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            let script = script.clone();
            async move {
                let mut log = log.lock().unwrap();
                log.push((headers, body));
                let status = script.get(log.len() - 1).or(script.last()).copied().unwrap_or(200);
                (StatusCode::from_u16(status).unwrap(), "answer")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, seen }
}

fn settings(url: &str) -> WebhooksConfig {
    WebhooksConfig {
        allow_private: true,
        retry_schedule: vec![1, 1],
        request_secret: vec![Secret::new(SECRET)],
        endpoints: vec![EndpointConfig {
            name: "orders".into(),
            url: url.into(),
            secret: vec![Secret::new(SECRET)],
            secret_env: String::new(),
            events: vec!["image.failed".into()],
            headers: [("x-team".to_string(), "art".to_string())].into(),
            enabled: true,
        }],
        ..WebhooksConfig::default()
    }
}

fn failed_event(callback: RequestWebhook) -> Received {
    let id = "job-1".into();
    let job = JobFacts {
        owner: None,
        group: None,
        id: &id,
        prompt: "一只狐狸",
        model: "m",
        notify_email: None,
        callback: &callback,
        kind: Default::default(),
    };
    let event = ImageFailed::new(job, FailedAt::Generate, "the model is down".into(), true, 3);
    Received {
        subject: "image.failed".into(),
        payload: serde_json::to_vec(&event).unwrap().into(),
        attempt: 1,
        stream: "HUIYING".into(),
        stream_sequence: 1,
        published: OffsetDateTime::now_utc(),
    }
}

#[tokio::test]
async fn each_event_becomes_one_task_per_endpoint_that_wants_it_and_only_once() {
    let stream = std::sync::Arc::new(MemoryStream::default());
    let settings = settings("http://127.0.0.1:9/hook");
    let fan_out = FanOut::new(stream.clone(), Endpoints::from_config(&settings).unwrap(), no_jobs());
    let own = RequestWebhook {
        webhook: Some("http://127.0.0.1:9/mine".into()),
        webhook_events_filter: Some(vec!["completed".into()]),
    };
    fan_out.handle(failed_event(own)).await.unwrap();
    let tasks = stream.events::<WebhookTask>();
    assert_eq!(tasks.len(), 1, "the request's own webhook wants only completions");
    assert_eq!((tasks[0].endpoint.as_str(), tasks[0].kind), ("orders", EndpointKind::Configured));

    let own = RequestWebhook { webhook: Some("http://127.0.0.1:9/mine".into()), webhook_events_filter: None };
    fan_out.handle(failed_event(own.clone())).await.unwrap();
    fan_out.handle(failed_event(own)).await.unwrap();
    let tasks = stream.events::<WebhookTask>();
    assert_eq!(tasks.len(), 2, "a redelivered event makes no second task");
    assert_eq!(tasks[1].endpoint, endpoint_id_for("http://127.0.0.1:9/mine"));
    assert_eq!(tasks[0].id, WebhookTask::delivery_id("image.failed", "job-1", "orders"));
}

struct Delivering {
    deliverer: Deliverer,
    log: JsonBucket<Delivery>,
    states: JsonBucket<EndpointState>,
    task: WebhookTask,
    /// Where the operator's alerts go (SMTP off: the outbox).
    outbox: tempfile::TempDir,
}

impl Delivering {
    fn alerts(&self) -> Vec<String> {
        std::fs::read_dir(self.outbox.path())
            .unwrap()
            .map(|entry| {
                let raw = std::fs::read(entry.unwrap().path()).unwrap();
                let mail = mail_parser::MessageParser::default().parse(&raw).unwrap();
                let to = mail.to().and_then(|to| to.first()).and_then(|a| a.address()).unwrap_or_default();
                format!("To: {to}\n{}", mail.body_text(0).unwrap_or_default())
            })
            .collect()
    }
}

/// A job board with nothing on it: the events carry their own webhooks here.
fn no_jobs() -> crate::parts::JobBoard {
    crate::parts::JobBoard::new(JsonBucket::new(std::sync::Arc::new(MemoryKv::new(crate::contract::JOBS_BUCKET))))
}

async fn delivering(url: &str) -> Delivering {
    let settings = settings(url);
    let stream = std::sync::Arc::new(MemoryStream::default());
    let endpoints = Endpoints::from_config(&settings).unwrap();
    FanOut::new(stream.clone(), endpoints.clone(), no_jobs())
        .handle(failed_event(RequestWebhook::default()))
        .await
        .unwrap();
    let log = JsonBucket::new(std::sync::Arc::new(MemoryKv::new("deliveries")));
    let states = JsonBucket::new(std::sync::Arc::new(MemoryKv::new("states")));
    let outbox = tempfile::tempdir().unwrap();
    let mut config = crate::config::Config::default();
    config.smtp.outbox_dir = outbox.path().to_path_buf();
    config.smtp.to = vec!["operator@example.com".into()];
    let alerts = alerts::Alerts::from_config(&config).unwrap();
    let deliverer = Deliverer::new(&settings, endpoints, log.clone(), states.clone(), alerts);
    Delivering { deliverer, log, states, task: stream.events::<WebhookTask>().remove(0), outbox }
}

fn task_delivery(task: &WebhookTask, attempt: u32) -> Received {
    Received {
        subject: WEBHOOK_DELIVER.into(),
        payload: serde_json::to_vec(task).unwrap().into(),
        attempt,
        stream: WEBHOOK_STREAM.into(),
        stream_sequence: 1,
        published: OffsetDateTime::now_utc(),
    }
}

#[tokio::test]
async fn a_delivery_is_signed_logged_and_not_sent_again_when_redelivered() {
    let receiver = receiver(vec![204]).await;
    let setup = delivering(&receiver.url).await;
    for attempt in 1..=2 {
        setup.deliverer.handle(task_delivery(&setup.task, attempt)).await.unwrap();
    }
    let seen = receiver.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    assert_eq!(headers["webhook-id"], setup.task.id.as_str());
    assert_eq!(headers["x-team"], "art");
    let timestamp: i64 = headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
    let key = crate::config::secret_key(&Secret::new(SECRET)).unwrap();
    let expected = payload::signature(&[key], &setup.task.id, timestamp, std::str::from_utf8(body).unwrap());
    assert_eq!(headers["webhook-signature"], expected.as_str());
    let delivery = setup.log.get(&setup.task.id).await.unwrap().unwrap();
    assert_eq!(
        (delivery.state, delivery.attempts.len(), delivery.attempts[0].status),
        (DeliveryState::Succeeded, 1, Some(204))
    );
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_on_schedule_then_given_up() {
    let receiver = receiver(vec![500]).await;
    let setup = delivering(&receiver.url).await;
    for attempt in 1..=2 {
        let failure = setup.deliverer.handle(task_delivery(&setup.task, attempt)).await.unwrap_err();
        let FailureKind::Transient { after: Some(wait) } = failure.kind else { panic!("no scheduled wait: {failure}") };
        assert!(wait >= Duration::from_millis(800) && wait <= Duration::from_millis(1200), "{wait:?}");
    }
    setup.deliverer.handle(task_delivery(&setup.task, 3)).await.unwrap();
    let delivery = setup.log.get(&setup.task.id).await.unwrap().unwrap();
    assert_eq!((delivery.state, delivery.attempts.len()), (DeliveryState::Failed, 3));
    assert!(setup.states.get("orders").await.unwrap().unwrap().failing_since.is_some());
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_later_deliveries_are_not_sent() {
    let receiver = receiver(vec![410]).await;
    let setup = delivering(&receiver.url).await;
    setup.deliverer.handle(task_delivery(&setup.task, 1)).await.unwrap();
    let state = setup.states.get("orders").await.unwrap().unwrap();
    assert!(state.disabled, "{state:?}");
    let alerts = setup.alerts();
    assert_eq!(alerts.len(), 1, "the operator is told once");
    assert!(alerts[0].contains("To: operator@example.com") && alerts[0].contains("410 Gone"), "{}", alerts[0]);
    let replay = WebhookTask { replay: true, ..setup.task.clone() };
    setup.deliverer.handle(task_delivery(&replay, 1)).await.unwrap();
    assert_eq!(receiver.seen.lock().unwrap().len(), 1, "nothing goes to a disabled endpoint");
}

#[tokio::test]
async fn an_endpoint_failing_longer_than_disable_after_is_disabled() {
    let receiver = receiver(vec![503]).await;
    let setup = delivering(&receiver.url).await;
    let long_ago = OffsetDateTime::now_utc() - time::Duration::days(4);
    setup.states.put("orders", &EndpointState { failing_since: Some(long_ago), ..Default::default() }).await.unwrap();
    setup.deliverer.handle(task_delivery(&setup.task, 1)).await.unwrap();
    assert!(setup.states.get("orders").await.unwrap().unwrap().disabled);
    assert_eq!(setup.log.get(&setup.task.id).await.unwrap().unwrap().state, DeliveryState::Failed);
    assert!(setup.alerts()[0].contains("webhooks enable orders"), "the alert says how to enable it again");
}

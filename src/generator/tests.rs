//! The generator stage on in-memory parts: what it publishes and records for each kind of
//! request, and when it asks for a retry.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::contract::JOBS_BUCKET;
use crate::contract::events::{ImageFailed, Stage as FailedAt};
use crate::contract::jobs::CancelRequest;
use crate::failure::FailureKind;
use crate::parts::memory::{MemoryKv, MemoryObjects, MemoryStream};

struct Parts {
    stream: Arc<MemoryStream>,
    states: Arc<MemoryKv>,
    objects: Arc<MemoryObjects>,
    jobs: JobBoard,
    ledger: Arc<MemoryKv>,
}

fn generator_with(change: impl FnOnce(&mut Config)) -> (Generator, Parts) {
    let mut config = Config::default();
    config.generator.retry_delay = Duration::ZERO;
    change(&mut config);
    let states = Arc::new(MemoryKv::new(JOBS_BUCKET));
    let parts = Parts {
        stream: Arc::new(MemoryStream::default()),
        jobs: JobBoard::new(crate::parts::JsonBucket::new(states.clone())),
        states,
        objects: Arc::new(MemoryObjects::default()),
        ledger: Arc::new(MemoryKv::new(crate::contract::spend::SPEND_BUCKET)),
    };
    let (stream, jobs, objects) = (parts.stream.clone(), parts.jobs.clone(), parts.objects.clone());
    let generator =
        Generator::new(&config, stream, jobs, objects, parts.ledger.clone(), crate::clock::system_clock()).unwrap();
    (generator, parts)
}

fn generator() -> (Generator, Parts) {
    generator_with(|_| {})
}

fn delivery(body: &str, attempt: u32) -> Received {
    Received {
        subject: events::IMAGE_REQUESTED.into(),
        payload: Bytes::copy_from_slice(body.as_bytes()),
        attempt,
        stream: "HUIYING".into(),
        stream_sequence: 7,
        published: OffsetDateTime::now_utc(),
    }
}

#[tokio::test]
async fn a_request_becomes_a_picture_carried_by_an_image_generated_event() {
    let (generator, parts) = generator();
    let body = r#"{"id": "job-1", "prompt": "a red fox", "model": "huiying/placeholder"}"#;
    generator.handle(delivery(body, 1)).await.unwrap();
    let generated = parts.stream.events::<ImageGenerated>();
    assert_eq!(generated.len(), 1);
    assert_eq!((generated[0].id.as_str(), generated[0].prompt.as_str()), ("job-1", "a red fox"));
    assert_eq!(generated[0].content_type, "image/png");
    // The placeholder's picture is small: it travels in the event, not the object store.
    let PictureAt::Inline { picture_base64: picture } = &generated[0].picture else {
        panic!("expected the picture in the event: {:?}", generated[0].picture);
    };
    assert_eq!(picture.len() as u64, generated[0].byte_size);
    assert_eq!(image::load_from_memory(picture).unwrap().width(), 512);
    assert!(parts.objects.names().is_empty(), "{:?}", parts.objects.names());
    let state = parts.jobs.get("job-1").await.unwrap().unwrap();
    assert_eq!(state.status, JobState::Generating, "the store moves it on");
}

#[tokio::test]
async fn a_request_without_an_id_gets_one_derived_from_its_place_in_the_stream() {
    let (generator, parts) = generator();
    let received = delivery(r#"{"prompt": "a red fox"}"#, 1);
    let expected = events::derived_job_id("HUIYING", 7, received.published);
    generator.handle(received).await.unwrap();
    assert_eq!(parts.stream.events::<ImageGenerated>()[0].id, expected);
}

#[tokio::test]
async fn a_redelivery_after_the_job_moved_on_draws_nothing() {
    let (generator, parts) = generator();
    parts.jobs.set(&JobStatus::new(&"job-1".into(), JobState::Storing, "a red fox", None)).await.unwrap();
    generator.handle(delivery(r#"{"id": "job-1", "prompt": "a red fox"}"#, 2)).await.unwrap();
    assert_eq!(parts.stream.count(), 0);
    assert!(parts.objects.names().is_empty());
}

#[tokio::test]
async fn an_unusable_request_ends_the_job_at_stage_request_and_is_acknowledged() {
    let (generator, parts) = generator();
    for (id, body) in [
        ("empty", r#"{"id": "empty", "prompt": "  "}"#),
        ("many", r#"{"id": "many", "prompt": "a fox", "n": 3}"#),
        ("spaced", r#"{"id": "spaced", "prompt": "a fox", "model": "my model"}"#),
    ] {
        generator.handle(delivery(body, 1)).await.unwrap();
        let state = parts.jobs.get(id).await.unwrap().unwrap();
        assert_eq!(state.status, JobState::Failed, "{id}");
        assert_eq!(state.error.unwrap().stage, FailedAt::Request, "{id}");
    }
    assert_eq!(parts.stream.events::<ImageFailed>().len(), 3);
    assert!(parts.stream.events::<ImageGenerated>().is_empty());
}

#[tokio::test]
async fn an_unreadable_or_newer_event_is_rejected_for_good() {
    let (generator, _parts) = generator();
    for body in ["{not json", r#"{"version": 99, "prompt": "a fox"}"#, r#"{"id": "a.b", "prompt": "a fox"}"#] {
        let failure = generator.handle(delivery(body, 1)).await.unwrap_err();
        assert_eq!(failure.kind, FailureKind::Permanent, "{body}: {failure}");
    }
}

#[tokio::test]
async fn an_unreachable_model_is_retried_until_the_last_attempt_then_fails_the_job_once() {
    let (generator, parts) = generator_with(|config| {
        config.api_keys.openai_api_key = crate::config::Secret::new("sk-test");
        config.openai.base_url = "http://127.0.0.1:9/v1".into();
        config.generator.max_attempts = 2;
    });
    let body = r#"{"id": "job-1", "prompt": "a fox", "model": "dall-e-3"}"#;
    let first = generator.handle(delivery(body, 1)).await.unwrap_err();
    assert!(first.is_transient(), "{first}");
    assert!(parts.stream.events::<ImageFailed>().is_empty(), "attempts are left");
    generator.handle(delivery(body, 2)).await.unwrap();
    let failed = parts.stream.events::<ImageFailed>();
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].stage, failed[0].transient, failed[0].attempts), (FailedAt::Generate, true, 2));
    assert!(failed[0].error.contains("could not be reached"), "{}", failed[0].error);
}

#[tokio::test]
async fn while_nats_is_away_the_request_is_retried_and_then_published_once() {
    let (generator, parts) = generator();
    let body = r#"{"id": "job-1", "prompt": "a fox"}"#;
    parts.stream.set_down(true);
    assert!(generator.handle(delivery(body, 1)).await.unwrap_err().is_transient());
    parts.states.set_down(true);
    assert!(generator.handle(delivery(body, 2)).await.unwrap_err().is_transient());
    parts.stream.set_down(false);
    parts.states.set_down(false);
    generator.handle(delivery(body, 3)).await.unwrap();
    generator.handle(delivery(body, 4)).await.unwrap();
    assert_eq!(parts.stream.events::<ImageGenerated>().len(), 1, "one message per job and subject");
}

#[tokio::test]
async fn a_job_cancelled_before_it_reaches_the_model_is_never_drawn_and_ends_cancelled() {
    let (generator, parts) = generator();
    let asked = CancelRequest { requested_at: OffsetDateTime::now_utc(), notify: false, by: Some("key #1".into()) };
    parts.jobs.request_cancel("job-1", &asked).await.unwrap();
    generator.handle(delivery(r#"{"id": "job-1", "prompt": "a red fox"}"#, 1)).await.unwrap();
    assert!(parts.objects.names().is_empty(), "nothing was drawn");
    assert!(parts.stream.events::<ImageGenerated>().is_empty());
    let failed = parts.stream.events::<ImageFailed>();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].stage, FailedAt::Cancelled);
    assert_eq!(failed[0].cancelled, Some(Cancellation::asked(&asked)), "by whom and when travel with it");
    assert_eq!(failed[0].cancelled.as_ref().unwrap().by, crate::contract::events::CancelledBy::Request);
    assert_eq!(parts.jobs.get("job-1").await.unwrap().unwrap().status, JobState::Cancelled);
}

#[tokio::test]
async fn a_job_whose_deadline_passed_before_it_started_is_cancelled_not_drawn() {
    let (generator, parts) = generator();
    let body = r#"{"id": "late", "prompt": "a red fox", "deadline": "2020-01-01T00:00:00Z"}"#;
    generator.handle(delivery(body, 1)).await.unwrap();
    let timely = r#"{"id": "timely", "prompt": "a red fox", "deadline": "2999-01-01T00:00:00Z"}"#;
    generator.handle(delivery(timely, 1)).await.unwrap();
    let drawn: Vec<String> = parts.stream.events::<ImageGenerated>().into_iter().map(|g| g.id.to_string()).collect();
    assert_eq!(drawn, ["timely"], "only the job still wanted was drawn");
    let failed = parts.stream.events::<ImageFailed>();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].cancelled.as_ref().map(|c| c.by), Some(crate::contract::events::CancelledBy::Deadline));
    assert_eq!(parts.jobs.get("late").await.unwrap().unwrap().status, JobState::Cancelled);
}

#[tokio::test]
async fn a_picture_over_the_inline_limit_goes_through_the_object_store() {
    let (generator, parts) = generator();
    // Noise does not compress: the placeholder's edit of it is a PNG of several hundred KB.
    let noise = image::RgbImage::from_fn(400, 400, |x, y| {
        let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(2_246_822_519)).wrapping_mul(668_265_263);
        image::Rgb([(n >> 8) as u8, (n >> 16) as u8, (n >> 24) as u8])
    });
    let mut input = std::io::Cursor::new(Vec::new());
    noise.write_to(&mut input, image::ImageFormat::Png).unwrap();
    parts.objects.put("input-1", input.get_ref()).await.unwrap();
    let body = r#"{"id": "job-1", "prompt": "make it blue", "kind": "edit", "inputs": [
        {"object": "input-1", "content_type": "image/png", "width": 400, "height": 400, "source": "upload:u1"}]}"#;
    generator.handle(delivery(body, 1)).await.unwrap();
    let generated = parts.stream.events::<ImageGenerated>();
    assert_eq!(generated.len(), 1);
    assert!(generated[0].byte_size > INLINE_PICTURE_LIMIT as u64, "{} bytes", generated[0].byte_size);
    // Named by job and attempt: a redelivery would write another object, never replace this one.
    let expected = PictureAt::Object { bucket: IMAGES_BUCKET.into(), object: "job-1.1".into() };
    assert_eq!(generated[0].picture, expected);
    let stored = parts.objects.get("job-1.1").await.unwrap().unwrap();
    assert_eq!(stored.len() as u64, generated[0].byte_size);
}

#[tokio::test]
async fn a_job_over_its_keys_budget_fails_at_stage_budget_without_calling_the_model() {
    let (generator, parts) = generator_with(|config| {
        config.prices = toml::from_str(r#""huiying/placeholder" = 0.25"#).unwrap();
        config.server.keys = vec![crate::config::KeyConfig {
            name: "design".into(),
            key: crate::config::Secret::new("k"),
            daily_budget_usd: 0.4,
            ..Default::default()
        }];
    });
    let body = |id: &str| format!(r#"{{"id": "{id}", "prompt": "a fox", "owner": "design"}}"#);
    generator.handle(delivery(&body("job-1"), 1)).await.unwrap();
    generator.handle(delivery(&body("job-2"), 1)).await.unwrap();
    assert_eq!(parts.stream.events::<ImageGenerated>().len(), 1, "the second was never drawn");
    let failed = parts.stream.events::<ImageFailed>();
    assert_eq!((failed.len(), failed[0].stage), (1, FailedAt::Budget));
    let refusal = failed[0].budget.as_ref().unwrap();
    assert_eq!((refusal.spent_usd, refusal.limit_usd), (0.25, 0.4));
    assert!(failed[0].error.contains("daily budget of $0.40"), "{}", failed[0].error);
    let state = parts.jobs.get("job-2").await.unwrap().unwrap();
    assert_eq!(state.status, JobState::Failed);
    // A job cancelled before the model holds nothing: the ledger shows job 1's cost alone.
    let asked = CancelRequest { requested_at: OffsetDateTime::now_utc(), notify: false, by: None };
    parts.jobs.request_cancel("job-3", &asked).await.unwrap();
    generator.handle(delivery(&body("job-3"), 1)).await.unwrap();
    let month = crate::contract::spend::ledger_key(&crate::clock::Today::at(
        OffsetDateTime::now_utc(),
        &jiff::tz::TimeZone::UTC,
    ));
    let (bytes, _) = parts.ledger.entry(&month).await.unwrap().expect("job 1 was counted");
    let ledger: crate::contract::spend::MonthSpend = serde_json::from_slice(&bytes).unwrap();
    assert!(ledger.held.is_empty(), "{ledger:?}");
    let today = crate::clock::Today::at(OffsetDateTime::now_utc(), &jiff::tz::TimeZone::UTC).day;
    assert_eq!(ledger.spent(Some("design"), crate::contract::spend::Period::Day, &today), 250_000);
}

/// A generator whose OpenRouter is unreachable (a port nobody listens on), with
/// `fallback` as the fallbacks of `some/model`, one attempt per model.
fn generator_whose_openrouter_is_down(fallback: &[&str]) -> (Generator, Parts) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    generator_with(|config| {
        config.api_keys.openrouter_api_key = crate::config::Secret::new("sk-or-test");
        config.openrouter.base_url = format!("http://{closed}/api/v1");
        config.generator.max_attempts = 2;
        let settings = crate::config::ModelSettings { fallback: fallback.iter().map(|m| m.to_string()).collect() };
        config.models.each.insert("some/model".into(), settings);
    })
}

#[tokio::test]
async fn a_model_whose_provider_is_down_after_its_retries_falls_back_and_the_event_says_so() {
    let (generator, parts) = generator_whose_openrouter_is_down(&["huiying/placeholder"]);
    let body = r#"{"id": "job-1", "prompt": "a red fox", "model": "some/model"}"#;

    let first = generator.handle(delivery(body, 1)).await.unwrap_err();
    assert!(first.is_transient(), "the model's own retries come first: {first}");
    assert!(parts.stream.events::<ImageGenerated>().is_empty());
    generator.handle(delivery(body, 2)).await.unwrap();

    let generated = parts.stream.events::<ImageGenerated>();
    assert_eq!(generated.len(), 1);
    assert_eq!(generated[0].model.as_str(), "huiying/placeholder", "the fallback drew it");
    let fallback = generated[0].fallback.as_ref().expect("the event says a fallback drew it");
    assert_eq!(fallback.requested_model, "some/model");
    assert!(fallback.reason.contains("some/model: OpenRouter") && fallback.reason.contains("could not be reached"));
    assert!(parts.stream.events::<ImageFailed>().is_empty());
}

#[tokio::test]
async fn without_a_fallback_or_for_a_refusal_the_job_fails_as_before() {
    let (generator, parts) = generator_whose_openrouter_is_down(&[]);
    generator.handle(delivery(r#"{"id": "down", "prompt": "a fox", "model": "some/model"}"#, 2)).await.unwrap();
    // Refused (its provider has no key): the request cannot be drawn by it, no fallback.
    let (generator, refused) = generator_with(|config| {
        let settings = crate::config::ModelSettings { fallback: vec!["huiying/placeholder".into()] };
        config.models.each.insert("gpt-image-1".into(), settings);
    });
    generator.handle(delivery(r#"{"id": "keyless", "prompt": "a fox", "model": "gpt-image-1"}"#, 3)).await.unwrap();

    for (parts, id, stage) in [(&parts, "down", FailedAt::Generate), (&refused, "keyless", FailedAt::Request)] {
        assert!(parts.stream.events::<ImageGenerated>().is_empty(), "{id} was not drawn");
        let failed = parts.stream.events::<ImageFailed>();
        assert_eq!((failed.len(), failed[0].id.as_str(), failed[0].stage), (1, id, stage), "{:?}", failed[0].error);
    }
}

#[tokio::test]
async fn when_every_fallback_fails_too_the_error_names_each_model() {
    let (generator, parts) = generator_whose_openrouter_is_down(&["other/model"]);
    generator.handle(delivery(r#"{"id": "job-1", "prompt": "a fox", "model": "some/model"}"#, 2)).await.unwrap();
    let failed = parts.stream.events::<ImageFailed>();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].error.starts_with("some/model: OpenRouter"), "{}", failed[0].error);
    assert!(failed[0].error.contains("; other/model: OpenRouter"), "{}", failed[0].error);
    assert!(failed[0].transient);
}

//! `POST /jobs/{id}/cancel` and `deadline` through `oneshot`: what the client is told.

use axum::body::Body;
use axum::http::{Request, header};
use time::OffsetDateTime;

use super::{TestIngest, ingest_with};
use crate::contract::events::{Cancellation, ImageFailed, JobFacts, Stage};
use crate::contract::jobs::{JobState, JobStatus};
use crate::contract::values::JobId;

fn cancel(id: &str, body: &str) -> Request<Body> {
    Request::post(format!("/jobs/{id}/cancel"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("prefer", "wait=0")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn job_in(ingest: &TestIngest, id: &str, state: JobState) {
    ingest.jobs.set(&JobStatus::new(&id.into(), state, "a red fox", None)).await.unwrap();
}

fn facts(id: &JobId) -> JobFacts<'_> {
    JobFacts {
        owner: None,
        group: None,
        id,
        prompt: "a red fox",
        model: "huiying/placeholder",
        notify_email: None,
        callback: &crate::contract::events::RequestWebhook { webhook: None, webhook_events_filter: None },
        kind: Default::default(),
    }
}

#[tokio::test]
async fn cancelling_a_job_still_on_its_way_is_accepted_and_shows_on_its_status() {
    let ingest = ingest_with(|_| {}, None);
    job_in(&ingest, "job-1", JobState::Queued).await;
    let (status, answer, _) = ingest.send(cancel("job-1", "")).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!((answer["status"].as_str(), answer["cancel_requested"].as_bool()), (Some("queued"), Some(true)));
    let asked = ingest.jobs.cancel_request("job-1").await.unwrap().unwrap();
    assert!(!asked.notify, "no mail unless asked");

    // Asking again, now for a mail: the first request stands.
    let (status, _, _) = ingest.send(cancel("job-1", r#"{"notify": true}"#)).await;
    assert_eq!(status, 202);
    assert!(!ingest.jobs.cancel_request("job-1").await.unwrap().unwrap().notify);
    let (_, job, _) = ingest.send(Request::get("/jobs/job-1").body(Body::empty()).unwrap()).await;
    assert_eq!(job["cancel_requested"], true);
}

#[tokio::test]
async fn a_cancelled_job_answers_200_and_one_that_ended_otherwise_409() {
    let ingest = ingest_with(|_| {}, None);
    let cancelled = ImageFailed::cancelled(facts(&"gone".into()), Cancellation::deadline(), 1);
    ingest.jobs.set(&JobStatus::from(&cancelled)).await.unwrap();
    let (status, answer, _) = ingest.send(cancel("gone", "")).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("cancelled")), "{answer}");
    assert_eq!(answer["error"]["stage"], "cancelled");

    let failed = ImageFailed::new(facts(&"broken".into()), Stage::Generate, "the model is down".into(), true, 3);
    ingest.jobs.set(&JobStatus::from(&failed)).await.unwrap();
    let (status, answer, _) = ingest.send(cancel("broken", "")).await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("already failed"), "{answer}");
    assert!(ingest.jobs.cancel_request("broken").await.unwrap().is_none(), "nothing left to stop");
}

#[tokio::test]
async fn a_cancel_remembers_which_api_key_asked_by_its_name_never_the_key_itself() {
    use crate::config::Secret;
    let ingest = ingest_with(|config| config.server.api_keys = vec![Secret::new("first"), Secret::new("second")], None);
    let queued = JobStatus::new(&"job-1".into(), JobState::Queued, "a red fox", None).owned_by(Some("key-2"));
    ingest.jobs.set(&queued).await.unwrap();
    let mut request = cancel("job-1", "");
    request.headers_mut().insert(header::AUTHORIZATION, "Bearer second".parse().unwrap());
    let (status, answer, _) = ingest.send(request).await;
    assert_eq!(status, 202, "{answer}");
    let asked = ingest.jobs.cancel_request("job-1").await.unwrap().unwrap();
    assert_eq!(asked.by.as_deref(), Some("key-2"));
}

#[tokio::test]
async fn cancelling_an_unknown_job_or_with_a_bad_body_is_a_4xx() {
    let ingest = ingest_with(|_| {}, None);
    let (status, answer, _) = ingest.send(cancel("nobody", "")).await;
    assert_eq!(status, 404, "{answer}");
    job_in(&ingest, "job-1", JobState::Generating).await;
    let (status, answer, _) = ingest.send(cancel("job-1", r#"{"notify": "yes"}"#)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("notify"), "{answer}");
}

#[tokio::test]
async fn a_deadline_in_seconds_or_as_a_time_travels_with_the_job() {
    let ingest = ingest_with(|_| {}, None);
    let before = OffsetDateTime::now_utc();
    let tomorrow = (before + time::Duration::days(1)).replace_nanosecond(0).unwrap();
    let at = tomorrow.format(&time::format_description::well_known::Rfc3339).unwrap();
    for body in
        [r#"{"prompt": "a fox", "deadline": 30}"#.to_string(), format!(r#"{{"prompt": "a fox", "deadline": "{at}"}}"#)]
    {
        let request = Request::post("/generate-image")
            .header(header::CONTENT_TYPE, "application/json")
            .header("prefer", "respond-async")
            .body(Body::from(body))
            .unwrap();
        let (status, answer, _) = ingest.send(request).await;
        assert_eq!(status, 202, "{answer}");
    }
    let queued = ingest.queued();
    let in_seconds = (queued[0].deadline.unwrap() - before).whole_seconds();
    assert!((29..=31).contains(&in_seconds), "{in_seconds}");
    assert_eq!(queued[1].deadline, Some(tomorrow));
}

//! Groups asked for again under their Idempotency-Key.

use axum::body::Body;
use axum::http::{Request, header};

use super::ingest;

/// `POST /generate-image` of `body` with `Idempotency-Key: key`, answered at once.
fn with_key(body: &str, key: &str) -> Request<Body> {
    Request::post("/generate-image")
        .header(header::CONTENT_TYPE, "application/json")
        .header("prefer", "respond-async")
        .header("idempotency-key", key)
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn n_pictures_asked_again_under_their_key_are_the_same_group_and_no_picture_twice() {
    let ingest = ingest();
    let (status, first, _) = ingest.send(with_key(r#"{"prompt": "three foxes", "n": 3}"#, "k-1")).await;
    assert_eq!(status, 202, "{first}");

    // The same request, spaced otherwise and with its fields in another order.
    let (status, again, _) = ingest.send(with_key(r#"{"n":3,"prompt":"three foxes"}"#, "k-1")).await;

    assert_eq!(status, 202, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["jobs"], first["jobs"]);
    assert_eq!(ingest.queued().len(), 3, "three jobs, not six");
    let (status, other, _) = ingest.send(with_key(r#"{"prompt": "four foxes", "n": 4}"#, "k-1")).await;
    assert_eq!(status, 422, "{other}");
}

// Paused time: the acknowledgement stays lost for the whole hold ([server] failover_wait).
#[tokio::test(start_paused = true)]
async fn a_group_whose_first_try_failed_partway_is_completed_by_the_retry_without_doubles() {
    let ingest = ingest();
    // JetStream stores the first job but its answer is lost: the request fails (503).
    ingest.stream.set_acks_lost(true);
    let (status, _, _) = ingest.send(with_key(r#"{"prompt": "three owls", "n": 3}"#, "k-2")).await;
    assert_eq!(status, 503);
    assert_eq!(ingest.queued().len(), 1);
    ingest.stream.set_acks_lost(false);

    let (status, answer, _) = ingest.send(with_key(r#"{"prompt": "three owls", "n": 3}"#, "k-2")).await;

    assert_eq!(status, 202, "{answer}");
    let members: Vec<String> = serde_json::from_value(answer["jobs"].clone()).unwrap();
    let mut queued: Vec<String> = ingest.queued().into_iter().map(|job| job.id).collect();
    queued.sort();
    let mut expected = members.clone();
    expected.sort();
    assert_eq!(queued, expected, "each of the group's jobs queued once");
    assert!(ingest.queued().iter().all(|job| job.group.as_ref().is_some_and(|g| g.id == answer["id"])));
}

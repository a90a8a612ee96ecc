//! Every route through `oneshot`, on in-memory parts: the answers a client gets, and
//! what reaches the queue, with no nats-server. This file starts ingest on those parts
//! ([`ingest_with`]); each file beside it tells the stories of some routes.

mod budgets;
mod cancel;
mod edits;
mod groups;
mod owners;
mod quotas;
mod routes;

use axum::body::Body;
use axum::http::{Request, Response, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use std::sync::Arc;

use axum::Router;

use super::{AppState, IngestParts, router};
use crate::config::Config;
use crate::config::Secret;
use crate::contract::events::ImageRequested;
use crate::contract::jobs::JobState;
use crate::contract::records::RECORDS_LIST;
use crate::contract::{IDEMPOTENCY_BUCKET, JOBS_BUCKET};
use crate::parts::memory::{FixedBacklog, FixedRoom, MemoryKv, MemoryObjects, MemoryReplies, MemoryStream};
use crate::parts::{JobBoard, JsonBucket};

/// ingest on memory parts, and handles to look at them.
pub(super) struct TestIngest {
    pub(super) app: Router,
    pub(super) stream: Arc<MemoryStream>,
    store: Arc<MemoryReplies>,
    pub(super) jobs: JobBoard,
    states: Arc<MemoryKv>,
    pub(super) objects: Arc<MemoryObjects>,
    /// How full the picture bucket says it is.
    pub(super) room: Arc<FixedRoom>,
    /// The webhook service's delivery log, as ingest reads it.
    pub(super) webhook_log: Arc<MemoryKv>,
    /// The generator's spend ledger, as ingest reads it.
    pub(super) spend_ledger: Arc<MemoryKv>,
    /// What time ingest thinks it is (quota days); the real time until a test sets it.
    pub(super) now: Arc<std::sync::Mutex<time::OffsetDateTime>>,
    _images: tempfile::TempDir,
}

pub(super) fn ingest_with(change: impl FnOnce(&mut Config), waiting: Option<u64>) -> TestIngest {
    let images = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.images_dir = images.path().to_path_buf();
    change(&mut config);
    let stream = Arc::new(MemoryStream::default());
    let store = Arc::new(MemoryReplies::default());
    let states = Arc::new(MemoryKv::new(JOBS_BUCKET));
    let jobs = JobBoard::new(JsonBucket::new(states.clone()));
    let objects = Arc::new(MemoryObjects::default());
    let room = Arc::new(FixedRoom::default());
    let webhook_log = Arc::new(MemoryKv::new(crate::contract::webhooks::WEBHOOK_DELIVERIES_BUCKET));
    let spend_ledger = Arc::new(MemoryKv::new(crate::contract::spend::SPEND_BUCKET));
    let now = Arc::new(std::sync::Mutex::new(time::OffsetDateTime::now_utc()));
    let clock_now = now.clone();
    let parts = IngestParts {
        publisher: stream.clone(),
        jobs: jobs.clone(),
        idempotency: Arc::new(MemoryKv::new(IDEMPOTENCY_BUCKET)),
        store: store.clone(),
        backlog: Arc::new(FixedBacklog(waiting)),
        bucket_room: room.clone(),
        webhook_log: webhook_log.clone(),
        webhook_states: Arc::new(MemoryKv::new(crate::contract::webhooks::WEBHOOK_ENDPOINTS_BUCKET)),
        objects: objects.clone(),
        mail_log: Arc::new(MemoryKv::new(crate::contract::MAIL_BUCKET)),
        quota_slots: Arc::new(MemoryKv::new(crate::contract::QUOTA_BUCKET)),
        spend_ledger: spend_ledger.clone(),
        suppressed: Arc::new(MemoryKv::new(crate::contract::mail::SUPPRESSED_BUCKET)),
        links: crate::links::LinkKeys::new(&[b"test link key"]),
        clock: Arc::new(move || *clock_now.lock().unwrap()),
    };
    let app = router(AppState::new(&config, parts).unwrap(), &config).unwrap();
    TestIngest { app, stream, store, jobs, states, objects, room, webhook_log, spend_ledger, now, _images: images }
}

fn ingest() -> TestIngest {
    ingest_with(|_| {}, None)
}

/// A POST of `body` to `/generate-image` that asks for an answer at once.
fn generate(body: &str) -> Request<Body> {
    Request::post("/generate-image")
        .header(header::CONTENT_TYPE, "application/json")
        .header("prefer", "respond-async")
        .body(Body::from(body.to_string()))
        .unwrap()
}

impl TestIngest {
    pub(super) async fn send(&self, request: Request<Body>) -> (u16, Value, Response<()>) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (parts.status.as_u16(), json, Response::from_parts(parts, ()))
    }

    pub(super) fn queued(&self) -> Vec<ImageRequested> {
        self.stream.events::<ImageRequested>()
    }
}

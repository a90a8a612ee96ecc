//! ingest: the HTTP API and the web page.
//!
//! One file per resource: [`generate`] (`POST /generate-image`), [`edits`] (the four edit
//! routes, edit tasks and records, preset styles), [`uploads`] (pictures edits start
//! from), [`jobs`] (state, live events, cancel), [`notifications`] (a job's mail and
//! webhook outcomes), [`models`], [`records`] (asked of the store), [`translate`],
//! [`health`], [`webhooks`] (read-only views), [`openai`] (OpenAI's Images API at `/v1`);
//! [`api_doc`] describes them all (`/openapi.json`, `/docs`). [`state`] is what routes
//! share, [`queueing`] puts a job on the queue (for every route that makes one),
//! [`access`] decides who may call, and [`error`] is the one shape of an error answer. Every route answers at its path
//! and under `/api`; the web page (`index.html`) is at `/`.

mod access;
mod api_doc;
mod backlog;
mod batches;
mod body;
mod compare;
pub mod delete;
mod edit_tasks;
mod edits;
mod error;
mod generate;
mod group_progress;
mod groups;
mod health;
mod hold;
mod idempotency;
mod job_list;
mod jobs;
mod leniency;
mod me;
mod model_stats;
mod models;
mod notifications;
mod notify_targets;
mod openai;
mod openai_edits;
mod picks;
mod picture_links;
mod private_pictures;
mod queueing;
mod quota;
mod records;
mod spend;
mod state;
#[cfg(test)]
mod tests;
mod translate;
mod unsubscribe;
mod uploads;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::services::ServeDir;

use crate::bus::Bus;
use crate::config::Config;
use crate::contract::services::Service;
use crate::contract::spend::SPEND_BUCKET;
use crate::contract::webhooks::{WEBHOOK_DELIVERIES_BUCKET, WEBHOOK_ENDPOINTS_BUCKET};
use crate::contract::{QUOTA_BUCKET, STATIC_IMAGES_PATH};
use crate::parts::nats::LaterBucket;
use error::ApiError;
pub use quota::{Clock, system_clock};
pub use state::{AppState, IngestParts};

/// How long a quota slot is kept: past the longest day (25 hours, when clocks go back).
const QUOTA_SLOT_AGE: std::time::Duration = std::time::Duration::from_secs(2 * 24 * 3600);

/// Largest request body accepted (a prompt is at most 4000 characters).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Binds `[server] host:port` and serves until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let address = format!("{}:{}", config.server.host, config.server.port);
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {address} ([server] host and port): {e}"))?;
    serve(listener, config, shutdown).await
}

/// Serves on `listener` (tests pass one bound to port 0).
pub async fn serve(listener: TcpListener, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    if !config.server.has_keys() && !address.ip().is_loopback() && !config.server.allow_open {
        anyhow::bail!(
            "refusing to listen on {address} without [server] api_keys: anyone who reaches it could queue \
             jobs (paid ones too) and read every picture. Set [server] api_keys (SERVER_API_KEYS), listen on \
             127.0.0.1, or set [server] allow_open = true (SERVER_ALLOW_OPEN) to serve it open on purpose"
        );
    }
    let bus = Bus::connect(&config.nats, Service::Ingest.program(), &shutdown).await?;
    let parts = IngestParts {
        publisher: bus.publisher(),
        jobs: bus.job_board(),
        idempotency: Arc::new(bus.idempotency.clone()),
        store: Arc::new(bus.client.clone()),
        backlog: Arc::new(crate::parts::nats::JobQueue { client: bus.client.clone(), stream: bus.stream.clone() }),
        bucket_room: Arc::new(bus.images_stream.clone()),
        webhook_log: Arc::new(LaterBucket::new(bus.jetstream.clone(), WEBHOOK_DELIVERIES_BUCKET)),
        webhook_states: Arc::new(LaterBucket::new(bus.jetstream.clone(), WEBHOOK_ENDPOINTS_BUCKET)),
        objects: Arc::new(bus.images.clone()),
        mail_log: Arc::new(bus.mail.clone()),
        quota_slots: Arc::new(
            crate::bus::key_value(&bus.jetstream, QUOTA_BUCKET, "huiying quota slots", QUOTA_SLOT_AGE, bus.replicas)
                .await?,
        ),
        // The generator's spend ledger, read only (empty until it first ran).
        spend_ledger: Arc::new(LaterBucket::new(bus.jetstream.clone(), SPEND_BUCKET)),
        suppressed: Arc::new(bus.suppressed_bucket(&shutdown).await?),
        links: bus.link_keys(&config.server.link_keys, &shutdown).await?,
        clock: system_clock(),
    };
    let app = router(AppState::new(&config, parts)?, &config)?;
    if !config.server.has_keys() && !address.ip().is_loopback() {
        tracing::warn!(%address, "listening beyond this machine without [server] api_keys ([server] allow_open)");
    }
    tracing::info!(%address, public_url = %config.server.public_base_url(), "ingest ready");
    // Client addresses for rate limits without API keys.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}

/// Every route, each registered once and answered at its path and under `/api`.
pub fn router(state: AppState, config: &Config) -> anyhow::Result<Router> {
    std::fs::create_dir_all(&config.server.images_dir)?;
    let api = Router::new()
        .route("/generate-image", post(generate::generate_image))
        .route("/jobs", get(job_list::list_jobs))
        .route("/jobs/{id}", get(jobs::job_status).delete(delete::delete_job))
        .route("/groups/{id}", get(groups::group_status))
        .route("/groups/{id}/pick", post(picks::pick))
        .route("/compare", post(compare::compare))
        .route("/batches", post(batches::create))
        .route("/batches/{id}", get(groups::group_status))
        .route("/batches/{id}/cancel", post(batches::cancel))
        .route("/batches/{id}/events", get(group_progress::progress))
        .route("/groups/{id}/events", get(group_progress::progress))
        .route("/jobs/{id}/events", get(jobs::job_events))
        .route("/jobs/{id}/cancel", post(jobs::cancel_job))
        .route("/jobs/{id}/notifications", get(notifications::job_notifications))
        .route("/events", get(jobs::all_events))
        .route("/records", get(records::list_records))
        .route("/records/{id}", get(records::get_record).delete(delete::delete_record))
        .route("/images", get(records::list_images))
        .route("/translate", post(translate::translate))
        .route("/health", get(health::health))
        .route("/webhooks", get(webhooks::endpoints))
        .route("/webhooks/deliveries", get(webhooks::deliveries))
        .route("/edit-image", post(edits::edit_image))
        .route("/compose-images", post(edits::compose_images))
        .route("/style-transfer", post(edits::style_transfer))
        .route("/fusion-images", post(edits::fusion_images))
        .route("/edit-tasks/{id}", get(edit_tasks::edit_task))
        .route("/edit-records", get(edit_tasks::edit_records))
        .route("/preset-styles", get(edits::preset_styles))
        .route("/models", get(models::models))
        .route("/models/stats", get(model_stats::model_stats))
        .route("/me", get(me::me))
        .route("/usage", get(spend::usage))
        .route(
            "/upload-image",
            post(uploads::upload_image).layer(axum::extract::DefaultBodyLimit::max(uploads::MAX_UPLOAD_BODY)),
        )
        .route("/uploads/{id}", get(uploads::get_upload))
        .route("/inputs/{job}/{n}", get(uploads::get_input))
        .route("/r2/images/{*file}", get(private_pictures::redirect))
        .route("/metrics", get(metrics));
    Ok(Router::new()
        .route("/", get(index))
        .route("/openapi.json", get(api_doc::openapi_json))
        .route("/v1/images/generations", post(openai::generations))
        .route(
            "/v1/images/edits",
            post(openai_edits::edits).layer(axum::extract::DefaultBodyLimit::max(openai_edits::MAX_FORM_BYTES)),
        )
        .route("/v1/models", get(openai::models))
        // One-click unsubscribe, from a mail: no key, the token is the proof.
        .route("/unsubscribe/{token}", get(unsubscribe::page).post(unsubscribe::unsubscribe))
        .merge(api.clone())
        .nest("/api", api)
        .nest_service(STATIC_IMAGES_PATH, ServeDir::new(&config.server.images_dir))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this endpoint does not take that method")
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(config.server.strict_options, leniency::read_bodies))
        .layer(axum::middleware::from_fn_with_state(signed_answers(&state, config), picture_links::sign))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(
                access::Access::new(&config.server).opening_signed_pictures(state.links.clone(), state.clock.clone()),
            ),
            access::check,
        ))
        // Outside the key check: browsers send preflight requests without keys.
        .layer(tower::util::option_layer(access::cors(&config.server)))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
        // Swagger UI's own files: public, like the page.
        .merge(api_doc::docs_routes()))
}

/// What signs the picture links of answers when pictures are private.
fn signed_answers(state: &AppState, config: &Config) -> Option<Arc<(crate::links::PictureLinks, crate::clock::Clock)>> {
    let links = crate::links::PictureLinks {
        base_url: config.server.public_base_url(),
        keys: state.links.clone(),
        days: config.server.link_days,
    };
    (!config.server.public_pictures).then(|| Arc::new((links, state.clock.clone())))
}

/// `GET /metrics`: Prometheus' text format, with the generator's backlog read now.
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> String {
    if let Some(waiting) = state.queue.waiting().await {
        metrics::gauge!("huiying_queue_waiting", "consumer" => crate::contract::consumers::GENERATOR)
            .set(waiting as f64);
    }
    crate::telemetry::render()
}

/// The web page, built into the binary.
async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

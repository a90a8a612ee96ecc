//! ingest: the HTTP API and the web page.
//!
//! `POST /generate-image` checks the request, records the job as queued, publishes
//! `image.requested` (answering only after JetStream stored it) and, unless the client
//! prefers an asynchronous answer, waits for the job to finish.

mod access;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::services::ServeDir;

use crate::bus::Bus;
use crate::config::{Config, SmtpConfig};
use crate::events::{self, EVENT_VERSION, GenerationOptions, ImageRequested, Stage};
use crate::generator::Translator;
use crate::idempotency::{self, Claim, Claimed, IdempotencyKeys};
use crate::jobs::{JobBoard, JobState, JobStatus};
use crate::store::STATIC_IMAGES_PATH;
use crate::store::api::{self as store_api, Answer, ImageList, RecordView, RecordViewPage};
use crate::store::records::RecordQuery;

/// Largest request body accepted (a prompt is at most 4000 characters).
const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    bus: Bus,
    jobs: JobBoard,
    public_base_url: String,
    wait_timeout: Duration,
    smtp: Arc<SmtpConfig>,
    translator: Option<Translator>,
    idempotency: IdempotencyKeys,
    backlog: Arc<Backlog>,
}

/// The body of `POST /generate-image`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateRequest {
    prompt: String,
    #[serde(default)]
    model: Option<String>,
    /// Mail the outcome to this address instead of `[smtp] to` (must be allowed).
    #[serde(default)]
    notify_email: Option<String>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    negative_prompt: Option<String>,
    #[serde(default)]
    seed: Option<u64>,
}

impl GenerateRequest {
    fn options(&self) -> GenerationOptions {
        GenerationOptions {
            size: self.size.clone(),
            n: self.n,
            negative_prompt: self.negative_prompt.clone(),
            seed: self.seed,
        }
    }
}

/// The body of `POST /translate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TranslateRequest {
    text: String,
}

/// An error answer: `{"error": "..."}` with a status.
pub struct ApiError {
    status: StatusCode,
    message: String,
    job_id: Option<String>,
    /// Seconds for a `Retry-After` header (429 and 503 answers).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), job_id: None, retry_after: None }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// The job queue is unreachable: the job was not accepted.
    fn queue_unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "the job queue (NATS) is unavailable; try again shortly")
    }
    fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.job_id {
            Some(id) => json!({ "error": self.message, "id": id }),
            None => json!({ "error": self.message }),
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

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
    let bus = Bus::connect(&config.nats, "huiying-ingest", &shutdown).await?;
    let state = AppState {
        jobs: JobBoard::new(bus.jobs.clone()),
        idempotency: IdempotencyKeys::new(bus.idempotency.clone()),
        backlog: Arc::new(Backlog::new(bus.clone(), config.server.max_queued_jobs)),
        bus,
        public_base_url: config.server.public_base_url(),
        wait_timeout: config.server.wait_timeout(),
        smtp: Arc::new(config.smtp.clone()),
        translator: Translator::from_config(&config)?,
    };
    std::fs::create_dir_all(&config.server.images_dir)?;
    let app = router(state, &config);
    let address = listener.local_addr()?;
    if config.server.api_keys.is_empty() && !address.ip().is_loopback() {
        tracing::warn!(%address, "listening beyond this machine without [server] api_keys: anyone who reaches it may use it");
    }
    tracing::info!(%address, public_url = %config.server.public_base_url(), "ingest ready");
    // Client addresses for rate limits without API keys.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await?;
    Ok(())
}

pub fn router(state: AppState, config: &Config) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/generate-image", post(generate_image))
        .route("/api/generate-image", post(generate_image))
        .route("/jobs/{id}", get(job_status))
        .route("/api/jobs/{id}", get(job_status))
        .route("/records", get(list_records))
        .route("/api/records", get(list_records))
        .route("/records/{id}", get(get_record))
        .route("/api/records/{id}", get(get_record))
        .route("/images", get(list_images))
        .route("/api/images", get(list_images))
        .route("/translate", post(translate))
        .route("/api/translate", post(translate))
        .route("/health", get(health))
        .route("/api/health", get(health))
        .nest_service(STATIC_IMAGES_PATH, ServeDir::new(&config.server.images_dir))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this endpoint does not take that method")
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(Arc::new(access::Access::new(&config.server)), access::check))
        // Outside the key check: browsers send preflight requests without keys.
        .layer(tower::util::option_layer(access::cors(&config.server)))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn index() -> Html<&'static str> {
    Html(include_str!("ingest/index.html"))
}

async fn generate_image(
    State(state): State<AppState>,
    api_key: Option<axum::Extension<access::KeyNumber>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(&headers, body)?;
    let request = parse_request(&body)?;
    if let Some(address) = &request.notify_email {
        check_recipient(address, &state.smtp)?;
    }
    // Each API key has its own Idempotency-Keys: two clients that pick the same one never
    // get each other's job.
    let idempotency_key = idempotency_key(&headers)?.map(|key| match api_key {
        Some(axum::Extension(number)) => format!("api-key-{}:{key}", number.0),
        None => key,
    });
    // While NATS is away the client would buffer the publish and send it on reconnect,
    // after we answered 503: a job the client was told is not queued. Refuse up front.
    if !state.bus.is_connected() {
        return Err(ApiError::queue_unavailable());
    }
    if let Some(waiting) = state.backlog.is_full().await {
        let message =
            format!("the queue is full ({waiting} jobs waiting, [server] max_queued_jobs); try again shortly");
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).retry_after(5));
    }
    let event = ImageRequested {
        version: EVENT_VERSION,
        id: uuid::Uuid::new_v4().to_string(),
        options: request.options(),
        model: request.model.filter(|m| !m.trim().is_empty()),
        prompt: request.prompt,
        notify_email: request.notify_email,
        requested_at: OffsetDateTime::now_utc(),
    };
    let unavailable = |e: crate::bus::BusError| {
        tracing::warn!(error = %e, "cannot queue a job");
        ApiError::queue_unavailable()
    };
    if let Some(key) = &idempotency_key {
        let meaning = (&event.prompt, &event.model, &event.notify_email, &event.options);
        let claimed = Claimed { job_id: event.id.clone(), fingerprint: idempotency::fingerprint(&meaning) };
        match state.idempotency.claim(key, &claimed).await.map_err(unavailable)? {
            Claim::New => {}
            Claim::Existing(existing) if existing.fingerprint != claimed.fingerprint => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "this Idempotency-Key was used for a different request; use a new key for a new request",
                ));
            }
            // The same request again: its job, not a second one.
            Claim::Existing(existing) => return answer_for_job(&state, &headers, existing.job_id).await,
        }
    }

    let queued = JobStatus::new(&event.id, JobState::Queued, &event.prompt, event.model.as_deref());
    let queue = async {
        state.jobs.set(&queued).await?;
        state.bus.publish(&event).await
    };
    if let Err(e) = queue.await {
        if let Some(key) = &idempotency_key {
            state.idempotency.release(key).await;
        }
        return Err(unavailable(e));
    }
    state.backlog.queued();
    tracing::info!(job = %event.id, "queued");
    answer_for_job(&state, &headers, event.id).await
}

/// The answer for a queued job: 202 at once when the client prefers it, else the result
/// once the job ends (or 202 when `[server] timeout` passes first).
async fn answer_for_job(state: &AppState, headers: &HeaderMap, id: String) -> Result<Response, ApiError> {
    let accepted = || {
        let body = json!({
            "id": id,
            "status": "queued",
            "status_url": format!("{}/jobs/{id}", state.public_base_url),
        });
        (StatusCode::ACCEPTED, Json(body)).into_response()
    };
    if prefers_async(headers) {
        return Ok(accepted());
    }
    let finished = match state.jobs.wait_until_final(&id, state.wait_timeout).await {
        Ok(finished) => finished,
        Err(error) => {
            // The job is queued and will run: say so (a 503 would invite a second job).
            tracing::warn!(%error, job = %id, "cannot follow a job; answering with its status URL");
            return Ok(accepted());
        }
    };
    match finished {
        Some(JobStatus { result: Some(done), .. }) => {
            let body = json!({
                "id": id,
                "created": done.completed_at.unix_timestamp(),
                "data": [{ "url": done.url }],
            });
            Ok(Json(body).into_response())
        }
        Some(JobStatus { error: Some(failed), .. }) => {
            let status = match failed.stage {
                Stage::Request => StatusCode::BAD_REQUEST,
                Stage::Generate => StatusCode::BAD_GATEWAY,
                Stage::Store => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Err(ApiError { job_id: Some(id), ..ApiError::new(status, failed.error) })
        }
        // Still running when the wait ended: the client polls status_url.
        _ => Ok(accepted()),
    }
}

/// How many jobs wait for or are in generation: the generator consumer's pending and
/// unacknowledged messages, read at most once a second and counted up locally between.
struct Backlog {
    bus: Bus,
    max: u64,
    last: tokio::sync::Mutex<Option<(tokio::time::Instant, u64)>>,
}

impl Backlog {
    fn new(bus: Bus, max: u64) -> Self {
        Self { bus, max, last: tokio::sync::Mutex::new(None) }
    }

    /// `Some(waiting)` when the queue holds `[server] max_queued_jobs` or more.
    async fn is_full(&self) -> Option<u64> {
        if self.max == 0 {
            return None;
        }
        let mut last = self.last.lock().await;
        let fresh = last.is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(1));
        if !fresh {
            // Before the generator first ran there is no consumer: nothing to count yet.
            let info = self.bus.stream.consumer_info(crate::generator::CONSUMER);
            let waiting = match tokio::time::timeout(Duration::from_secs(1), info).await {
                Ok(Ok(info)) => info.num_pending + info.num_ack_pending as u64,
                // Unknown: the publish that follows decides (503 when NATS is away).
                _ => 0,
            };
            *last = Some((tokio::time::Instant::now(), waiting));
        }
        let waiting = last.map_or(0, |(_, waiting)| waiting);
        (waiting >= self.max).then_some(waiting)
    }

    /// Counts a job queued since the last reading.
    fn queued(&self) {
        if let Ok(mut last) = self.last.try_lock()
            && let Some((_, waiting)) = last.as_mut()
        {
            *waiting += 1;
        }
    }
}

/// `Idempotency-Key`: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().unwrap_or("").trim();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters"));
    }
    Ok(Some(key.to_string()))
}

/// The body of a JSON request: 415 for another content type (none counts as JSON), and
/// `{"error"}` answers for bodies that are too large or broken off.
fn json_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence != "application/json" && !essence.ends_with("+json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send the body as application/json, not {essence}"),
        ));
    }
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {MAX_BODY_BYTES} bytes"))
        }
        status => ApiError::new(status, rejection.body_text()),
    })
}

/// Parses the body, naming the field and the problem when it is wrong.
fn parse_request(body: &[u8]) -> Result<GenerateRequest, ApiError> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    // serde would also read a struct from an array: only an object is a request.
    if !json.is_object() {
        return Err(ApiError::bad_request(
            "invalid request: the body must be a JSON object like {\"prompt\": \"...\"}",
        ));
    }
    let request: GenerateRequest = serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::bad_request(format!("invalid request: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid field {path}: {inner}"))
        }
    })?;
    events::check_prompt(&request.prompt).map_err(ApiError::bad_request)?;
    request.options().check().map_err(ApiError::bad_request)?;
    if let Some(model) = request.model.as_deref().filter(|m| !m.trim().is_empty()) {
        events::check_model(model).map_err(ApiError::bad_request)?;
    }
    Ok(request)
}

/// `POST /translate {"text"}` → `{"translated_text", "success"}`, as the original service
/// answered. Without a translator, or when it fails, the text comes back unchanged with
/// `success: false` and the reason in `error`.
async fn translate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = json_body(&headers, body)?;
    let request: TranslateRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"text\": \"...\"}}: {e}")))?;
    if request.text.trim().is_empty() {
        return Err(ApiError::bad_request("text must not be empty"));
    }
    if request.text.chars().count() > events::MAX_PROMPT_CHARS {
        return Err(ApiError::bad_request(format!("text is longer than {} characters", events::MAX_PROMPT_CHARS)));
    }
    let Some(translator) = &state.translator else {
        let body = json!({
            "translated_text": request.text,
            "success": false,
            "error": "translation is not configured: set MODEL_SCOPE_TOKEN ([api_keys] model_scope_token)",
        });
        return Ok(Json(body).into_response());
    };
    let body = match translator.translate(&request.text).await {
        Ok(translated) => json!({"translated_text": translated, "success": true}),
        Err(error) => json!({"translated_text": request.text, "success": false, "error": error}),
    };
    Ok(Json(body).into_response())
}

/// A request may choose its recipient only among `[smtp] allowed_recipients`.
fn check_recipient(address: &str, smtp: &SmtpConfig) -> Result<(), ApiError> {
    if address.parse::<lettre::Address>().is_err() {
        return Err(ApiError::bad_request(format!("notify_email {address:?} is not an email address")));
    }
    if !smtp.allows_recipient(address) {
        return Err(ApiError::bad_request(format!(
            "notify_email {address:?} is not among this server's allowed recipients ([smtp] allowed_recipients)"
        )));
    }
    Ok(())
}

/// `Prefer: respond-async` (RFC 7240) asks for 202 at once.
fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

async fn job_status(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    match state.jobs.get(&id).await {
        Ok(Some(status)) => Ok(Json(status).into_response()),
        Ok(None) => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no job with id {id:?}"))),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read job state");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "job states (NATS) are unavailable; try again shortly"))
        }
    }
}

async fn health(State(state): State<AppState>) -> Response {
    let connected = state.bus.is_connected();
    let body = json!({
        "status": if connected { "ok" } else { "degraded" },
        "timestamp": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        "version": env!("CARGO_PKG_VERSION"),
        "nats": if connected { "connected" } else { "disconnected" },
    });
    let status = if connected { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

/// Asks the store over NATS; its answer, or an error a client can act on.
async fn ask_store<T: serde::de::DeserializeOwned>(
    state: &AppState,
    subject: &'static str,
    payload: Vec<u8>,
) -> Result<T, ApiError> {
    let request = state.bus.client.request(subject, payload.into());
    let message = match tokio::time::timeout(Duration::from_secs(10), request).await {
        Ok(Ok(message)) => message,
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the store is not running; try again shortly"));
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, subject, "store request failed");
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the store did not answer; try again shortly"));
        }
        Err(_) => return Err(ApiError::new(StatusCode::GATEWAY_TIMEOUT, "the store did not answer in time")),
    };
    match serde_json::from_slice::<Answer<T>>(&message.payload) {
        Ok(Answer::Ok(value)) => Ok(value),
        Ok(Answer::Error { status, message }) => {
            Err(ApiError::new(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), message))
        }
        Err(e) => Err(ApiError::new(StatusCode::BAD_GATEWAY, format!("the store's answer was unreadable: {e}"))),
    }
}

/// `GET /records?page&limit&keyword&model&date_from&date_to` (dates are UTC days, inclusive).
async fn list_records(
    State(state): State<AppState>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let query = record_query(&params)?;
    let page: RecordViewPage = ask_store(&state, store_api::RECORDS_LIST, serde_json::to_vec(&query).unwrap()).await?;
    Ok(Json(page).into_response())
}

/// Checks the parameters of `GET /records`, naming the one that is wrong.
fn record_query(params: &std::collections::HashMap<String, String>) -> Result<RecordQuery, ApiError> {
    const KNOWN: [&str; 6] = ["page", "limit", "keyword", "model", "date_from", "date_to"];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!("unknown parameter {unknown:?}; known: {}", KNOWN.join(", "))));
    }
    let number = |name: &str, default: u32, max: u32| -> Result<u32, ApiError> {
        match params.get(name) {
            None => Ok(default),
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::bad_request(format!("{name} must be a whole number from 1 to {max}, got {text:?}"))),
            },
        }
    };
    let date = |name: &str| -> Result<Option<time::Date>, ApiError> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        params
            .get(name)
            .map(|text| {
                time::Date::parse(text, format).map_err(|_| {
                    ApiError::bad_request(format!(
                        "{name} must be a date like 2026-11-29 (YYYY-MM-DD, UTC), got {text:?}"
                    ))
                })
            })
            .transpose()
    };
    let text = |name: &str| params.get(name).map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let query = RecordQuery {
        page: number("page", 1, u32::MAX)?,
        limit: number("limit", 20, 100)?,
        keyword: text("keyword"),
        model: text("model"),
        date_from: date("date_from")?,
        date_to: date("date_to")?,
    };
    if query.keyword.as_ref().is_some_and(|k| k.chars().count() > 200) {
        return Err(ApiError::bad_request("keyword is longer than 200 characters"));
    }
    if let (Some(from), Some(to)) = (query.date_from, query.date_to)
        && from > to
    {
        return Err(ApiError::bad_request(format!("date_from ({from}) is after date_to ({to})")));
    }
    Ok(query)
}

async fn get_record(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if !crate::jobs::is_valid_job_id(&id) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no record with id {id:?}")));
    }
    let record: RecordView = ask_store(&state, store_api::RECORDS_GET, id.into_bytes()).await?;
    Ok(Json(record).into_response())
}

async fn list_images(State(state): State<AppState>) -> Result<Response, ApiError> {
    let images: ImageList = ask_store(&state, store_api::IMAGES_LIST, Vec::new()).await?;
    Ok(Json(images).into_response())
}

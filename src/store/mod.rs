//! The store: `image.generated` → processed file on disk + SQLite record →
//! `image.completed` (or `image.failed` when the picture is unusable).

pub mod api;
pub mod files;
pub mod processing;
pub mod records;
pub mod remote;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, ConsumerSpec};
use crate::config::{Config, ImageProcessingConfig};
use crate::events::{self, EVENT_VERSION, ImageCompleted, ImageFailed, ImageGenerated, Stage};
use crate::jobs::{JobBoard, JobState, JobStatus};
use crate::worker::{self, Outcome, Received};
use records::{Record, Records};

/// Path under ingest's address where stored pictures are served.
pub const STATIC_IMAGES_PATH: &str = "/static/images";

/// The absolute link through ingest to a stored file.
pub fn local_url(public_base_url: &str, filename: &str) -> String {
    format!("{public_base_url}{STATIC_IMAGES_PATH}/{filename}")
}

/// Everything one store instance needs to handle a generated picture.
#[derive(Clone)]
pub struct Store {
    bus: Bus,
    jobs: JobBoard,
    records: Records,
    images_dir: PathBuf,
    public_base_url: String,
    processing: Arc<ImageProcessingConfig>,
    remote: Option<Arc<remote::RemoteStore>>,
}

pub fn consumer_spec(ack_wait: Duration) -> ConsumerSpec {
    ConsumerSpec {
        durable: "store",
        description: "huiying store: processes, writes and records pictures",
        subjects: &[events::IMAGE_GENERATED],
        ack_wait,
        // The handler decides what is final; infrastructure hiccups retry until healthy.
        max_deliver: -1,
        max_ack_pending: 64,
    }
}

/// Runs the store until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let records = Records::open(&config.database.path)
        .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", config.database.path.display()))?;
    std::fs::create_dir_all(&config.server.images_dir)
        .map_err(|e| anyhow::anyhow!("cannot create images_dir {}: {e}", config.server.images_dir.display()))?;
    let partial = files::remove_partial_files(&config.server.images_dir);
    if partial > 0 {
        tracing::warn!(partial, "removed pictures left half-written by a crash; their jobs are stored again");
    }
    let remote = remote::RemoteStore::from_config(&config.cloudflare_r2)?.map(Arc::new);
    let bus = Bus::connect(&config.nats, "huiying-store", &shutdown).await?;
    let spec = consumer_spec(config.nats.ack_wait());
    let consumer = bus.durable_consumer(&spec).await?;
    tracing::info!(images_dir = %config.server.images_dir.display(), database = %config.database.path.display(), "store ready");
    let api = api::StoreApi {
        records: records.clone(),
        images_dir: config.server.images_dir.clone(),
        public_base_url: config.server.public_base_url(),
    };
    let answering = tokio::spawn(api.serve(bus.client.clone(), shutdown.clone()));
    let store = Store {
        jobs: JobBoard::new(bus.jobs.clone()),
        bus: bus.clone(),
        records,
        images_dir: config.server.images_dir.clone(),
        public_base_url: config.server.public_base_url(),
        processing: Arc::new(config.image_processing.clone()),
        remote,
    };
    // Processing is CPU-bound: no more at once than there are cores.
    let concurrency = std::thread::available_parallelism().map_or(2, |n| n.get());
    worker::run(bus, consumer, concurrency, worker::Patience::from_config(&config.nats), shutdown, move |received| {
        let store = store.clone();
        async move { store.handle(received).await }
    })
    .await?;
    answering.await?
}

impl Store {
    /// Handles one delivery of `image.generated`.
    pub async fn handle(&self, received: Received) -> Outcome {
        let generated: ImageGenerated = match serde_json::from_slice(&received.payload) {
            Ok(event) => event,
            Err(e) => return Outcome::Reject(format!("not an image.generated event: {e}")),
        };
        if generated.version > EVENT_VERSION {
            return Outcome::Reject(format!("event version {} is newer than this store", generated.version));
        }
        match self.store(&generated).await {
            Ok(completed) => self.announce(&completed).await,
            Err(StoreFailure::Unusable(reason)) => self.fail(&generated, reason, received.attempt).await,
            Err(StoreFailure::Retry(problem)) => {
                tracing::warn!(job = %generated.id, %problem, "storing failed; will retry");
                Outcome::Retry(worker::backoff(Duration::from_secs(1), received.attempt, Duration::from_secs(300)))
            }
        }
    }

    /// Writes the file and the record (once per job) and returns the completion event.
    async fn store(&self, generated: &ImageGenerated) -> Result<ImageCompleted, StoreFailure> {
        let records = self.records.clone();
        let job_id = generated.id.clone();
        let existing = blocking(move || records.by_job(&job_id)).await?;
        if let Some(record) = existing {
            // A redelivery after the record was written: announce it again, write nothing.
            return Ok(self.completed_event(generated, &record));
        }
        self.jobs
            .set(&JobStatus::new(&generated.id, JobState::Storing, &generated.prompt, Some(&generated.model)))
            .await
            .map_err(|e| StoreFailure::Retry(e.to_string()))?;

        let input = self.fetch_picture(generated).await?;
        let settings = self.processing.clone();
        let processed = tokio::task::spawn_blocking(move || processing::process(&input, &settings))
            .await
            .map_err(|e| StoreFailure::Retry(format!("processing crashed: {e}")))?
            .map_err(|e| StoreFailure::Unusable(e.to_string()))?;

        let name = files::file_name(
            &generated.id,
            generated.generated_at,
            &generated.english_prompt,
            processed.format.extension(),
        );
        let dir = self.images_dir.clone();
        let bytes = Arc::new(processed.bytes);
        let file_size = bytes.len() as u64;
        let (to_write, file_name) = (bytes.clone(), name.clone());
        let path = blocking(move || files::write_atomically(&dir, &file_name, &to_write)).await?;
        worker::crash_point("store.after_file");
        // The remote copy is a bonus: when it fails, the job completes with the local file.
        let (r2_url, r2_error) = match &self.remote {
            None => (None, None),
            Some(remote) => match remote.upload(&name, bytes.to_vec(), processed.format.content_type()).await {
                Ok(url) => (Some(url), None),
                Err(error) => {
                    tracing::warn!(job = %generated.id, %error, "kept locally only");
                    (None, Some(error))
                }
            },
        };

        let now = records::timestamp(OffsetDateTime::now_utc());
        let record = Record {
            id: 0,
            job_id: generated.id.clone(),
            original_prompt: generated.prompt.clone(),
            english_prompt: generated.english_prompt.clone(),
            model: generated.model.clone(),
            local_path: path.display().to_string(),
            r2_url,
            r2_error,
            file_size,
            width: processed.width,
            height: processed.height,
            format: processed.format.name().into(),
            created_at: now.clone(),
            updated_at: now,
        };
        let records = self.records.clone();
        let to_insert = record.clone();
        blocking(move || records.insert(&to_insert)).await?;
        worker::crash_point("store.after_record");
        Ok(self.completed_event(generated, &record))
    }

    async fn fetch_picture(&self, generated: &ImageGenerated) -> Result<Vec<u8>, StoreFailure> {
        let mut object = match self.bus.images.get(&generated.object).await {
            Ok(object) => object,
            Err(e) if e.kind() == async_nats::jetstream::object_store::GetErrorKind::NotFound => {
                return Err(StoreFailure::Unusable(format!(
                    "the generated picture is no longer in the object store ({})",
                    generated.object
                )));
            }
            Err(e) => return Err(StoreFailure::Retry(format!("reading the picture: {e}"))),
        };
        let mut bytes = Vec::with_capacity(generated.byte_size as usize);
        object.read_to_end(&mut bytes).await.map_err(|e| StoreFailure::Retry(format!("reading the picture: {e}")))?;
        Ok(bytes)
    }

    fn completed_event(&self, generated: &ImageGenerated, record: &Record) -> ImageCompleted {
        let filename = record.filename();
        let local_url = local_url(&self.public_base_url, &filename);
        let completed_at = OffsetDateTime::now_utc();
        ImageCompleted {
            version: EVENT_VERSION,
            id: generated.id.clone(),
            prompt: record.original_prompt.clone(),
            english_prompt: record.english_prompt.clone(),
            model: record.model.clone(),
            url: record.r2_url.clone().unwrap_or_else(|| local_url.clone()),
            local_url,
            r2_url: record.r2_url.clone(),
            filename,
            width: record.width,
            height: record.height,
            format: record.format.clone(),
            file_size: record.file_size,
            requested_at: generated.requested_at,
            completed_at,
            duration_ms: (completed_at - generated.requested_at).whole_milliseconds().max(0) as u64,
            notify_email: generated.notify_email.clone(),
        }
    }

    /// Publishes the completion and marks the job.
    async fn announce(&self, completed: &ImageCompleted) -> Outcome {
        if let Err(e) = self.bus.publish(completed).await {
            tracing::warn!(job = %completed.id, error = %e, "will retry");
            return Outcome::Retry(Duration::from_secs(1));
        }
        if let Err(e) = self.jobs.set(&JobStatus::completed(completed)).await {
            tracing::warn!(job = %completed.id, error = %e, "will retry");
            return Outcome::Retry(Duration::from_secs(1));
        }
        // The object store copy is left for the bucket's max age (24 h) to remove: deleting
        // each picture (a purge per object) slowed nats-server's file store down to a few
        // pictures a second after about a thousand jobs (see docs/operations.md).
        tracing::info!(job = %completed.id, url = %completed.url, "stored");
        Outcome::Done
    }

    async fn fail(&self, generated: &ImageGenerated, reason: String, attempts: u32) -> Outcome {
        tracing::warn!(job = %generated.id, %reason, "picture unusable");
        let failed = ImageFailed {
            version: EVENT_VERSION,
            id: generated.id.clone(),
            prompt: generated.prompt.clone(),
            model: generated.model.clone(),
            stage: Stage::Store,
            error: reason,
            transient: false,
            attempts,
            failed_at: OffsetDateTime::now_utc(),
            notify_email: generated.notify_email.clone(),
        };
        if self.bus.publish(&failed).await.is_err() || self.jobs.set(&JobStatus::failed(&failed)).await.is_err() {
            return Outcome::Retry(Duration::from_secs(1));
        }
        Outcome::Done
    }
}

/// Why a picture was not stored: worth another try, or never going to work.
enum StoreFailure {
    Retry(String),
    Unusable(String),
}

/// Runs blocking work (SQLite, file writes) off the async threads.
async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, StoreFailure>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreFailure::Retry(format!("blocking task crashed: {e}")))?
        .map_err(|e| StoreFailure::Retry(e.to_string()))
}

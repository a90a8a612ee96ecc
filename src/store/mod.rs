//! The store: `image.generated` → processed file on disk + SQLite record →
//! `image.completed` (or `image.failed` when the picture is unusable).

mod api;
mod files;
pub mod import;
mod jpeg;
pub mod processing;
pub mod records;

pub(crate) use remote::RemoteStore;
mod remote;
mod removal;
mod retention;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, ConsumerSpec};
use crate::config::{Config, ImageProcessingConfig, LabelsConfig};
use crate::contract::events::{
    self, Cancellation, EVENT_VERSION, ImageCompleted, ImageFailed, ImageGenerated, PictureAt, Stage as JobStage,
};
use crate::contract::jobs::{JobState, JobStatus};
use crate::contract::records::{Record, thumbnail_name};
use crate::contract::services::Service;
use crate::contract::{consumers, local_url};
use crate::failure::{Failure, RetryPolicy};
use crate::labels::{ImplicitLabel, Labelling, VisibleLabel};
use crate::parts::JobBoard;
use crate::parts::{Objects, Publish};
use crate::worker::{self, Received, Stage};
use records::Records;

/// NATS, database and disk hiccups pass: retry soon, then every 15 s at most. A cluster
/// elects a new leader in seconds; pictures should not wait minutes behind a long backoff
/// after it (a retry costs a lookup or two).
const POLICY: RetryPolicy =
    RetryPolicy { base: Duration::from_secs(1), cap: Duration::from_secs(15), jitter: 0.2, max_attempts: u32::MAX };

/// How long storing may take before the job shows `storing`. A picture kept on local disk
/// is stored in a few milliseconds, too quick for any reader to see the state, and the
/// write costs JetStream an fsync; an upload to S3 or R2, a slow disk or a failed attempt
/// (a full disk) shows it.
const STORING_SHOWN_AFTER: Duration = Duration::from_millis(100);

/// The store stage: one instance's parts and settings.
#[derive(Clone)]
pub struct Store {
    publisher: Arc<dyn Publish>,
    jobs: JobBoard,
    objects: Arc<dyn Objects>,
    records: Records,
    images_dir: PathBuf,
    public_base_url: String,
    processing: Arc<ImageProcessingConfig>,
    labels: Arc<LabelsConfig>,
    /// `ContentPropagator` of the implicit label.
    propagator: String,
    remote: Option<Arc<remote::RemoteStore>>,
    /// One permit per core: picture processing is CPU-bound, the rest of a job waits on
    /// NATS, the disk and the database, so more jobs are in flight than pictures in work.
    cores: Arc<tokio::sync::Semaphore>,
    /// [`STORING_SHOWN_AFTER`]; the tests set it.
    storing_shown_after: Duration,
}

fn consumer_spec(config: &Config) -> ConsumerSpec {
    ConsumerSpec {
        durable: consumers::STORE,
        description: "huiying store: processes, writes and records pictures",
        subjects: &[events::IMAGE_GENERATED],
        ack_wait: config.nats.ack_wait,
        // The stage decides what is final; infrastructure hiccups retry until healthy.
        max_deliver: -1,
        max_ack_pending: 64,
    }
}

/// Runs the store until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let records = Records::open(&config.database).await.map_err(|e| {
        anyhow::anyhow!("cannot open the records database ({}): {e}", Records::describe_config(&config.database))
    })?;
    let partial = files::remove_partial_files(&config.server.images_dir);
    if partial > 0 {
        tracing::warn!(partial, "removed pictures left half-written by a crash; their jobs are stored again");
    }
    let bus = Bus::connect(&config.nats, Service::Store.program(), &shutdown).await?;
    let consumer = bus.durable_consumer(&consumer_spec(&config)).await?;
    let store = Store::new(&config, records.clone(), bus.publisher(), bus.job_board(), Arc::new(bus.images.clone()))?;
    tracing::info!(images_dir = %config.server.images_dir.display(), database = %Records::describe_config(&config.database), "store ready");
    if config.labels.implicit && config.labels.producer.trim().is_empty() {
        tracing::warn!(
            "[labels] producer is not set: pictures name \"huiying\" as their producer; \
             set it to your organisation's name or filing number (GB 45438-2025)"
        );
    }
    let api = api::StoreApi {
        records,
        images_dir: config.server.images_dir.clone(),
        public_base_url: config.server.public_base_url(),
        queries: Arc::new(tokio::sync::Semaphore::new(api::CONCURRENT_QUERIES)),
        removal: store.removal(),
    };
    let answering = tokio::spawn(api.serve(bus.client.clone(), shutdown.clone()));
    if let Some(retention) = retention::Retention::new(&config.retention, store.removal()) {
        tokio::spawn(retention.run(shutdown.clone()));
    }
    // Jobs in flight: more than cores, as most of a job is waiting (on a cluster, each
    // write waits for a majority of the nodes); processing itself is held to one per core.
    let concurrency = cores() * 4;
    worker::run(
        consumer,
        bus.publisher(),
        worker::Settings::new(concurrency, &config.nats, POLICY).named(Service::Store.name()),
        shutdown,
        store,
    )
    .await;
    answering.await?
}

impl Store {
    /// A store on these parts, writing where `config` says.
    pub fn new(
        config: &Config,
        records: Records,
        publisher: Arc<dyn Publish>,
        jobs: JobBoard,
        objects: Arc<dyn Objects>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.server.images_dir)
            .map_err(|e| anyhow::anyhow!("cannot create images_dir {}: {e}", config.server.images_dir.display()))?;
        let links_base = config.server.public_base_url();
        let remote = remote::RemoteStore::from_config(&config.cloudflare_r2, &links_base)?.map(Arc::new);
        // Where people get the pictures: R2's public URL when pictures go there.
        let propagator = match (config.labels.propagator.trim(), &remote) {
            ("", Some(remote)) if !remote.public_url().is_empty() => remote.public_url().to_string(),
            ("", _) => config.server.public_base_url(),
            (propagator, _) => propagator.to_string(),
        };
        Ok(Self {
            publisher,
            jobs,
            objects,
            records,
            images_dir: config.server.images_dir.clone(),
            public_base_url: config.server.public_base_url(),
            processing: Arc::new(config.image_processing.clone()),
            labels: Arc::new(config.labels.clone()),
            propagator,
            remote,
            cores: Arc::new(tokio::sync::Semaphore::new(cores())),
            storing_shown_after: STORING_SHOWN_AFTER,
        })
    }
}

impl Stage for Store {
    /// Handles one delivery of `image.generated`.
    async fn handle(&self, received: Received) -> Result<(), Failure> {
        let generated: ImageGenerated = received.decode()?;
        // Cancelled after the model drew it: the picture is discarded, unless it was
        // already kept (a redelivery after the record was written completes as before).
        if let Some(asked) = self.jobs.cancel_request(&generated.id).await?
            && self.records.by_job(&generated.id).await?.is_none()
        {
            let cancellation = Cancellation::asked(&asked);
            let cancelled = ImageFailed::cancelled(generated.facts(), cancellation, received.attempt)
                .costing(generated.cost.clone());
            self.jobs.finish(&*self.publisher, &cancelled).await?;
            tracing::info!(job = %generated.id, "cancelled; the picture is discarded");
            return Ok(());
        }
        match self.store(&generated).await {
            Ok(completed) => {
                self.jobs.finish(&*self.publisher, &completed).await?;
                // The object store copy is left for the bucket's max age (24 h) to remove:
                // deleting each picture (a purge per object) slowed nats-server's file
                // store down to a few pictures a second after about a thousand jobs.
                tracing::info!(job = %completed.id, url = %completed.url, "stored");
                Ok(())
            }
            Err(failure) if failure.is_transient() => {
                tracing::warn!(job = %generated.id, error = %failure, "storing failed; will retry");
                Err(failure)
            }
            // The picture is unusable, or the database will never take its record: the job
            // fails (its owner is told), and the event is kept as a dead letter for the
            // operator rather than tried again.
            Err(unusable) => {
                tracing::warn!(job = %generated.id, reason = %unusable, "cannot be stored");
                let failed = ImageFailed::new(
                    generated.facts(),
                    JobStage::Store,
                    unusable.reason.clone(),
                    false,
                    received.attempt,
                )
                .costing(generated.cost.clone());
                self.jobs.finish(&*self.publisher, &failed).await?;
                Err(unusable)
            }
        }
    }
}

impl Store {
    /// Writes the file and the record (once per job) and returns the completion event.
    /// A permanent failure means the picture itself is unusable.
    async fn store(&self, generated: &ImageGenerated) -> Result<ImageCompleted, Failure> {
        if let Some(record) = self.records.by_job(&generated.id).await? {
            // A redelivery after the record was written: announce it again, write nothing.
            return Ok(self.completed_event(generated, &record));
        }
        // The job shows `storing` once keeping the picture takes longer than
        // STORING_SHOWN_AFTER, or fails (then until a retry succeeds).
        let storing = JobStatus::new(&generated.id, JobState::Storing, &generated.prompt, Some(&generated.model))
            .of_kind(generated.kind)
            .owned_by(generated.owner.as_deref());
        let keeping = self.keep(generated);
        tokio::pin!(keeping);
        let kept = tokio::select! {
            kept = &mut keeping => kept,
            _ = tokio::time::sleep(self.storing_shown_after) => {
                let (shown, kept) = tokio::join!(self.jobs.set(&storing), &mut keeping);
                shown?;
                kept
            }
        };
        if kept.as_ref().is_err_and(Failure::is_transient) {
            self.jobs.set(&storing).await?;
        }
        kept
    }

    /// Processes and writes the picture of a job that has no record yet, and records it.
    async fn keep(&self, generated: &ImageGenerated) -> Result<ImageCompleted, Failure> {
        let name = files::file_name(
            generated.kind,
            &generated.id,
            generated.generated_at,
            &generated.english_prompt,
            self.processing.format.extension(),
        );
        let processed = self.process(generated, &name).await?;

        let dir = self.images_dir.clone();
        let bytes = Arc::new(processed.bytes);
        let file_size = bytes.len() as u64;
        let thumbnail = Arc::new(processed.thumbnail);
        let (to_write, file_name, thumbnail_file, thumbnail_copy) =
            (bytes.clone(), name.clone(), thumbnail_name(&name), thumbnail.clone());
        let path = blocking(move || {
            // The thumbnail first: a picture on disk always has its thumbnail beside it.
            files::write_atomically(&dir, &thumbnail_file, &thumbnail_copy)?;
            files::write_atomically(&dir, &file_name, &to_write)
        })
        .await?;
        worker::crash_point("store.after_file");
        // The remote copy is a bonus: when it fails, the job completes with the local file.
        let (r2_url, r2_error) = match &self.remote {
            None => (None, None),
            Some(remote) => {
                match remote.upload_with_thumbnail(&name, bytes.to_vec(), processed.format, thumbnail.to_vec()).await {
                    Ok(url) => (Some(url), None),
                    Err(error) => {
                        tracing::warn!(job = %generated.id, %error, "kept locally only");
                        (None, Some(error.to_string()))
                    }
                }
            }
        };

        let now = records::timestamp(OffsetDateTime::now_utc());
        let record = Record {
            id: 0,
            job_id: generated.id.to_string(),
            original_prompt: generated.prompt.to_string(),
            english_prompt: generated.english_prompt.clone(),
            model: generated.model.to_string(),
            local_path: path.display().to_string(),
            r2_url,
            r2_error,
            file_size,
            width: processed.width,
            height: processed.height,
            format: processed.format.name().into(),
            created_at: now.clone(),
            updated_at: now,
            user: generated.user.clone(),
            labels: processed.labels,
            kind: generated.kind,
            inputs: generated.inputs.iter().map(|input| input.source.clone()).collect(),
            owner: generated.owner.clone(),
            cost: generated.cost.clone(),
            fallback: generated.fallback.clone(),
            group_id: generated.group.as_ref().map(|group| group.id.clone()),
            picked: false,
        };
        self.records.insert(&record).await?;
        worker::crash_point("store.after_record");
        Ok(self.completed_event(generated, &record))
    }

    /// The picture, from the event or the object store, processed on a core of its own.
    /// A permanent failure means the picture is unusable or gone.
    async fn process(&self, generated: &ImageGenerated, name: &str) -> Result<processing::Processed, Failure> {
        let input = match &generated.picture {
            PictureAt::Inline { picture_base64 } => picture_base64.clone(),
            PictureAt::Object { object, .. } => match self.objects.get(object).await? {
                Some(bytes) => bytes,
                None => {
                    return Err(Failure::permanent(format!(
                        "the generated picture is no longer in the object store ({object}): it expired, as \
                         pictures wait at most {} hours for the store",
                        crate::bus::PICTURE_RETENTION.as_secs() / 3600
                    )));
                }
            },
        };
        let settings = self.processing.clone();
        let labelling = self.labelling(generated, name);
        let _core = self.cores.clone().acquire_owned().await.expect("the semaphore is never closed");
        tokio::task::spawn_blocking(move || processing::process(&input, &settings, &labelling))
            .await
            .map_err(|e| Failure::transient(format!("processing crashed: {e}")))?
            .map_err(|e| Failure::permanent(e.to_string()).caused_by(e))
    }

    /// The labels this job's picture gets, as `[labels]` says.
    fn labelling(&self, generated: &ImageGenerated, file_name: &str) -> Labelling {
        let labels = &self.labels;
        Labelling {
            implicit: labels.implicit.then(|| ImplicitLabel {
                producer: labels.producer().to_string(),
                job_id: generated.id.to_string(),
                propagator: self.propagator.clone(),
                file_name: file_name.to_string(),
                model: generated.model.to_string(),
            }),
            visible: labels
                .explicit
                .then(|| VisibleLabel { text: labels.visible_text().to_string(), corner: labels.position }),
        }
    }

    fn completed_event(&self, generated: &ImageGenerated, record: &Record) -> ImageCompleted {
        let filename = record.filename();
        let local_url = local_url(&self.public_base_url, &filename);
        let completed_at = OffsetDateTime::now_utc();
        ImageCompleted {
            version: EVENT_VERSION,
            id: generated.id.clone(),
            prompt: generated.prompt.clone(),
            english_prompt: record.english_prompt.clone(),
            model: generated.model.clone(),
            url: record.r2_url.clone().unwrap_or_else(|| local_url.clone()),
            local_url,
            r2_url: record.r2_url.clone(),
            filename,
            width: record.width,
            height: record.height,
            format: record.format.clone(),
            file_size: record.file_size,
            labels: record.labels,
            kind: generated.kind,
            inputs: generated.inputs.clone(),
            group: generated.group.clone(),
            requested_at: generated.requested_at,
            completed_at,
            duration_ms: (completed_at - generated.requested_at).whole_milliseconds().max(0) as u64,
            cost: generated.cost.clone(),
            ignored_options: generated.ignored_options.clone(),
            fallback: generated.fallback.clone(),
            owner: generated.owner.clone(),
            notify_email: generated.notify_email.clone(),
            callback: generated.callback.clone(),
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs blocking work (file writes) off the async threads; its errors pass.
async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, Failure>
where
    T: Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Failure::transient(format!("blocking task crashed: {e}")))?
        .map_err(|e| Failure::transient(e.to_string()).caused_by(e))
}

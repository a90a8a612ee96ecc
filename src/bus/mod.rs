//! The message bus: connecting to NATS (`connect.rs`) and setting up the JetStream
//! topology; the parts a stage works with ([`crate::parts`]) are handed out from here.
//!
//! Every service calls [`Bus::connect`], which creates what is missing and leaves what
//! exists (streams, buckets and consumers are created idempotently). Services only look
//! up and create streams, never update, purge or delete them: nats.conf allows them no
//! more than that. Publishing always
//! waits for JetStream's acknowledgement, and carries a `Nats-Msg-Id` so that a
//! publish repeated after a crash is stored once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, object_store, stream};
use tokio_util::sync::CancellationToken;

use crate::config::NatsConfig;
use crate::config::Secret;
use crate::contract::budget::{ALERTS_STREAM, BUDGET_ALERT};
use crate::contract::events;
use crate::contract::jobs::JobStatus;
use crate::contract::mail::{SECRETS_BUCKET, SUPPRESSED_BUCKET};
use crate::contract::services::Service;
use crate::contract::{
    DEAD_LETTER_PREFIX, DEAD_LETTER_STREAM, IDEMPOTENCY_BUCKET, IMAGES_BUCKET, JOBS_BUCKET, MAIL_BUCKET, STREAM,
};
use crate::links::LinkKeys;
use crate::parts::{JobBoard, JsonBucket, nats::NatsPublisher};

mod connect;
mod consumers;
mod subscriber;
pub use connect::{check_server_version, try_connect};
use connect::{connect_retrying, retry_every_second};
use consumers::consumer_on;
pub use consumers::{ConsumerSpec, durable_consumer_on};
pub use subscriber::Subscriber;

/// Oldest nats-server this build runs against (key-value buckets, several filter subjects).
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 10);

/// How long the stream keeps events for late subscribers and replays.
const EVENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long the picture bucket keeps a picture, an upload or an edit's input: a job
/// whose picture waited longer (a store away for a day) fails as expired.
pub const PICTURE_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Window in which a repeated `Nats-Msg-Id` is dropped by the server.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(30 * 60);

type Source = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong setting up: connecting to NATS, or finding and creating streams,
/// buckets and consumers. Operations on them afterwards fail with a
/// [`crate::parts::PartError`].
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot reach NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("nats-server at {url} is version {found}; huiying needs nats-server 2.10 or newer")]
    ServerTooOld { url: String, found: String },
    /// JetStream answered setup with an error; while a cluster forms this passes.
    #[error("JetStream setup failed ({what}): {source}")]
    JetStream {
        what: &'static str,
        #[source]
        source: Source,
    },
    /// A stream (or bucket) exists with another replica count than `[nats] replicas`.
    /// Services never change streams, so an operator must, or the setting must.
    #[error(
        "stream {stream} has {found} replica(s) but [nats] replicas = {wanted}. Services never change an \
         existing stream: scale it with `nats --user admin stream edit {stream} --replicas {wanted}` (for every \
         stream `nats stream ls` shows), or set [nats] replicas = {found}"
    )]
    Replicas { stream: String, found: usize, wanted: usize },
    #[error("stopped before NATS answered")]
    Cancelled,
}

/// A connection to NATS with handles to everything huiying keeps there.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub stream: stream::Stream,
    pub jobs: kv::Store,
    pub mail: kv::Store,
    pub idempotency: kv::Store,
    pub images: object_store::ObjectStore,
    /// The stream behind `images`, which says how full it is.
    pub images_stream: stream::Stream,
    /// `[nats] replicas`: what anything else a service creates is created with.
    pub replicas: usize,
}

impl Bus {
    /// Connects (retrying until NATS answers or `shutdown` fires) and sets up the topology.
    pub async fn connect(config: &NatsConfig, name: &str, shutdown: &CancellationToken) -> Result<Self, SetupError> {
        let client = connect_retrying(config, name, shutdown).await?;
        check_server_version(&config.url.to_string(), &client.server_info().version)?;
        // A cluster still forming (no leader yet, too few peers for the replicas) answers
        // setup with errors that pass: wait for it, as for the connection itself.
        retry_every_second("JetStream to set up the streams", shutdown, || {
            Self::setup(client.clone(), config.replicas, config.bucket_max_bytes)
        })
        .await
    }

    async fn setup(client: async_nats::Client, replicas: usize, bucket_max_bytes: u64) -> Result<Self, SetupError> {
        let js = jetstream::new(client.clone());
        let stream = stream_or_create(
            &js,
            stream::Config {
                name: STREAM.into(),
                description: Some("huiying pipeline events".into()),
                subjects: vec![
                    events::IMAGE_REQUESTED.into(),
                    events::IMAGE_GENERATED.into(),
                    events::IMAGE_COMPLETED.into(),
                    events::IMAGE_FAILED.into(),
                ],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                max_age: EVENT_RETENTION,
                duplicate_window: DUPLICATE_WINDOW,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        stream_or_create(
            &js,
            stream::Config {
                name: DEAD_LETTER_STREAM.into(),
                description: Some("huiying messages rejected as unusable, with the reason in Huiying-Reason".into()),
                subjects: vec![format!("{DEAD_LETTER_PREFIX}.>")],
                storage: stream::StorageType::File,
                max_age: Duration::from_secs(30 * 24 * 3600),
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;

        let jobs = key_value(&js, JOBS_BUCKET, "huiying job states", EVENT_RETENTION, replicas).await?;
        let mail =
            key_value(&js, MAIL_BUCKET, "huiying notification outcomes", Duration::from_secs(30 * 24 * 3600), replicas)
                .await?;
        let idempotency =
            key_value(&js, IDEMPOTENCY_BUCKET, "huiying Idempotency-Keys", Duration::from_secs(24 * 3600), replicas)
                .await?;
        let images = match js.get_object_store(IMAGES_BUCKET).await {
            Ok(store) => {
                check_replicas(&js, &format!("OBJ_{IMAGES_BUCKET}"), replicas).await?;
                store
            }
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: IMAGES_BUCKET.into(),
                    description: Some("generated pictures on their way to the store".into()),
                    max_age: PICTURE_RETENTION,
                    max_bytes: i64::try_from(bucket_max_bytes).ok().filter(|max| *max > 0).unwrap_or(-1),
                    storage: stream::StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await
                .map_err(setup_failed("object store"))?,
        };
        let images_stream = js.get_stream(format!("OBJ_{IMAGES_BUCKET}")).await.map_err(setup_failed("stream"))?;
        let found = images_stream.cached_info().config.max_bytes;
        if found != i64::try_from(bucket_max_bytes).ok().filter(|max| *max > 0).unwrap_or(-1) {
            tracing::warn!(
                found,
                wanted = bucket_max_bytes,
                "the picture bucket's size bound is not [nats] bucket_max_bytes; services never change it: \
                 nats --user admin stream edit OBJ_{IMAGES_BUCKET} --max-bytes {bucket_max_bytes}"
            );
        }
        Ok(Self { client, jetstream: js, stream, jobs, mail, idempotency, images, images_stream, replicas })
    }

    /// The stream as a [`crate::parts::Publish`] part.
    pub fn publisher(&self) -> Arc<NatsPublisher> {
        Arc::new(NatsPublisher { client: self.client.clone(), jetstream: self.jetstream.clone() })
    }

    /// The alerts stream (`budget.alert`), made when missing; waits, as the setup does, for a
    /// cluster still forming.
    pub async fn alerts(&self, shutdown: &CancellationToken) -> Result<stream::Stream, SetupError> {
        retry_every_second("JetStream to set up the alerts stream", shutdown, || {
            alerts_stream(&self.jetstream, self.replicas)
        })
        .await
    }

    /// A durable consumer on the alerts stream (both made when missing), waiting for a
    /// cluster still forming: a new stream's replicas may not have a leader yet.
    pub async fn alerts_consumer(
        &self,
        spec: &ConsumerSpec,
        shutdown: &CancellationToken,
    ) -> Result<consumer::PullConsumer, SetupError> {
        retry_every_second("JetStream to set up the alerts consumer", shutdown, || async {
            durable_consumer_on(&alerts_stream(&self.jetstream, self.replicas).await?, spec).await
        })
        .await
    }

    /// A key-value bucket of a service's own, made when missing; waits, as the setup does,
    /// for a cluster still forming.
    pub async fn own_bucket(
        &self,
        bucket: &'static str,
        description: &str,
        max_age: Duration,
        shutdown: &CancellationToken,
    ) -> Result<kv::Store, SetupError> {
        retry_every_second(&format!("JetStream to set up {bucket}"), shutdown, || {
            key_value(&self.jetstream, bucket, description, max_age, self.replicas)
        })
        .await
    }

    /// The suppression list (ingest's unsubscribe page and the mailer write it). Entries
    /// carry their own end: the bucket keeps them until deleted.
    pub async fn suppressed_bucket(&self, shutdown: &CancellationToken) -> Result<kv::Store, SetupError> {
        self.own_bucket(SUPPRESSED_BUCKET, "huiying addresses no notification goes to", Duration::ZERO, shutdown).await
    }

    /// The link keys: `configured` ([server] link_keys), else the one kept in the secrets
    /// bucket (made there by the first service to ask); waits, as the setup does, for a
    /// cluster still forming.
    pub async fn link_keys(&self, configured: &[Secret], shutdown: &CancellationToken) -> Result<LinkKeys, SetupError> {
        let secrets =
            self.own_bucket(SECRETS_BUCKET, "huiying keys made at first start", Duration::ZERO, shutdown).await?;
        retry_every_second("JetStream to hand out the link key", shutdown, || async {
            LinkKeys::load(configured, &secrets)
                .await
                .map_err(|e| SetupError::JetStream { what: "the link key", source: e.to_string().into() })
        })
        .await
    }

    /// Job states as a [`JobBoard`].
    pub fn job_board(&self) -> JobBoard {
        JobBoard::new(JsonBucket::<JobStatus>::new(Arc::new(self.jobs.clone())))
    }

    /// Answers NATS service pings as `service` (`huiying-generator` ...) until `stop` is
    /// called on the handle (dropping it is not enough), so that ingest's `/health` can
    /// tell the service runs.
    pub async fn announce(&self, service: Service) -> Result<async_nats::service::Service, SetupError> {
        use async_nats::service::ServiceExt;
        self.client
            .service_builder()
            .description(service.about())
            .start(service.program(), env!("CARGO_PKG_VERSION"))
            .await
            .map_err(|e| SetupError::JetStream { what: "the service ping", source: e.to_string().into() })
    }

    /// Creates (or updates) a pipeline service's durable pull consumer on the `HUIYING`
    /// stream and returns it.
    ///
    /// On a cluster its state (what was delivered, what acknowledged) is replicated as the
    /// stream is, but kept in memory: each delivery and each ack is a Raft round, and on disk
    /// each was an fsync on every node, more than half of all the rounds a job costs
    /// (docs/performance.md). Losing a node loses nothing (the others hold the state); only
    /// if every node stops at once is it gone, and the consumer then starts over from the
    /// stream's first event. Each pipeline stage recognises a job it already did and acks it
    /// (its logs are kept at least as long as the stream's 7 days), so nothing is sent twice
    /// (docs/cluster.md). Other consumers (alerts, webhook tasks, your subscribers) stay on
    /// disk: their streams outlive those logs, or their stages are not ours. A consumer an
    /// earlier release made on disk is moved to memory by this update (nats-server 2.10
    /// accepts the change).
    pub async fn durable_consumer(&self, spec: &ConsumerSpec) -> Result<consumer::PullConsumer, SetupError> {
        consumer_on(&self.stream, spec, self.replicas > 1).await
    }
}

pub(crate) fn setup_failed<E: Into<Source>>(what: &'static str) -> impl FnOnce(E) -> SetupError {
    move |e| SetupError::JetStream { what, source: e.into() }
}

/// The stream `config` names as it is, created when missing. Never updated: a stream
/// someone changed on purpose stays changed, and services need no right to update; but
/// one with another replica count than `config` asks for is an error (see
/// [`SetupError::Replicas`]), not silently accepted.
pub(crate) async fn stream_or_create(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, SetupError> {
    let what = "stream";
    match js.get_stream(&config.name).await {
        Ok(stream) => {
            replicas_match(&config.name, stream.cached_info().config.num_replicas, config.num_replicas)?;
            Ok(stream)
        }
        // Not found (or another JetStream answer): create. Two services racing to
        // create the same config both succeed.
        Err(e) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(_)) => {
            js.create_stream(config).await.map_err(setup_failed(what))
        }
        Err(e) => Err(setup_failed(what)(e)),
    }
}

/// Checks an existing stream's replica count against `[nats] replicas`.
async fn check_replicas(js: &jetstream::Context, stream: &str, wanted: usize) -> Result<(), SetupError> {
    let mut found = js.get_stream(stream).await.map_err(setup_failed("stream"))?;
    let found = found.info().await.map_err(setup_failed("stream"))?.config.num_replicas;
    replicas_match(stream, found, wanted)
}

fn replicas_match(stream: &str, found: usize, wanted: usize) -> Result<(), SetupError> {
    // A stream created without a count reports 1.
    let found = found.max(1);
    if found != wanted.max(1) {
        return Err(SetupError::Replicas { stream: stream.into(), found, wanted });
    }
    Ok(())
}

/// The stream of operator alerts (`budget.alert`), made by whichever service needs it
/// first. A day's duplicate window: an alert published twice is kept once.
async fn alerts_stream(js: &jetstream::Context, replicas: usize) -> Result<stream::Stream, SetupError> {
    stream_or_create(
        js,
        stream::Config {
            name: ALERTS_STREAM.into(),
            description: Some("huiying operator alerts (budgets)".into()),
            subjects: vec![BUDGET_ALERT.into()],
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(90 * 24 * 3600),
            duplicate_window: Duration::from_secs(24 * 3600),
            num_replicas: replicas,
            ..Default::default()
        },
    )
    .await
}

pub(crate) async fn key_value(
    js: &jetstream::Context,
    bucket: &'static str,
    description: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<kv::Store, SetupError> {
    if let Ok(store) = js.get_key_value(bucket).await {
        check_replicas(js, &format!("KV_{bucket}"), replicas).await?;
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: bucket.into(),
        description: description.into(),
        history: 1,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(setup_failed("key-value bucket"))
}

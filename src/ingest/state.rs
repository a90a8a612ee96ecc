//! What every route may use: ingest's parts, its clients, and the few settings routes
//! read, taken from the config once (the config itself stays outside).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::backlog::{BucketBound, QueueBound};
use super::idempotency::{IdempotencyKeys, RetriedRequests};
use super::quota::{Clock, Quotas};
use super::spend::Spend;
use crate::config::{AllowedRecipients, Config, Language, ModelRouting, WebhooksConfig};
use crate::contract::mail::Notification;
use crate::contract::webhooks::{Delivery, EndpointState};
use crate::fetch::Fetcher;
use crate::links::LinkKeys;
use crate::parts::{Backlog, JobBoard, JsonBucket, KeyValue, Objects, Publish, Requests, Room};
use crate::r2::PrivateBucket;
use crate::stored::StoredPictures;
use crate::suppression::Suppressions;
use crate::translate::Translator;

/// The parts ingest works with, as a caller hands them over.
pub struct IngestParts {
    pub publisher: Arc<dyn Publish>,
    pub jobs: JobBoard,
    pub idempotency: Arc<dyn KeyValue>,
    pub store: Arc<dyn Requests>,
    pub backlog: Arc<dyn Backlog>,
    /// How full the images bucket is.
    pub bucket_room: Arc<dyn Room>,
    /// The webhook service's delivery log and endpoint states (read only).
    pub webhook_log: Arc<dyn KeyValue>,
    pub webhook_states: Arc<dyn KeyValue>,
    /// The images bucket: uploads and edits' input pictures go there.
    pub objects: Arc<dyn Objects>,
    /// The mailer's notification log (read only).
    pub mail_log: Arc<dyn KeyValue>,
    /// Where keys' `jobs_per_day` are counted (shared by every ingest).
    pub quota_slots: Arc<dyn KeyValue>,
    /// The generator's spend ledger (read only): budgets refused early, `GET /usage`.
    pub spend_ledger: Arc<dyn KeyValue>,
    /// The suppression list: one-click unsubscribe adds to it.
    pub suppressed: Arc<dyn KeyValue>,
    /// What signs unsubscribe links (the mailer signs them with the same keys).
    pub links: LinkKeys,
    /// What time it is (quota days and budget periods start at midnight in `[server] timezone`).
    pub clock: Clock,
}

/// What every handler sees.
#[derive(Clone)]
pub struct AppState {
    pub(super) publisher: Arc<dyn Publish>,
    pub(super) jobs: JobBoard,
    pub(super) idempotency: IdempotencyKeys,
    /// Jobs started by requests of SDKs that retry by themselves (the OpenAI route).
    pub(super) retried: RetriedRequests,
    /// The store's records API.
    pub(super) store: Arc<dyn Requests>,
    pub(super) queue: Arc<QueueBound>,
    pub(super) bucket: Arc<BucketBound>,
    pub(super) objects: Arc<dyn Objects>,
    pub(super) logs: Logs,
    pub(super) quotas: Arc<Quotas>,
    pub(super) spend: Arc<Spend>,
    pub(super) translator: Option<Translator>,
    /// Fetches edits' input URLs through the download guard (public addresses only,
    /// unless `[server] allow_private_edit_inputs`).
    pub(super) fetcher: Fetcher,
    /// Stored pictures read back (`b64_json` answers, `record:` edit inputs).
    pub(super) pictures: StoredPictures,
    /// Pictures checked (decoded) at once: one per core, off the request threads.
    pub(super) decoding: Arc<Semaphore>,
    pub(super) suppressed: Suppressions,
    pub(super) links: LinkKeys,
    /// What time it is: quota days, budget periods, picture links' expiry.
    pub(super) clock: Clock,
    /// A bucket without a public domain: its pictures are served by presigned redirects.
    pub(super) private_bucket: Option<Arc<PrivateBucket>>,
    pub(super) settings: Arc<Settings>,
}

/// The other services' logs, read for the views (`/jobs/{id}/notifications`, `/webhooks`).
#[derive(Clone)]
pub(super) struct Logs {
    pub(super) webhook_deliveries: JsonBucket<Delivery>,
    pub(super) webhook_states: JsonBucket<EndpointState>,
    pub(super) mail: JsonBucket<Notification>,
}

/// The settings routes read.
pub(super) struct Settings {
    /// Where clients reach this server (`[server] public_url`), for the links it answers.
    pub(super) public_base_url: String,
    /// How long a synchronous answer waits for its job (`[server] timeout`).
    pub(super) wait_timeout: Duration,
    /// Whom a request may have mailed (`[smtp] allowed_recipients`).
    pub(super) recipients: AllowedRecipients,
    /// Which webhooks a request may name, and the endpoints the views list (no secret).
    pub(super) webhooks: WebhooksConfig,
    /// Which provider serves a model: edits are checked against it before queuing.
    pub(super) routing: ModelRouting,
    /// The mails' language (`[smtp] language`): the unsubscribe page speaks it too.
    pub(super) language: Language,
    /// The most pictures one request may ask for (`[server] max_n`).
    pub(super) max_n: u32,
    /// The most models one comparison may name (`[server] max_compare`).
    pub(super) max_compare: u32,
    /// How long a request NATS cannot take yet is held (`[server] failover_wait`).
    pub(super) failover_wait: Duration,
    /// NATS is a cluster (several servers named): a lost connection moves to another node.
    pub(super) nats_cluster: bool,
}

impl AppState {
    pub fn new(config: &Config, parts: IngestParts) -> anyhow::Result<Self> {
        Ok(Self {
            publisher: parts.publisher,
            jobs: parts.jobs,
            idempotency: IdempotencyKeys::new(JsonBucket::new(parts.idempotency.clone())),
            retried: RetriedRequests::new(JsonBucket::new(parts.idempotency)),
            store: parts.store,
            queue: Arc::new(QueueBound::new(parts.backlog, config.server.max_queued_jobs)),
            bucket: Arc::new(BucketBound::new(parts.bucket_room)),
            objects: parts.objects,
            logs: Logs {
                webhook_deliveries: JsonBucket::new(parts.webhook_log),
                webhook_states: JsonBucket::new(parts.webhook_states),
                mail: JsonBucket::new(parts.mail_log),
            },
            quotas: Arc::new(Quotas::new(
                parts.quota_slots,
                config.server.timezone.zone().clone(),
                parts.clock.clone(),
            )),
            spend: Arc::new(Spend::new(config, parts.spend_ledger, parts.clock.clone())),
            translator: Translator::from_config(config)?,
            fetcher: Fetcher::new(&config.generator, "the input URL")
                .allowing_private(config.server.allow_private_edit_inputs, "[server] allow_private_edit_inputs"),
            pictures: StoredPictures::new(config.server.images_dir.clone())?,
            decoding: Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))),
            suppressed: Suppressions::new(JsonBucket::new(parts.suppressed)),
            links: parts.links,
            clock: parts.clock,
            private_bucket: PrivateBucket::from_config(&config.cloudflare_r2)?.map(Arc::new),
            settings: Arc::new(Settings {
                public_base_url: config.server.public_base_url(),
                wait_timeout: config.server.sync_wait(),
                recipients: config.smtp.recipients(),
                webhooks: config.webhooks.without_secrets(),
                routing: config.routing(),
                language: config.smtp.language,
                max_n: config.server.max_n.max(1),
                max_compare: config.server.max_compare.max(2),
                failover_wait: config.server.failover_wait,
                nats_cluster: config.nats.url.urls().len() > 1,
            }),
        })
    }
}

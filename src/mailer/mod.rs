//! The mailer: `image.completed` / `image.failed` → an HTML + text email.
//!
//! With `[smtp] enable = true` it sends over SMTP (lettre); otherwise it writes each
//! mail as an `.eml` file into `[smtp] outbox_dir`, so a new user sees the mail with no
//! mail account. Each (job, kind) is mailed once: the notification log is checked
//! before sending and written right after the server accepted the mail.

pub mod commands;
mod compose;
mod sent;
pub mod templates;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, ConsumerSpec};
use crate::config::{Config, SmtpConfig};
use crate::events::{self, ImageCompleted, ImageFailed};
use crate::limit::RateLimit;
use crate::worker::{self, Outcome, Received};
pub use compose::{Composer, ImageRef, InlineImage, Notice};
pub use sent::{DeliveryState, Notification, SentLog};
pub use templates::{Kind, Templates};
pub use transport::{SendError, Transport, classify};

/// Largest picture attached inline; a larger one is linked only.
const MAX_ATTACHMENT_BYTES: usize = 15 * 1024 * 1024;

/// Everything one mailer instance needs to turn events into mail.
#[derive(Clone)]
pub struct Mailer {
    log: SentLog,
    composer: Arc<Composer>,
    transport: Transport,
    limit: Arc<RateLimit>,
    settings: Arc<SmtpConfig>,
    images_dir: PathBuf,
    http: reqwest::Client,
}

pub fn consumer_spec(ack_wait: Duration) -> ConsumerSpec {
    ConsumerSpec {
        durable: "mailer",
        description: "huiying mailer: emails completions and failures",
        subjects: &[events::IMAGE_COMPLETED, events::IMAGE_FAILED],
        ack_wait,
        // The handler decides when to give up (smtp.max_attempts).
        max_deliver: -1,
        max_ack_pending: 64,
    }
}

/// Runs the mailer until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Connected { mailer, consumer, bus } = Mailer::connect(&config, &shutdown).await?;
    match &mailer.transport {
        Transport::Smtp(_) => tracing::info!(
            host = %config.smtp.host, port = config.smtp.port, tls = ?config.smtp.effective_tls(),
            "mailer ready: sending over SMTP"
        ),
        Transport::Outbox(_) => tracing::info!(
            outbox = %config.smtp.outbox_dir.display(),
            "mailer ready: SMTP disabled, writing mails to the outbox"
        ),
    }
    worker::run(bus, consumer, 4, worker::Patience::from_config(&config.nats), shutdown, move |received| {
        let mailer = mailer.clone();
        async move { mailer.handle(received).await }
    })
    .await
}

/// A connected mailer and, for the subscriber loop, its consumer.
pub struct Connected {
    pub mailer: Mailer,
    pub bus: Bus,
    pub consumer: async_nats::jetstream::consumer::PullConsumer,
}

impl Mailer {
    /// Checks templates, addresses and TLS files first (a mistake stops the mailer at
    /// start), then connects to NATS.
    pub async fn connect(config: &Config, shutdown: &CancellationToken) -> anyhow::Result<Connected> {
        let composer = Composer::from_config(&config.smtp)?;
        let transport = Transport::from_config(&config.smtp)?;
        let bus = Bus::connect(&config.nats, "huiying-mailer", shutdown).await?;
        let consumer = bus.durable_consumer(&consumer_spec(config.nats.ack_wait())).await?;
        let mailer = Mailer {
            log: SentLog::new(bus.mail.clone()),
            composer: Arc::new(composer),
            transport,
            limit: Arc::new(RateLimit::per_minute(config.smtp.max_per_minute)),
            settings: Arc::new(config.smtp.clone()),
            images_dir: config.server.images_dir.clone(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?,
        };
        Ok(Connected { mailer, bus, consumer })
    }

    pub fn log(&self) -> &SentLog {
        &self.log
    }

    /// Handles one delivery of `image.completed` or `image.failed`.
    pub async fn handle(&self, received: Received) -> Outcome {
        let notice = match received.subject.as_str() {
            events::IMAGE_COMPLETED => {
                serde_json::from_slice::<ImageCompleted>(&received.payload).map(|e| Notice::completed(&e))
            }
            events::IMAGE_FAILED => {
                serde_json::from_slice::<ImageFailed>(&received.payload).map(|e| Notice::failed(&e))
            }
            other => return Outcome::Reject(format!("the mailer does not handle {other}")),
        };
        let notice = match notice {
            Ok(notice) => notice,
            Err(e) => return Outcome::Reject(format!("unreadable {} event: {e}", received.subject)),
        };
        match self.log.get(&notice.job_id, notice.kind.name()).await {
            // Sent, or given up, before: a redelivery must not mail again.
            Ok(Some(previous)) if previous.state != DeliveryState::Retrying => return Outcome::Done,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(job = %notice.job_id, error = %e, "notification log unreadable; will retry");
                return Outcome::Retry(Duration::from_secs(2));
            }
        }
        let may_retry = received.attempt < self.settings.max_attempts;
        match self.notify(&notice, received.attempt, may_retry).await.state {
            DeliveryState::Retrying => {
                let base = Duration::from_secs(self.settings.retry_delay);
                Outcome::Retry(worker::backoff(base, received.attempt, Duration::from_secs(3600)))
            }
            DeliveryState::Sent | DeliveryState::Failed => Outcome::Done,
        }
    }

    /// Sends the notice once and records the outcome: sent, failed, or (when a retry is
    /// allowed and could help) retrying.
    pub async fn notify(&self, notice: &Notice, attempt: u32, may_retry: bool) -> Notification {
        let mut notification = Notification {
            job_id: notice.job_id.clone(),
            kind: notice.kind.name().into(),
            state: DeliveryState::Sent,
            recipients: self.composer.all_recipients(notice),
            attempts: attempt,
            last_error: None,
            sent_at: None,
            updated_at: OffsetDateTime::now_utc(),
        };
        match self.send(notice).await {
            Ok(()) => {
                notification.sent_at = Some(OffsetDateTime::now_utc());
                tracing::info!(job = %notice.job_id, kind = notice.kind.name(), "mail sent");
            }
            Err(error) if !error.permanent && may_retry => {
                tracing::warn!(job = %notice.job_id, error = %error.explained(), attempt, "mail not sent; will retry");
                notification.state = DeliveryState::Retrying;
                notification.last_error = Some(error.explained());
            }
            Err(error) => {
                tracing::error!(job = %notice.job_id, error = %error.explained(), attempt, "mail not sent; giving up");
                notification.state = DeliveryState::Failed;
                notification.last_error = Some(error.explained());
            }
        }
        // After a send, the log must say so even if NATS stumbles: retry the write here
        // rather than redeliver the event (which would mail again).
        for try_number in 1..=5u64 {
            match self.log.put(&notification).await {
                Ok(()) => break,
                Err(e) if try_number == 5 => {
                    tracing::error!(job = %notice.job_id, error = %e, "notification log not written")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200 * try_number)).await,
            }
        }
        notification
    }

    async fn send(&self, notice: &Notice) -> Result<(), SendError> {
        let image = match (&notice.image, self.settings.attach_image) {
            (Some(image), true) => self.load_image(image).await,
            _ => None,
        };
        let message = self.composer.compose(notice, image).map_err(|e| SendError {
            message: format!("the mail could not be composed: {e:#}"),
            permanent: true,
            hint: None,
        })?;
        self.limit.acquire().await;
        self.transport.send(message, &self.settings).await
    }

    /// The stored picture, from `images_dir` when this host has it, else from its URL.
    async fn load_image(&self, image: &ImageRef) -> Option<InlineImage> {
        let local = self.images_dir.join(&image.filename);
        let bytes = match tokio::fs::read(&local).await {
            Ok(bytes) => Some(bytes),
            Err(_) => self.download(&image.url).await,
        };
        match bytes {
            Some(bytes) if bytes.len() <= MAX_ATTACHMENT_BYTES => {
                Some(InlineImage { bytes, content_type: image.content_type })
            }
            _ => {
                tracing::warn!(url = %image.url, "picture not attached (unreadable or too large); the mail links it");
                None
            }
        }
    }

    async fn download(&self, url: &str) -> Option<Vec<u8>> {
        let response = self.http.get(url).send().await.ok()?.error_for_status().ok()?;
        if response.content_length().is_some_and(|n| n as usize > MAX_ATTACHMENT_BYTES) {
            return None;
        }
        Some(response.bytes().await.ok()?.to_vec())
    }
}

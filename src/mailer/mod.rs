//! The mailer: `image.completed` / `image.failed` → an HTML + text email.
//!
//! With `[smtp] enable = true` it sends over SMTP (lettre); otherwise it writes each
//! mail as an `.eml` file into `[smtp] outbox_dir`, so a new user sees the mail with no
//! mail account. Each (job, kind) is mailed once: the notification log is checked
//! before sending and written right after the server accepted the mail.

pub mod commands;
mod compose;
mod sent;
mod templates;
#[cfg(test)]
mod tests;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, ConsumerSpec};
use crate::config::{Config, SmtpConfig};
use crate::contract::consumers;
use crate::contract::events::{self, ImageCompleted, ImageFailed};
use crate::failure::{Failure, RetryPolicy};
use crate::limit::RateLimit;
use crate::parts::{JsonBucket, KeyValue};
use crate::worker::{self, Received, Stage};
pub use compose::{Composer, Notice};
use compose::{ImageRef, InlineImage};
use sent::{DeliveryState, Notification, SentLog};
pub use transport::Transport;

/// Largest picture attached inline; a larger one is linked only.
const MAX_ATTACHMENT_BYTES: usize = 15 * 1024 * 1024;

/// The mailer stage: one instance's parts and settings.
#[derive(Clone)]
pub struct Mailer {
    log: SentLog,
    composer: Arc<Composer>,
    transport: Transport,
    limit: Arc<RateLimit>,
    settings: Arc<SmtpConfig>,
    policy: RetryPolicy,
    images_dir: PathBuf,
    http: reqwest::Client,
}

fn consumer_spec(config: &Config) -> ConsumerSpec {
    ConsumerSpec {
        durable: consumers::MAILER,
        description: "huiying mailer: emails completions and failures",
        subjects: &[events::IMAGE_COMPLETED, events::IMAGE_FAILED],
        ack_wait: config.nats.ack_wait,
        // The stage decides when to give up (smtp.max_attempts).
        max_deliver: -1,
        max_ack_pending: 64,
    }
}

/// Runs the mailer until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Templates, addresses and TLS files first: a mistake stops the mailer at start, not
    // after NATS answers.
    Composer::from_config(&config.smtp)?;
    Transport::from_config(&config.smtp)?;
    let bus = Bus::connect(&config.nats, "huiying-mailer", &shutdown).await?;
    let mailer = Mailer::new(&config, Arc::new(bus.mail.clone()))?;
    let consumer = bus.durable_consumer(&consumer_spec(&config)).await?;
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
    let settings = worker::Settings::new(4, &config.nats, mailer.policy);
    worker::run(consumer, bus.publisher(), settings, shutdown, mailer).await;
    Ok(())
}

impl Mailer {
    /// A mailer keeping its notification log in `log`.
    pub fn new(config: &Config, log: Arc<dyn KeyValue>) -> anyhow::Result<Self> {
        Ok(Mailer {
            log: SentLog::new(JsonBucket::new(log)),
            composer: Arc::new(Composer::from_config(&config.smtp)?),
            transport: Transport::from_config(&config.smtp)?,
            limit: Arc::new(RateLimit::per_minute(config.smtp.max_per_minute)),
            settings: Arc::new(config.smtp.clone()),
            policy: config.smtp.retry_policy(),
            images_dir: config.server.images_dir.clone(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?,
        })
    }
}

impl Stage for Mailer {
    /// Handles one delivery of `image.completed` or `image.failed`.
    async fn handle(&self, received: Received) -> Result<(), Failure> {
        let notice = match received.subject.as_str() {
            events::IMAGE_COMPLETED => Notice::completed(&received.decode::<ImageCompleted>()?),
            events::IMAGE_FAILED => Notice::failed(&received.decode::<ImageFailed>()?),
            other => return Err(Failure::permanent(format!("the mailer does not handle {other}"))),
        };
        // Sent, or given up, before: a redelivery must not mail again. An unreadable entry
        // is a permanent failure (a dead letter to look at), never a second mail.
        if let Some(previous) = self.log.get(&notice.job_id, notice.kind.name()).await?
            && previous.state != DeliveryState::Retrying
        {
            return Ok(());
        }
        let may_retry = !self.policy.is_last(received.attempt);
        let outcome = self.notify(&notice, received.attempt, may_retry).await;
        match outcome.state {
            DeliveryState::Retrying => Err(Failure::transient(outcome.last_error.unwrap_or_default())),
            DeliveryState::Sent | DeliveryState::Failed => Ok(()),
        }
    }
}

impl Mailer {
    /// Sends the notice once and records the outcome: sent, failed, or (when a retry is
    /// allowed and could help) retrying.
    async fn notify(&self, notice: &Notice, attempt: u32, may_retry: bool) -> Notification {
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
            Err(error) if error.is_transient() && may_retry => {
                tracing::warn!(job = %notice.job_id, %error, attempt, "mail not sent; will retry");
                notification.state = DeliveryState::Retrying;
                notification.last_error = Some(error.reason);
            }
            Err(error) => {
                tracing::error!(job = %notice.job_id, %error, attempt, "mail not sent; giving up");
                notification.state = DeliveryState::Failed;
                notification.last_error = Some(error.reason);
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

    async fn send(&self, notice: &Notice) -> Result<(), Failure> {
        let image = match (&notice.image, self.settings.attach_image) {
            (Some(image), true) => self.load_image(image).await,
            _ => None,
        };
        let message = self
            .composer
            .compose(notice, image)
            .map_err(|e| Failure::permanent(format!("the mail could not be composed: {e:#}")))?;
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

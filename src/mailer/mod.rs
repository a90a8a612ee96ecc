//! The mailer: `image.completed` / `image.failed` → an HTML + text email.
//!
//! With `[smtp] enable = true` it sends over SMTP (lettre); otherwise it writes each
//! mail as an `.eml` file into `[smtp] outbox_dir`, so a new user sees the mail with no
//! mail account. Each (job, kind) is mailed once: the notification log is checked
//! before sending and written right after the server accepted the mail.

mod budget_alert;
pub mod commands;
mod compose;
pub mod doctor;
mod group;
mod outgoing;
mod sent;
mod shown;
mod suppressing;
mod templates;
#[cfg(test)]
mod tests;
mod unsubscribe;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, ConsumerSpec};
use crate::config::Config;
use crate::contract::budget::{BUDGET_ALERT, BudgetAlert};
use crate::contract::consumers;
use crate::contract::events::{self, ImageCompleted, ImageFailed};
use crate::contract::services::Service;
use crate::failure::{Failure, RetryPolicy};
use crate::parts::{JobBoard, JsonBucket, KeyValue};
use crate::smtp::Route;
use crate::suppression::Suppressions;
use crate::worker::{self, Received, Stage};
pub use compose::{Composer, Notice};
use group::ForGroup;
use outgoing::Outgoing;
use sent::{DeliveryState, Notification, SentLog};
pub use unsubscribe::{MailLists, Unsubscribe};

/// The mailer stage: one instance's parts and settings.
#[derive(Clone)]
pub struct Mailer {
    log: SentLog,
    /// Job states, beside which ingest keeps whom a job notifies (not in its events).
    jobs: JobBoard,
    outgoing: Arc<Outgoing>,
    /// Addresses no notification goes to.
    suppressed: Suppressions,
    policy: RetryPolicy,
    /// The notification log's bucket, where groups' ended jobs are tallied.
    tallies: Arc<dyn KeyValue>,
    /// Notices this mailer is sending right now. A redelivery of one of them (its ack
    /// wait ran out while the log could not be written) waits, never mails again.
    in_hand: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// A notice marked in hand for as long as this lives.
struct InHand {
    key: String,
    set: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl InHand {
    /// Marks `key` in hand; `None` when it already is.
    fn take(set: &Arc<std::sync::Mutex<std::collections::HashSet<String>>>, key: String) -> Option<Self> {
        set.lock()
            .expect("no panics while holding the lock")
            .insert(key.clone())
            .then(|| Self { key, set: set.clone() })
    }
}

impl Drop for InHand {
    fn drop(&mut self) {
        self.set.lock().expect("no panics while holding the lock").remove(&self.key);
    }
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

/// Budget alerts, on their own stream.
fn alerts_spec(config: &Config) -> ConsumerSpec {
    ConsumerSpec {
        durable: consumers::MAILER_ALERTS,
        description: "huiying mailer: mails budget alerts to [smtp] to",
        subjects: &[BUDGET_ALERT],
        ack_wait: config.nats.ack_wait,
        max_deliver: -1,
        max_ack_pending: 16,
    }
}

/// Runs the mailer until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    // Templates, addresses and TLS files first: a mistake stops the mailer at start, not
    // after NATS answers.
    let outgoing = Outgoing::from_config(&config)?;
    let bus = Bus::connect(&config.nats, Service::Mailer.program(), &shutdown).await?;
    let lists = MailLists::open(&bus, &config, &shutdown).await?;
    let mailer = Mailer::with(outgoing, Arc::new(bus.mail.clone()), bus.job_board(), lists, config.smtp.retry_policy());
    let consumer = bus.durable_consumer(&consumer_spec(&config)).await?;
    let alerts = bus.alerts_consumer(&alerts_spec(&config), &shutdown).await?;
    let pings = bus.announce(Service::Mailer).await?;
    match &mailer.outgoing.transport.route {
        Route::Smtp { .. } => tracing::info!(
            host = %config.smtp.host, port = config.smtp.port, tls = ?config.smtp.effective_tls(),
            "mailer ready: sending over SMTP"
        ),
        Route::Outbox { .. } => tracing::info!(
            outbox = %config.smtp.outbox_dir.display(),
            "mailer ready: SMTP disabled, writing mails to the outbox"
        ),
        Route::Off => tracing::info!("mailer ready: mail is off ([smtp] enable = false, no outbox_dir)"),
    }
    let settings = worker::Settings::new(4, &config.nats, mailer.policy).named(Service::Mailer.name());
    let alert_settings = worker::Settings::new(1, &config.nats, mailer.policy).named("mailer-alerts");
    tokio::join!(
        worker::run(consumer, bus.publisher(), settings, shutdown.clone(), mailer.clone()),
        worker::run(alerts, bus.publisher(), alert_settings, shutdown, mailer),
    );
    let _ = pings.stop().await;
    Ok(())
}

impl Mailer {
    /// A mailer keeping its notification log in `log`, finding jobs' recipients on `jobs`,
    /// leaving out the addresses `lists` suppresses and linking its unsubscribe page.
    pub fn new(config: &Config, log: Arc<dyn KeyValue>, jobs: JobBoard, lists: MailLists) -> anyhow::Result<Self> {
        Ok(Self::with(Outgoing::from_config(config)?, log, jobs, lists, config.smtp.retry_policy()))
    }

    fn with(
        mut outgoing: Outgoing,
        log: Arc<dyn KeyValue>,
        jobs: JobBoard,
        lists: MailLists,
        policy: RetryPolicy,
    ) -> Self {
        outgoing.composer.set_links(lists.unsubscribe, lists.picture_links);
        Mailer {
            log: SentLog::new(JsonBucket::new(log.clone())),
            tallies: log,
            jobs,
            outgoing: Arc::new(outgoing),
            suppressed: lists.suppressed,
            policy,
            in_hand: Arc::default(),
        }
    }
}

impl Stage for Mailer {
    /// Handles one delivery of `image.completed` or `image.failed`.
    async fn handle(&self, received: Received) -> Result<(), Failure> {
        if self.outgoing.transport.is_off() {
            return Ok(()); // mail is off: nothing to send, nothing to log
        }
        let (notice, group) = match received.subject.as_str() {
            BUDGET_ALERT => return self.budget_alert(&received.decode::<BudgetAlert>()?, received.attempt).await,
            events::IMAGE_COMPLETED => {
                let completed = received.decode::<ImageCompleted>()?;
                (Notice::completed(&completed, self.outgoing.composer.zone()), completed.group)
            }
            events::IMAGE_FAILED => {
                let failed = received.decode::<ImageFailed>()?;
                let quiet = failed.cancelled.as_ref().is_some_and(|cancel| !cancel.notify);
                if quiet && failed.group.is_none() {
                    return Ok(()); // cancelled: whoever cancelled it knows; mailed only if asked
                }
                (Notice::failed(&failed, self.outgoing.composer.zone()), failed.group)
            }
            other => return Err(Failure::permanent(format!("the mailer does not handle {other}"))),
        };
        // A job of a group (n pictures of one request): one mail once all have ended.
        let notice = match group.filter(|group| group.size > 1) {
            None => self.addressed(notice).await?,
            Some(member) => match self.for_group(&member).await? {
                ForGroup::Alone => self.addressed(notice).await?,
                ForGroup::Quiet => return Ok(()),
                ForGroup::Mail(notice) => notice,
            },
        };
        let Some(_in_hand) = InHand::take(&self.in_hand, format!("{}.{}", notice.job_id, notice.kind.name())) else {
            return Err(Failure::transient("this mailer is still sending it").after(Some(Duration::from_secs(5))));
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
        let result = match outcome.state {
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
            DeliveryState::Retrying => "retried",
            DeliveryState::Suppressed => "suppressed",
        };
        metrics::counter!("huiying_mails_total", "result" => result).increment(1);
        match outcome.state {
            DeliveryState::Retrying => Err(Failure::transient(outcome.last_error.unwrap_or_default())),
            DeliveryState::Sent | DeliveryState::Failed | DeliveryState::Suppressed => Ok(()),
        }
    }
}

/// How long the mailer keeps trying to log a mail it has sent.
const LOG_PATIENCE: Duration = Duration::from_secs(120);

impl Mailer {
    /// The notice with the request's own recipient: in the event when it was published
    /// straight to NATS, else beside the job's state, where ingest keeps it (looked up only
    /// when requests may name recipients: otherwise it costs every mail a read for nothing).
    async fn addressed(&self, mut notice: Notice) -> Result<Notice, Failure> {
        if notice.notify_email.is_none()
            && self.outgoing.composer.takes_request_recipients()
            && let Some(targets) = self.jobs.targets(&notice.job_id).await?
        {
            notice.notify_email = targets.notify_email;
        }
        Ok(notice)
    }

    /// Sends the notice once and records the outcome: sent, failed, or (when a retry is
    /// allowed and could help) retrying.
    async fn notify(&self, notice: &Notice, attempt: u32, may_retry: bool) -> Notification {
        let mut notification = Notification {
            job_id: notice.job_id.to_string(),
            kind: notice.kind.name().into(),
            state: DeliveryState::Sent,
            recipients: self.outgoing.composer.all_recipients(notice),
            attempts: attempt,
            last_error: None,
            sent_at: None,
            updated_at: OffsetDateTime::now_utc(),
        };
        // A list that cannot be read is a reason to retry, never to mail someone who said no.
        let sent = match self.skipping_suppressed(notice, &notification.recipients).await {
            Err(error) => Err(error),
            Ok(notice) if notification.recipients.iter().all(|r| notice.skip.contains(&r.to_ascii_lowercase())) => {
                tracing::info!(job = %notice.job_id, "every recipient is on the suppression list: no mail");
                notification.state = DeliveryState::Suppressed;
                notification.last_error =
                    Some("every recipient is on the suppression list (unsubscribed, or refused by its server)".into());
                Ok(None)
            }
            Ok(notice) => match self.outgoing.send(&notice).await {
                Ok(delivery) => {
                    self.suppress_refused(&notice, &delivery.refused).await;
                    delivery.received().map(Some)
                }
                Err(error) => Err(error),
            },
        };
        match sent {
            Ok(None) => {}
            Ok(Some(_)) => {
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
        // After a send, the log must say so even if NATS stumbles (a cluster electing a new
        // leader for the bucket takes seconds): retry the write here, for as long as it
        // takes within LOG_PATIENCE, rather than redeliver the event (which would mail
        // again). The worker's progress acks keep the delivery ours meanwhile.
        let deadline = tokio::time::Instant::now() + LOG_PATIENCE;
        for try_number in 1u32.. {
            match self.log.put(&notification).await {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    tracing::error!(job = %notice.job_id, error = %e, "notification log not written");
                    break;
                }
                Err(e) => {
                    tracing::warn!(job = %notice.job_id, error = %e, try_number, "notification log not written yet");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(try_number.min(10)))).await
                }
            }
        }
        notification
    }
}

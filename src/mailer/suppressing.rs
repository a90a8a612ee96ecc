//! The suppression list as the mailer uses it: recipients on it are left out, and a
//! recipient its server refused for good is put on it.

use std::time::Duration;

use time::OffsetDateTime;

use super::{Mailer, Notice};
use crate::contract::mail::{Suppression, SuppressionReason};
use crate::failure::Failure;
use crate::smtp::Refusal;

impl Mailer {
    /// The notice without the recipients on the suppression list.
    pub(super) async fn skipping_suppressed(&self, notice: &Notice, recipients: &[String]) -> Result<Notice, Failure> {
        let now = OffsetDateTime::now_utc();
        let mut notice = notice.clone();
        for address in recipients {
            if self.suppression_of(address, now).await?.is_some() {
                notice.skip.push(address.to_ascii_lowercase());
            }
        }
        if !notice.skip.is_empty() {
            metrics::counter!("huiying_mail_suppressed_total").increment(notice.skip.len() as u64);
        }
        Ok(notice)
    }
}

impl Mailer {
    /// Whether `address` is suppressed, asked again for a while when NATS stumbles (a
    /// cluster electing a leader for the bucket takes seconds): a redelivery would wait
    /// for `[smtp] retry_delay` instead.
    async fn suppression_of(&self, address: &str, now: OffsetDateTime) -> Result<Option<Suppression>, Failure> {
        let deadline = tokio::time::Instant::now() + LIST_PATIENCE;
        for try_number in 1u32.. {
            match self.suppressed.holding(address, now).await {
                Ok(entry) => return Ok(entry),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(200 * u64::from(try_number.min(10)))).await,
            }
        }
        unreachable!("the loop returns")
    }
}

impl Mailer {
    /// Recipients their server refused for good (user unknown) get no mail for `[smtp]
    /// suppress_days`: mailing them again would only count against the sender.
    pub(super) async fn suppress_refused(&self, notice: &Notice, refused: &[Refusal]) {
        let days = self.outgoing.settings.suppress_days;
        if days == 0 {
            return;
        }
        let now = OffsetDateTime::now_utc();
        for refusal in refused {
            let entry = Suppression {
                address: refusal.address.clone(),
                reason: SuppressionReason::Bounced,
                reply: Some(refusal.reply.clone()),
                job_id: Some(notice.job_id.to_string()),
                at: now,
                until: Some(now + time::Duration::days(i64::from(days))),
            };
            match self.suppressed.add(&entry).await {
                Ok(()) => {
                    tracing::warn!(job = %notice.job_id, address = %crate::redact::email(&refusal.address), reply = %refusal.reply, days, "refused for good: no mail goes there for a while")
                }
                Err(error) => {
                    tracing::warn!(job = %notice.job_id, %error, "the refused address could not be put on the suppression list")
                }
            }
            metrics::counter!("huiying_mail_bounced_total").increment(1);
        }
    }
}

/// How long the mailer keeps asking the suppression list before it retries the mail later.
const LIST_PATIENCE: Duration = Duration::from_secs(20);

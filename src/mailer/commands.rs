//! `huiying mail ...`: what a user runs to check the mail setup and to deal with
//! notifications that failed.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Composer, DeliveryState, Mailer, Notice, SentLog};
use crate::bus::Bus;
use crate::config::{Config, TlsMode};
use crate::parts::JsonBucket;
use crate::smtp::Transport;

/// Sends a test mail with the current configuration. `Ok` says where it went; `Err`
/// says why it failed and what to do, never showing the password.
pub async fn test(config: &Config) -> anyhow::Result<String> {
    let smtp = &config.smtp;
    let composer = Composer::from_config(smtp)?;
    let transport = Transport::from_config(smtp)?;
    if matches!(transport, Transport::Off) {
        anyhow::bail!(
            "mail is off: [smtp] enable = false and no [smtp] outbox_dir. Set enable = true (with host, from, to) to send mail"
        );
    }
    let message = composer.compose_test()?;
    let recipients = smtp.to.join(", ");
    transport.send(message, smtp).await.map_err(|e| anyhow::anyhow!("the test mail was not sent: {e}"))?;
    Ok(match transport {
        Transport::Off => unreachable!("refused above"),
        Transport::Outbox { .. } => format!(
            "SMTP is disabled ([smtp] enable = false): the test mail was written to {}. Set enable = true to send real mail.",
            smtp.outbox_dir.display()
        ),
        Transport::Smtp(_) => {
            let tls = match smtp.effective_tls() {
                TlsMode::Tls => "implicit TLS",
                TlsMode::None => "no TLS",
                _ => "STARTTLS",
            };
            format!("test mail accepted by {}:{} ({tls}) for {recipients}", smtp.host, smtp.port)
        }
    })
}

/// Lines describing every notification that was given up (and those still retrying, or
/// whose log entry cannot be read).
pub async fn failed(config: &Config) -> anyhow::Result<Vec<String>> {
    let bus = Bus::connect(&config.nats, "huiying-mail", &CancellationToken::new()).await?;
    let log = SentLog::new(JsonBucket::new(Arc::new(bus.mail.clone())));
    let mut lines = Vec::new();
    for (key, entry) in log.all().await? {
        let entry = match entry {
            Ok(entry) if entry.state == DeliveryState::Sent => continue,
            Ok(entry) => entry,
            Err(error) => {
                lines.push(format!("{key}  unreadable: {error}"));
                continue;
            }
        };
        lines.push(format!(
            "{}  {:<9}  {:<8}  attempts {}  to {}  {}",
            entry.job_id,
            entry.kind,
            format!("{:?}", entry.state).to_lowercase(),
            entry.attempts,
            entry.recipients.join(","),
            entry.last_error.unwrap_or_default()
        ));
    }
    Ok(lines)
}

/// Sends the notifications of these jobs again (those not yet sent; all with `force`),
/// recording the outcome. Returns one line per job.
pub async fn resend(config: &Config, job_ids: &[String], force: bool) -> anyhow::Result<Vec<String>> {
    let bus = Bus::connect(&config.nats, "huiying-mail", &CancellationToken::new()).await?;
    let jobs = bus.job_board();
    let mailer = Mailer::new(config, Arc::new(bus.mail.clone()), jobs.clone())?;
    let mut lines = Vec::new();
    for id in job_ids {
        let Some(status) = jobs.get(id).await? else {
            lines.push(format!("{id}: no such job"));
            continue;
        };
        let notice = match (&status.result, &status.error) {
            (Some(completed), _) => Notice::completed(completed, &config.smtp.reader_zone()),
            (None, Some(failed)) => Notice::failed(failed, &config.smtp.reader_zone()),
            _ => {
                lines.push(format!("{id}: still {:?}, nothing to notify yet", status.status));
                continue;
            }
        };
        let notice = mailer.addressed(notice).await.map_err(|failure| anyhow::anyhow!("{id}: {}", failure.reason))?;
        // An unreadable entry is treated as "not known to be sent": the user asked.
        let previous = mailer.log.get(id, notice.kind.name()).await.ok().flatten();
        if previous.as_ref().is_some_and(|p| p.state == DeliveryState::Sent) && !force {
            lines.push(format!("{id}: already sent (use --force to send again)"));
            continue;
        }
        let attempt = previous.map_or(1, |p| p.attempts + 1);
        let outcome = mailer.notify(&notice, attempt, false).await;
        lines.push(match outcome.state {
            DeliveryState::Sent => format!("{id}: sent to {}", outcome.recipients.join(", ")),
            _ => format!("{id}: failed again: {}", outcome.last_error.unwrap_or_default()),
        });
    }
    Ok(lines)
}

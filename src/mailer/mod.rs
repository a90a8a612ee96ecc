//! The mailer: `image.completed` / `image.failed` → an HTML + text email.
//!
//! With `[smtp] enable = true` it sends over SMTP (lettre); otherwise it writes each
//! mail as an `.eml` file into `[smtp] outbox_dir`, so a new user sees the mail with no
//! mail account. Each (job, kind) is mailed once: the notification log is checked
//! before sending and written right after the server accepted the mail.

mod sent;
pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;
use time::OffsetDateTime;
use time::macros::format_description;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, ConsumerSpec};
use crate::config::{Config, SmtpConfig, TlsMode};
use crate::events::{self, ImageCompleted, ImageFailed};
use crate::worker::{self, Outcome, Received};
pub use sent::{DeliveryState, Notification, SentLog};
pub use templates::{Kind, Templates};

/// Where mail goes: a real SMTP server, or the outbox folder.
#[derive(Clone)]
pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(AsyncFileTransport<Tokio1Executor>),
}

/// Why a mail was not accepted, and whether trying again could help.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

impl Transport {
    pub fn from_config(smtp: &SmtpConfig) -> anyhow::Result<Self> {
        if !smtp.enable {
            std::fs::create_dir_all(&smtp.outbox_dir).map_err(|e| {
                anyhow::anyhow!(
                    "bad configuration: smtp.outbox_dir {}: {e}",
                    smtp.outbox_dir.display()
                )
            })?;
            return Ok(Transport::Outbox(AsyncFileTransport::new(&smtp.outbox_dir)));
        }
        let mut parameters = TlsParameters::builder(smtp.host.clone());
        if !smtp.ca_file.is_empty() {
            let pem = std::fs::read(&smtp.ca_file).map_err(|e| {
                anyhow::anyhow!("bad configuration: smtp.ca_file {}: {e}", smtp.ca_file)
            })?;
            let certificate = Certificate::from_pem(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "bad configuration: smtp.ca_file {} is no PEM certificate: {e}",
                    smtp.ca_file
                )
            })?;
            parameters = parameters.add_root_certificate(certificate);
        }
        let parameters = parameters.build_rustls()?;
        let tls = match smtp.effective_tls() {
            TlsMode::Tls => Tls::Wrapper(parameters),
            // Required: never fall back to plain text when the server lacks STARTTLS.
            TlsMode::Starttls | TlsMode::Auto => Tls::Required(parameters),
            TlsMode::None => Tls::None,
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
                .port(smtp.port)
                .tls(tls)
                .timeout(Some(Duration::from_secs(smtp.timeout)));
        if !smtp.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                smtp.username.clone(),
                smtp.password.expose().to_string(),
            ));
        }
        Ok(Transport::Smtp(builder.build()))
    }

    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Transport::Outbox(outbox) => outbox
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| SendError::Transient(format!("writing to the outbox failed: {e}"))),
            Transport::Smtp(smtp) => smtp.send(message).await.map(|_| ()).map_err(classify),
        }
    }
}

/// 5xx replies are final; everything else (4xx, timeouts, connection trouble) may pass.
fn classify(error: lettre::transport::smtp::Error) -> SendError {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    if error.is_permanent() {
        let hint = match error.status().map(|c| c.to_string()) {
            Some(code) if code.starts_with("535") || code.starts_with("534") => {
                " (login refused: check [smtp] username and password; QQ Mail and 163 need the authorization code, Gmail an app password)"
            }
            _ => "",
        };
        SendError::Permanent(format!("{text}{hint}"))
    } else {
        SendError::Transient(text)
    }
}

/// Turns notifications into messages: templates, sender and recipients.
pub struct Composer {
    templates: Templates,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Composer {
    /// Checks addresses and templates, so that a mistake stops the mailer at start,
    /// not at the first mail.
    pub fn from_config(smtp: &SmtpConfig) -> anyhow::Result<Self> {
        let templates = Templates::load(&smtp.templates_dir, &smtp.language)?;
        let default_name = if smtp.language == "en" {
            "huiying"
        } else {
            "绘影"
        };
        let from = match smtp.from.trim() {
            "" => format!("{default_name} <huiying@localhost>"),
            from => from.to_string(),
        };
        let mut from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("bad configuration: smtp.from {:?}: {e}", smtp.from))?;
        if from.name.is_none() {
            from.name = Some(default_name.into());
        }
        let mut to = Vec::new();
        for address in smtp.recipients() {
            let mailbox: Mailbox = address
                .parse()
                .map_err(|e| anyhow::anyhow!("bad configuration: smtp.to {address:?}: {e}"))?;
            to.push(mailbox);
        }
        if to.is_empty() {
            // Only reachable with SMTP disabled (the loader requires `to` otherwise).
            to.push(
                "outbox <outbox@localhost>"
                    .parse()
                    .expect("a valid address"),
            );
        }
        Ok(Self {
            templates,
            from,
            to,
        })
    }

    pub fn recipients(&self) -> Vec<String> {
        self.to.iter().map(|m| m.email.to_string()).collect()
    }

    pub fn compose(
        &self,
        kind: Kind,
        job_id: &str,
        context: &serde_json::Value,
    ) -> anyhow::Result<Message> {
        let rendered = self.templates.render(kind, context)?;
        let domain = self.from.email.domain().to_string();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(rendered.subject)
            // Stable per job and kind, so a receiving server can spot a duplicate too.
            .message_id(Some(format!("<huiying.{}.{job_id}@{domain}>", kind.name())));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let body = MultiPart::alternative_plain_html(rendered.text, rendered.html);
        Ok(builder.multipart(body)?)
    }
}

/// Everything one mailer instance needs to turn events into mail.
#[derive(Clone)]
pub struct Mailer {
    log: SentLog,
    composer: Arc<Composer>,
    transport: Transport,
    settings: Arc<SmtpConfig>,
}

pub fn consumer_spec() -> ConsumerSpec {
    ConsumerSpec {
        durable: "mailer",
        description: "huiying mailer: emails completions and failures",
        subjects: &[events::IMAGE_COMPLETED, events::IMAGE_FAILED],
        ack_wait: Duration::from_secs(60),
        // The handler decides when to give up (smtp.max_attempts).
        max_deliver: -1,
        max_ack_pending: 64,
    }
}

/// Runs the mailer until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let composer = Composer::from_config(&config.smtp)?;
    let transport = Transport::from_config(&config.smtp)?;
    let bus = Bus::connect(&config.nats, "huiying-mailer", &shutdown).await?;
    let spec = consumer_spec();
    let consumer = bus.durable_consumer(&spec).await?;
    match &transport {
        Transport::Smtp(_) => {
            tracing::info!(host = %config.smtp.host, port = config.smtp.port, tls = ?config.smtp.effective_tls(), "mailer ready: sending over SMTP")
        }
        Transport::Outbox(_) => {
            tracing::info!(outbox = %config.smtp.outbox_dir.display(), "mailer ready: SMTP disabled, writing mails to the outbox")
        }
    }
    let mailer = Mailer {
        log: SentLog::new(bus.mail.clone()),
        composer: Arc::new(composer),
        transport,
        settings: Arc::new(config.smtp.clone()),
    };
    worker::run(consumer, 4, spec.ack_wait, shutdown, move |received| {
        let mailer = mailer.clone();
        async move { mailer.handle(received).await }
    })
    .await
}

impl Mailer {
    /// Handles one delivery of `image.completed` or `image.failed`.
    pub async fn handle(&self, received: Received) -> Outcome {
        let parsed = match received.subject.as_str() {
            events::IMAGE_COMPLETED => serde_json::from_slice::<ImageCompleted>(&received.payload)
                .map(|e| {
                    (
                        Kind::Completed,
                        e.id.clone(),
                        completed_context(&e, &self.settings.language),
                    )
                }),
            events::IMAGE_FAILED => serde_json::from_slice::<ImageFailed>(&received.payload)
                .map(|e| (Kind::Failed, e.id.clone(), failed_context(&e))),
            other => return Outcome::Reject(format!("the mailer does not handle {other}")),
        };
        let (kind, job_id, context) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                return Outcome::Reject(format!("unreadable {} event: {e}", received.subject));
            }
        };
        let previous = match self.log.get(&job_id, kind.name()).await {
            Ok(previous) => previous,
            Err(e) => return retry_soon(&job_id, &e.to_string()),
        };
        if previous
            .as_ref()
            .is_some_and(|n| n.state != DeliveryState::Retrying)
        {
            // Sent, or given up, before: a redelivery must not mail again.
            return Outcome::Done;
        }
        let recipients = self.composer.recipients();
        let mut notification = Notification {
            job_id: job_id.clone(),
            kind: kind.name().into(),
            state: DeliveryState::Sent,
            recipients,
            attempts: received.attempt,
            last_error: None,
            sent_at: None,
            updated_at: OffsetDateTime::now_utc(),
        };
        let result = match self.composer.compose(kind, &job_id, &context) {
            Ok(message) => self.transport.send(message).await,
            Err(e) => Err(SendError::Permanent(e.to_string())),
        };
        let outcome = match result {
            Ok(()) => {
                notification.sent_at = Some(OffsetDateTime::now_utc());
                tracing::info!(job = %job_id, kind = kind.name(), "mail sent");
                Outcome::Done
            }
            Err(SendError::Transient(error)) if received.attempt < self.settings.max_attempts => {
                tracing::warn!(job = %job_id, %error, attempt = received.attempt, "mail not sent; will retry");
                notification.state = DeliveryState::Retrying;
                notification.last_error = Some(error);
                let base = Duration::from_secs(self.settings.retry_delay);
                Outcome::Retry(worker::backoff(
                    base,
                    received.attempt,
                    Duration::from_secs(3600),
                ))
            }
            Err(error) => {
                tracing::error!(job = %job_id, %error, attempts = received.attempt, "mail not sent; giving up");
                notification.state = DeliveryState::Failed;
                notification.last_error = Some(error.to_string());
                Outcome::Done
            }
        };
        // After a send, the log must say so even if NATS stumbles: retry the write here
        // rather than redeliver the event (which would mail again).
        for attempt in 1..=5 {
            match self.log.put(&notification).await {
                Ok(()) => break,
                Err(e) if attempt == 5 => {
                    tracing::error!(job = %job_id, error = %e, "notification log not written")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200 * attempt)).await,
            }
        }
        outcome
    }
}

fn retry_soon(job_id: &str, problem: &str) -> Outcome {
    tracing::warn!(job = %job_id, %problem, "will retry");
    Outcome::Retry(Duration::from_secs(2))
}

const TIME_FORMAT: &[time::format_description::FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");

fn completed_context(event: &ImageCompleted, _language: &str) -> serde_json::Value {
    json!({
        "id": event.id,
        "prompt": event.prompt,
        "short_prompt": shorten(&event.prompt, 30),
        "english_prompt": event.english_prompt,
        "show_english_prompt": event.english_prompt != event.prompt,
        "model": event.model,
        "url": event.url,
        "width": event.width,
        "height": event.height,
        "preview_width": event.width.min(544),
        "format": event.format.to_uppercase(),
        "file_size": event.file_size,
        "file_size_human": human_size(event.file_size),
        "duration_seconds": format!("{:.1}", event.duration_ms as f64 / 1000.0),
        "completed_at": event.completed_at.format(TIME_FORMAT).unwrap_or_default(),
    })
}

fn failed_context(event: &ImageFailed) -> serde_json::Value {
    json!({
        "id": event.id,
        "prompt": event.prompt,
        "short_prompt": shorten(&event.prompt, 30),
        "model": event.model,
        "stage": event.stage,
        "error": event.error,
        "attempts": event.attempts,
        "failed_at": event.failed_at.format(TIME_FORMAT).unwrap_or_default(),
    })
}

fn shorten(text: &str, max_chars: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1024 * 1024 => format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)),
        b if b >= 1024 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_prompts_are_shown_briefly() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KB");
        assert_eq!(human_size(5 * 1024 * 1024), "5.0 MB");
        assert_eq!(shorten("一只\n可爱的猫", 30), "一只 可爱的猫");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }
}
